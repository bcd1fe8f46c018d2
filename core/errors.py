"""One error tree with stable string codes, shared by CLI, pipeline and HTTP API.

``Reason`` names why a record went to suspense. ``ErrorCode`` is the one table of the codes a
``BillingError`` may carry, each with the HTTP status the API answers and the exit status the
CLI returns. A class names its code once (``code = ErrorCode.X``); a code is introduced by one
class only (subclasses inherit it), so one code never means two things, and a code outside the
table cannot be defined at all.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


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


class ErrorCode(enum.StrEnum):
    """Stable error code → (HTTP status, CLI exit status). Exit: 1 bad input, 2 usage/config."""

    http_status: int
    exit_status: int

    def __new__(cls, code: str, http_status: int, exit_status: int) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.http_status = http_status
        member.exit_status = exit_status
        return member

    MALFORMED = "MALFORMED", 400, 1
    VALIDATION = "VALIDATION", 422, 1
    CATALOG_INVALID = "CATALOG_INVALID", 422, 1
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED", 422, 1
    UNAUTHORIZED = "UNAUTHORIZED", 401, 1
    FORBIDDEN = "FORBIDDEN", 403, 1
    NOT_FOUND = "NOT_FOUND", 404, 1
    CONFLICT = "CONFLICT", 409, 1
    FILE_BUSY = "FILE_BUSY", 409, 1  # another worker holds the file
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE", 413, 1
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE", 415, 1
    UNKNOWN_FORMAT = "UNKNOWN_FORMAT", 400, 2
    NOT_USAGE = "NOT_USAGE", 422, 1  # a RAP file among TAP files: settlement reads it
    CLOUDEVENT_INVALID = "CLOUDEVENT_INVALID", 400, 1  # an envelope attribute missing/wrong
    INTERNAL = "INTERNAL", 500, 1
    CONFIG = "CONFIG", 500, 2
    STARTUP = "STARTUP", 503, 2
    TIMEOUT = "TIMEOUT", 503, 1
    OVERLOADED = "OVERLOADED", 503, 1  # shed before any work: nothing was stored
    UNAVAILABLE = "UNAVAILABLE", 503, 1


class BillingError(Exception):
    """Base of every error billing-oss raises on purpose."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    # code -> the class that introduced it (module.qualname)
    _introduced_by: ClassVar[dict[ErrorCode, str]] = {
        ErrorCode.INTERNAL: f"{__name__}.BillingError"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a code outside ``ErrorCode``, a code another class introduced already, and
        an exit status set beside the table."""
        super().__init_subclass__(**kwargs)
        if "exit_status" in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: the exit status comes from ErrorCode")
        if "code" not in cls.__dict__:
            return
        code = cls.__dict__["code"]
        if not isinstance(code, ErrorCode):
            raise TypeError(f"{cls.__qualname__}: code {code!r} is not an ErrorCode")
        name = f"{cls.__module__}.{cls.__qualname__}"
        owner = BillingError._introduced_by.setdefault(code, name)
        if owner != name:
            raise TypeError(f"{name}: code {code} is already introduced by {owner}; "
                            "subclass it instead")

    @property
    def exit_status(self) -> int:
        return self.code.exit_status

    @property
    def http_status(self) -> int:
        return self.code.http_status

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ConfigError(BillingError):
    """The configuration or the command line is wrong; the server cannot start."""

    code = ErrorCode.CONFIG


class StartupError(BillingError):
    """A dependency the server needs at start is unavailable (database, port)."""

    code = ErrorCode.STARTUP


class DecodeError(BillingError):
    """Input bytes are malformed. ``offset`` is the byte offset (or line) where it was seen."""

    code = ErrorCode.MALFORMED

    def __init__(self, message: str, *, offset: int | None = None, **detail: object) -> None:
        where = f" at offset {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}", offset=offset, **detail)
        self.offset = offset


class CatalogError(BillingError):
    """A catalog (tariffs, accounts) failed validation. ``path`` names the JSON path."""

    code = ErrorCode.CATALOG_INVALID

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}", path=path)
        self.path = path


class InvalidValue(BillingError):
    """A value (an amount, a header, a request field) failed validation."""

    code = ErrorCode.VALIDATION


class InvalidRequest(InvalidValue):
    """A request failed validation. ``errors`` lists ``{"path": "$.field", "message": ...}``."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, errors=errors or [])
        self.errors = errors or []


class NotFound(BillingError):
    """The named entity does not exist."""

    code = ErrorCode.NOT_FOUND


class Forbidden(BillingError):
    """The caller's key may not see or touch this entity (a customer key, another account)."""

    code = ErrorCode.FORBIDDEN


class Conflict(BillingError):
    """The request contradicts the stored state (a duplicate, an immutable row, a state)."""

    code = ErrorCode.CONFLICT


class FileBusy(BillingError):
    """Another worker holds the file (its lock, or its checkpoint moved under this writer);
    this writer leaves the file alone."""

    code = ErrorCode.FILE_BUSY


class UnsupportedMediaType(BillingError):
    """The request body is in a media type the route does not read."""

    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class NotUsageFile(DecodeError):
    """A file of a neighbouring kind (a RAP file among TAP files) that another module handles:
    keep it, do not decode it as usage and do not file it as an error."""

    code = ErrorCode.NOT_USAGE


class CloudEventError(BillingError):
    """A CloudEvents envelope without a required attribute or of another specversion; the
    problem's ``attribute`` names it."""

    code = ErrorCode.CLOUDEVENT_INVALID

    def __init__(self, message: str, *, attribute: str | None) -> None:
        errors = [] if attribute is None else [
            {"location": "cloudevent", "path": attribute, "message": message}]
        super().__init__(message, attribute=attribute, errors=errors)
        self.attribute = attribute
