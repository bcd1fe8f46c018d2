"""The native rater: the Cython kernel behind the same ``Rater`` protocol as the reference.

``rate(records)`` resolves each record's account (``Accounts``, in Python: one dict lookup)
and turns the records into columns (``columns``), rates them in one GIL-free kernel call
(``rate_columns``) and reads ``Charge``/``Failure`` outcomes straight off the kernel's
arrays (``outcomes``). A caller that already holds columns can call ``rate_columns``
directly and read the arrays of ``RatedColumns`` without building an object per record.

The compiled tariffs (``compile_tariffs``) are built once per set of tariffs; the accounts
directory is shared and changes in place (``server.rating.accounts``), so a new account is
rated at once, without a recompile.

Record fields are read exactly as ``server.rating.fields`` documents (shared with the
reference); all catalog semantics live in the kernel.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.native import rating as kernel
from billing_oss.server.catalog.model import Catalog
from billing_oss.server.rating.accounts import Accounts
from billing_oss.server.rating.compile import CompiledTariffs, VersionIds, compile_tariffs
from billing_oss.server.rating.failures import failure
from billing_oss.server.rating.fields import KIND_CODES, BadField, event_micros, usage_of

WIDTH = kernel.CALLED_WIDTH
# Kernel status code (other than STATUS_OK) -> suspense reason.
STATUS_REASONS: dict[int, Reason] = {
    kernel.STATUS_UNKNOWN_ACCOUNT: Reason.UNKNOWN_ACCOUNT,
    kernel.STATUS_NO_TARIFF: Reason.NO_TARIFF,
    kernel.STATUS_NO_ZONE: Reason.NO_ZONE,
    kernel.STATUS_NO_RATE: Reason.NO_RATE,
    kernel.STATUS_OVERFLOW: Reason.OVERFLOW,
    kernel.STATUS_BAD_FIELD: Reason.BAD_FIELD,
}


@dataclass(slots=True)
class UsageColumns:
    """A batch as the kernel reads it. ``status`` != 0 marks records rejected up front."""

    account_ids: list[str | None] = field(default_factory=list)
    details: dict[int, str] = field(default_factory=dict)
    tariff: array[int] = field(default_factory=lambda: array("i"))
    event_us: array[int] = field(default_factory=lambda: array("q"))
    kind: array[int] = field(default_factory=lambda: array("B"))
    usage: array[int] = field(default_factory=lambda: array("q"))
    called: bytearray = field(default_factory=bytearray)
    status: array[int] = field(default_factory=lambda: array("B"))

    def __len__(self) -> int:
        return len(self.status)


@dataclass(slots=True)
class RatedColumns:
    """Per record: status (0 = charged, else ``STATUS_REASONS``), amount in micro-units,
    kernel version number, zone id and band id within that version (-1 = none)."""

    status: array[int]
    amount: array[int]
    version: array[int]
    zone: array[int]
    band: array[int]


class NativeRater:
    """Rates against ``catalog``'s tariffs, compiled here, and ``accounts`` (by default the
    catalog's own); ``version_ids`` names the stored versions the charges cite."""

    def __init__(self, catalog: Catalog, *, accounts: Accounts | None = None,
                 version_ids: VersionIds | None = None) -> None:
        self.catalog = catalog
        self.accounts = accounts if accounts is not None else Accounts(catalog.identifiers)
        self.compiled: CompiledTariffs = compile_tariffs(catalog.tariffs, version_ids)
        compiled = self.compiled
        # Per kernel version number: what a charge at that version cites.
        self._versions = [
            (stored, version.identity, zones, bands)
            for version, stored, zones, bands in zip(
                compiled.versions, compiled.version_ids, compiled.zone_names,
                compiled.band_names, strict=True)]

    def rate(self, records: Sequence[UsageRecord]) -> list[Charge | Failure]:
        columns = self.columns(records)
        return self.outcomes(records, columns, self.rate_columns(columns))

    def columns(self, records: Sequence[UsageRecord]) -> UsageColumns:
        cols = UsageColumns()
        cols.called = bytearray(WIDTH * len(records))
        find_account, tariff_index = self.accounts.find, self.compiled.tariff_index
        for n, record in enumerate(records):
            status, tariff_number, event, usage, account_id = 0, -1, 0, 0, None
            try:
                event = event_micros(record.event_time)
                usage = usage_of(record)
            except BadField as exc:
                status = kernel.STATUS_BAD_FIELD
                cols.details[n] = str(exc)
            else:
                account = find_account(record)
                if account is None:
                    status = kernel.STATUS_UNKNOWN_ACCOUNT
                else:
                    account_id = account.id
                    tariff_id = account.tariff_at(event)
                    number = tariff_index.get(tariff_id) if tariff_id is not None else None
                    if number is None:  # no plan then, or a tariff with no version yet
                        status = kernel.STATUS_NO_TARIFF
                    else:
                        tariff_number = number
            cols.account_ids.append(account_id)
            cols.status.append(status)
            cols.tariff.append(tariff_number)
            cols.event_us.append(event)
            cols.kind.append(KIND_CODES[record.kind])
            cols.usage.append(usage)
            called = record.called
            if called:
                raw = called.encode()[:WIDTH]
                start = n * WIDTH
                cols.called[start : start + len(raw)] = raw
                if raw[0] == 0:  # present but starting with NUL: not "no called"
                    cols.called[start] = 0xFF
        return cols

    def rate_columns(self, cols: UsageColumns) -> RatedColumns:
        n = len(cols)
        status = array("B", cols.status)
        rated = RatedColumns(
            status=status,
            amount=array("q", bytes(8 * n)),
            version=array("i", bytes(4 * n)),
            zone=array("i", bytes(4 * n)),
            band=array("i", bytes(4 * n)),
        )
        self.compiled.kernel.rate(
            cols.tariff,
            cols.event_us,
            cols.kind,
            cols.usage,
            cols.called,
            rated.status,
            rated.amount,
            rated.version,
            rated.zone,
            rated.band,
        )
        return rated

    def outcomes(self, records: Sequence[UsageRecord], cols: UsageColumns,
                 rated: RatedColumns) -> list[Charge | Failure]:
        """One outcome per record, read off the kernel's arrays (the hot loop of ingest)."""
        versions, currencies = self._versions, self.compiled.currencies
        details = cols.details
        out: list[Charge | Failure] = []
        append = out.append
        for n, (code, account_id, number, zone, band, amount, tariff) in enumerate(zip(
                rated.status, cols.account_ids, rated.version, rated.zone, rated.band,
                rated.amount, cols.tariff, strict=True)):
            if code:
                append(failure(STATUS_REASONS[code], records[n], account_id, details.get(n, "")))
                continue
            stored, identity, zones, bands = versions[number]
            assert account_id is not None
            append(Charge(account_id, stored, zones[zone] if zone >= 0 else None,
                          bands[band] if band >= 0 else None, amount, currencies[tariff],
                          identity))
        return out
