"""The native rater: the Cython kernel behind the same interface as the reference.

``rate(records)`` turns ``UsageRecord`` objects into columns (``columns``), rates them in
one GIL-free kernel call (``rate_columns``) and builds outcomes (``outcomes``). A pipeline
that already holds columns can call ``rate_columns`` directly and read the arrays of
``RatedColumns`` without building an object per record.

Record fields are read exactly as ``server.rating.fields`` documents (shared with the
reference); all catalog semantics live in the kernel.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from billing_oss.core.errors import Reason
from billing_oss.core.records import UsageRecord
from billing_oss.native import rating as kernel
from billing_oss.server.catalog.model import Catalog
from billing_oss.server.rating.compile import CompiledCatalog, compile_catalog
from billing_oss.server.rating.fields import (
    KIND_CODES,
    BadField,
    event_micros,
    find_account,
    usage_of,
)
from billing_oss.server.rating.outcome import Charge, Outcome, Rejection

WIDTH = kernel.CALLED_WIDTH
# Kernel status code -> suspense reason (None: a charge).
STATUS_REASONS: dict[int, Reason | None] = {
    kernel.STATUS_OK: None,
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

    record_keys: list[str] = field(default_factory=list)
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
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.compiled: CompiledCatalog = compile_catalog(catalog)

    def rate(self, records: Sequence[UsageRecord]) -> list[Outcome]:
        columns = self.columns(records)
        return self.outcomes(columns, self.rate_columns(columns))

    def columns(self, records: Sequence[UsageRecord]) -> UsageColumns:
        cols = UsageColumns()
        cols.called = bytearray(WIDTH * len(records))
        catalog, tariff_index = self.catalog, self.compiled.tariff_index
        for n, record in enumerate(records):
            cols.record_keys.append(record.record_key)
            status, tariff_number, event, usage, account_id = 0, -1, 0, 0, None
            try:
                event = event_micros(record.event_time)
                usage = usage_of(record)
            except BadField as exc:
                status = kernel.STATUS_BAD_FIELD
                cols.details[n] = str(exc)
            else:
                account = find_account(catalog, record)
                if account is None:
                    status = kernel.STATUS_UNKNOWN_ACCOUNT
                else:
                    account_id = account.id
                    tariff_id = account.tariff_at(event)
                    if tariff_id is None:
                        status = kernel.STATUS_NO_TARIFF
                    else:
                        tariff_number = tariff_index[tariff_id]
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

    def outcomes(self, cols: UsageColumns, rated: RatedColumns) -> list[Outcome]:
        compiled = self.compiled
        out: list[Outcome] = []
        for n, key in enumerate(cols.record_keys):
            code = rated.status[n]
            account_id = cols.account_ids[n]
            if code:
                reason = STATUS_REASONS[code]
                assert reason is not None
                out.append(
                    Rejection(
                        record_key=key,
                        reason=reason,
                        account_id=account_id,
                        detail=cols.details.get(n, ""),
                    )
                )
                continue
            number = rated.version[n]
            version = compiled.versions[number]
            zone, band = rated.zone[n], rated.band[n]
            assert account_id is not None
            out.append(
                Charge(
                    record_key=key,
                    account_id=account_id,
                    amount_micros=rated.amount[n],
                    currency=compiled.currencies[cols.tariff[n]],
                    zone=compiled.zone_names[number][zone] if zone >= 0 else None,
                    band=compiled.band_names[number][band] if band >= 0 else None,
                    tariff_id=version.tariff_id,
                    effective_from=version.effective_from,
                    tariff_version=version.identity,
                )
            )
        return out
