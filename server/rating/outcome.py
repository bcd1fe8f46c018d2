"""What a rater returns per record: a ``Charge`` or a ``Rejection`` (with a ``Reason``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from billing_oss.core.errors import Reason
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog.model import Catalog


class Charge(msgspec.Struct, frozen=True, kw_only=True):
    record_key: str
    account_id: str
    amount_micros: int
    currency: str
    zone: str | None  # None: the record has no ``called`` and a "*" zone rate applied
    band: str | None  # None: no band contains the time and there is no default band
    tariff_id: str
    effective_from: str  # RFC 3339 UTC of the version used
    tariff_version: str  # "<tariff id>@<effective_from>"


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    record_key: str
    reason: Reason
    account_id: str | None = None
    detail: str = ""


Outcome = Charge | Rejection


class Rater(Protocol):
    """Built once per catalog; rates batches. Reference and native raters both fit it."""

    catalog: Catalog

    def rate(self, records: Sequence[UsageRecord]) -> list[Outcome]: ...
