"""One error tree with stable string codes, shared by CLI, pipeline and HTTP API.

``Reason`` names why a record went to suspense; ``BillingError`` subclasses carry a
stable ``code`` that the HTTP layer maps to problem+json and the CLI to an exit status.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """Why a usage record was not charged. Stored in ``suspense.reason``."""

    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    NO_TARIFF = "NO_TARIFF"
    NO_ZONE = "NO_ZONE"
    NO_RATE = "NO_RATE"
    OVERFLOW = "OVERFLOW"
    BAD_FIELD = "BAD_FIELD"
    MALFORMED = "MALFORMED"
    PARTIAL_INCOMPLETE = "PARTIAL_INCOMPLETE"
    PARTIAL_LATE = "PARTIAL_LATE"  # a part arriving after its incomplete group was closed
    NEGATIVE_DELTA = "NEGATIVE_DELTA"  # a meter reading below the previous one, no rollover
    OUT_OF_ORDER = "OUT_OF_ORDER"  # a meter reading older than the latest, or contradicting one


class BillingError(Exception):
    """Base of every error billing-oss raises on purpose."""

    code = "INTERNAL"
    exit_status = 1

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(BillingError):
    """The configuration or the command line is wrong; the server cannot start."""

    code = "CONFIG"
    exit_status = 2


class StartupError(BillingError):
    """A dependency the server needs at start is unavailable (database, port)."""

    code = "STARTUP"
    exit_status = 2


class DecodeError(BillingError):
    """Input bytes are malformed. ``offset`` is the byte offset (or line) where it was seen."""

    code = "MALFORMED"

    def __init__(self, message: str, *, offset: int | None = None, **detail: object) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}", offset=offset, **detail)
        self.offset = offset


class CatalogError(BillingError):
    """A catalog (tariffs, accounts) failed validation. ``path`` names the JSON path."""

    code = "CATALOG_INVALID"

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}", path=path)
        self.path = path


class InvalidRequest(BillingError):
    """A request failed validation. ``errors`` lists ``{"path": "$.field", "message": ...}``."""

    code = "VALIDATION"

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class NotFound(BillingError):
    """The named entity does not exist."""

    code = "NOT_FOUND"


class Conflict(BillingError):
    """The request contradicts the stored state (a duplicate, an immutable row, a state)."""

    code = "CONFLICT"


class NotUsageFile(DecodeError):
    """A file of a neighbouring kind (a RAP file among TAP files) that another module handles:
    keep it, do not decode it as usage and do not file it as an error."""

    code = "NOT_USAGE"
