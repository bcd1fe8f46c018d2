"""The database rows of a prepared batch, built before its transaction opens.

``build_rows`` turns a batch's entries into the tuples the writer COPYs — record keys, usage,
charges and their rollup deltas, suspense — given usage ids reserved beforehand
(``usage_repo.next_usage_ids``).
File ingest builds them on the CPU stage, so the write stage only streams rows to
PostgreSQL; should a key turn out to be taken (a duplicate of an earlier file), the writer
drops the rows of the records that lost their claim (``Rows.keep``).

Columns are picked per batch: only the optional usage columns some record fills are sent.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any

import msgspec

from billing_oss.core.ports import Charge, Failure
from billing_oss.server.pipeline.batch import Entry, WriteBatch
from billing_oss.server.pipeline.validate import key_problem
from billing_oss.server.store import charge_writes, copy_payload, usage_repo
from billing_oss.server.store.citus import NO_ACCOUNT

_EMPTY_ATTRS = "{}"
_encode = msgspec.json.encode
_DECIMAL_COLUMNS = ("quantity", "charge")
_ABSENT = object()
_present = functools.partial(operator.is_not, None)


@dataclass(slots=True)
class Rows:
    source_file_id: int | None
    claims: list[Entry]  # entries claiming a record key (first of their key in the batch)
    keys: Sequence[tuple[Any, ...]]  # usage_keys rows, parallel to ``claims``
    duplicates: list[Entry]  # a key repeated inside the batch
    usage_columns: tuple[str, ...]
    usage: Sequence[tuple[Any, ...]] = field(default_factory=list)
    charges: Sequence[tuple[Any, ...]] = field(default_factory=list)
    charged: list[int] = field(default_factory=list)  # claim index of each usage/charge row
    suspense: list[tuple[Any, ...]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # claim index of each suspense row
    rejects: list[tuple[Any, ...]] = field(default_factory=list)  # items that are no record
    totals: dict[str, int] = field(default_factory=dict)  # currency → micros, all claimed
    rollup: charge_writes.Rollup = field(  # of ``charges``
        default_factory=lambda: charge_writes.Rollup([], [], []))
    # Binary COPY payloads of keys, usage and charges by table (``encode_payloads``); absent
    # for a table whose rows must go through asyncpg's encoder (numeric columns).
    payloads: dict[str, bytes] = field(default_factory=dict)

    def kept(self, claimed: set[int]) -> Rows:
        """The rows of the claims whose usage id is in ``claimed`` (they won their key).

        A new ``Rows``: these rows stay whole, because the transaction may still roll back
        and its retry may win keys this attempt lost.
        """
        won = [key[4] in claimed for key in self.keys]
        charged = [i for i in self.charged if won[i]]
        totals: dict[str, int] = {}
        for i in charged:
            outcome = self.claims[i].outcome
            assert isinstance(outcome, Charge)
            totals[outcome.currency] = totals.get(outcome.currency, 0) + outcome.amount_micros
        return dataclasses.replace(
            self,
            usage=[r for r, i in zip(self.usage, self.charged, strict=True) if won[i]],
            charges=[r for r, i in zip(self.charges, self.charged, strict=True) if won[i]],
            suspense=[r for r, i in zip(self.suspense, self.failed, strict=True) if won[i]],
            charged=charged,
            failed=[i for i in self.failed if won[i]],
            totals=totals,
            rollup=rollup_of([self.claims[i] for i in charged]),
            payloads={},
        )


def build_rows(batch: WriteBatch, ids: Sequence[int], source_file_id: int | None) -> Rows:
    """Rows of ``batch`` (partial parts excluded: they are stored on the write stage), the
    i-th claim taking ``ids[i]`` as usage id. ``ids`` must hold a usage id per entry."""
    first: dict[tuple[str, str], Entry] = {}
    duplicates: list[Entry] = []
    rejects: list[tuple[Any, ...]] = []
    for entry in batch.entries:
        record = entry.record
        if record is None:
            assert isinstance(entry.outcome, Failure)
            rejects.append(suspense_row(entry, entry.outcome, source_file_id))
        elif isinstance(entry.outcome, Failure) and key_problem(record) is not None:
            # No usable key to claim: suspense every time, never a "duplicate" of another.
            rejects.append(suspense_row(entry, entry.outcome, source_file_id))
        elif entry.outcome is not None:
            key = (entry.source, record.record_key)
            if key in first:
                duplicates.append(entry)
            else:
                first[key] = entry
    claims = list(first.values())
    now = datetime.now(UTC)
    keys: list[tuple[Any, ...]] = []
    for entry, usage_id in zip(claims, ids, strict=False):
        entry.usage_id = usage_id
        outcome = entry.outcome
        keys.append((entry.source, entry.record.record_key,  # type: ignore[union-attr]
                     outcome.account_id, entry.event_time or now, usage_id))  # type: ignore[union-attr]
    if len(keys) < len(claims):
        raise ValueError(f"{len(ids)} usage ids for {len(claims)} records")
    charged_entries = [(i, e) for i, e in enumerate(claims) if isinstance(e.outcome, Charge)]
    optional = optional_columns([e for _, e in charged_entries])
    rows = Rows(source_file_id, claims, keys, duplicates,
                (*usage_repo.USAGE_FIXED, *optional, *usage_repo.USAGE_TAIL), rejects=rejects)
    rows.usage = usage_rows([e for _, e in charged_entries], optional, source_file_id)
    totals = rows.totals
    charges: list[tuple[Any, ...]] = []
    rows.charges = charges
    for i, entry in charged_entries:
        charge = entry.outcome
        assert isinstance(charge, Charge)
        charges.append(charge_row(entry, charge, source_file_id))
        rows.charged.append(i)
        totals[charge.currency] = totals.get(charge.currency, 0) + charge.amount_micros
    rows.rollup = rollup_of([e for _, e in charged_entries])
    for i, entry in enumerate(claims):
        if isinstance(entry.outcome, Failure):
            rows.suspense.append(suspense_row(entry, entry.outcome, source_file_id))
            rows.failed.append(i)
    rows.payloads = encode_payloads(rows)
    return rows


def encode_payloads(rows: Rows) -> dict[str, bytes]:
    """The COPY payloads of the batch's keys, usage and charges, encoded here (on the CPU
    stage) so that the write stage only ships bytes."""
    payloads: dict[str, bytes] = {}
    for table, columns, data in (("usage_keys", usage_repo.KEY_COLUMNS, rows.keys),
                                 ("usage_records", rows.usage_columns, rows.usage),
                                 ("charges", usage_repo.CHARGE_COLUMNS, rows.charges)):
        kinds = copy_payload.kinds_of(table, columns)
        if data and kinds is not None:
            payloads[table] = copy_payload.encode(
                data if isinstance(data, list) else list(data), kinds)
    return payloads


def optional_columns(entries: Sequence[Entry]) -> tuple[str, ...]:
    """Only the optional usage columns some record of the batch fills (less to encode)."""
    records = [e.record for e in entries]
    # filter(_present, map(...)) runs in C and stops at the first record that fills it.
    return tuple(name for name in usage_repo.USAGE_OPTIONAL
                 if next(filter(_present, map(attrgetter(name), records)), _ABSENT)
                 is not _ABSENT)


def usage_rows(
    entries: Sequence[Entry], optional: tuple[str, ...], source_file_id: int | None
) -> list[tuple[Any, ...]]:
    """Usage rows of charged entries, in ``USAGE_FIXED + optional + USAGE_TAIL`` order."""
    fields = attrgetter("source", "record_key", "kind", *optional)
    decimals = [i for i, name in enumerate(optional, start=3) if name in _DECIMAL_COLUMNS]
    out: list[tuple[Any, ...]] = []
    append = out.append
    for entry in entries:
        record = entry.record
        values = fields(record)
        if decimals:
            values = tuple(Decimal(v) if i in decimals and v is not None else v
                           for i, v in enumerate(values))
        attrs = record.attrs  # type: ignore[union-attr]
        append((entry.outcome.account_id, entry.usage_id, entry.event_time,  # type: ignore[union-attr]
                *values, _encode(attrs).decode() if attrs else _EMPTY_ATTRS, source_file_id))
    return out


def usage_row(
    entry: Entry, account_id: str, optional: tuple[str, ...], source_file_id: int | None
) -> tuple[Any, ...]:
    record = entry.record
    assert record is not None
    row: list[Any] = [account_id, entry.usage_id, entry.event_time, record.source,
                      record.record_key, record.kind]
    for name in optional:
        value = getattr(record, name)
        if value is not None and name in _DECIMAL_COLUMNS:
            value = Decimal(value)
        row.append(value)
    row.append(_encode(record.attrs).decode() if record.attrs else _EMPTY_ATTRS)
    row.append(source_file_id)
    return tuple(row)


def rollup_of(entries: Sequence[Entry]) -> charge_writes.Rollup:
    """The rollup deltas of the charges of these charged entries (``charge_row``)."""
    return charge_writes.roll_up(_facts(entries))


def _facts(entries: Sequence[Entry]) -> Iterator[charge_writes.Fact]:
    units = charge_writes.rollup_units
    for entry in entries:
        record, charge = entry.record, entry.outcome
        assert record is not None and isinstance(charge, Charge) and entry.event_time
        yield charge_writes.Fact(
            charge.account_id, entry.event_time, record.kind, charge.zone, charge.currency,
            charge.tariff_version_id, False, charge.amount_micros,
            units(record.kind, record.duration_s, record.volume_up, record.volume_down,
                  record.quantity))


def charge_row(entry: Entry, charge: Charge, source_file_id: int | None) -> tuple[Any, ...]:
    """The charge carries its usage record's file, so that conservation.file_totals sums
    charges by file without finding each one's usage."""
    return (charge.account_id, entry.event_time, entry.usage_id, "charge", charge.amount_micros,
            charge.currency, charge.tariff_version_id, charge.zone, charge.band, source_file_id)


def suspense_row(
    entry: Entry, failure: Failure, source_file_id: int | None
) -> tuple[Any, ...]:
    record = entry.record
    account_id = failure.account_id or NO_ACCOUNT
    if record is None:
        return (entry.source, None, account_id, str(failure.reason), failure.detail,
                None, entry.raw, source_file_id, entry.position)
    encoded = _encode(record)
    if b"\\u0000" not in encoded:
        return (entry.source, record.record_key, account_id, str(failure.reason),
                failure.detail, encoded.decode(), entry.raw, source_file_id, entry.position)
    # jsonb and text refuse NUL: the record is kept whole as raw JSON bytes instead (a
    # retry could not charge it anyway), its key and source shown with U+FFFD for NUL.
    return (printable(entry.source), printable(record.record_key), account_id,
            str(failure.reason), failure.detail, None, encoded, source_file_id,
            entry.position)


def printable(text: str) -> str:
    """``text`` storable in PostgreSQL text or jsonb (which refuse NUL)."""
    return text.replace("\x00", "\ufffd")
