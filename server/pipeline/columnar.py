"""The columnar path of file ingest: a native decoder batch to the COPY payloads of its rows.

A 3GPP file arrives as native batches (C structs, ``NativeChunk``). ``prepare_columns`` runs
validation, account lookup and rating over the batch's columns and encodes the usage_keys,
usage_records and charges payloads straight from the structs (``native.columnar``): a
record it carries becomes no Python object. The records it does not carry — decode
rejects, partial parts, records of a shape it leaves alone, and those the rater refuses —
become items and go through the object path (``batch.prepare``), as suspense or partial
entries beside the carried ones, their key rows spliced into the keys payload in file
order. Whatever the object path would charge, and a key twice in a batch, send the whole
batch down the object path instead. Either way the rows, statuses and totals are those
``rows.build_rows`` makes (the tests compare the two paths byte for byte).

The carried records' columns stay on the batch (``Carried``), for readers that want
charged records by the column (per-batch rollups) without building them.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, overload

from billing_oss.core.ports import Charge, Failure, Item, Rater
from billing_oss.native import columnar as native
from billing_oss.native import rating as kernel
from billing_oss.native._records import RecordBatch
from billing_oss.server.pipeline.batch import Entry, WriteBatch, prepare
from billing_oss.server.pipeline.rows import Rows, build_rows, suspense_row
from billing_oss.server.pipeline.validate import MAX_KEY_LENGTH, key_problem
from billing_oss.server.rating import NativeRater
from billing_oss.server.rating.compile import CompiledTariffs
from billing_oss.server.store import charge_writes, copy_payload, usage_repo

WIDTH = kernel.CALLED_WIDTH
# role (1 carried) <-> kernel status (0 to rate; any other code skips the record)
_STATUS_OF_ROLE = bytes([kernel.STATUS_BAD_FIELD, *([0] * 255)])
_ROLE_OF_STATUS = bytes([1, *([0] * 255)])
_NOT_CARRIED = re.compile(b"\x00")
_CARRIED = re.compile(b"\x01")
_HEADER, _TRAILER = 19, 2  # a binary COPY payload's header and trailer bytes
_KEY_KINDS = copy_payload.KINDS["usage_keys"]
KEY_KINDS = "".join(_KEY_KINDS[c] for c in usage_repo.KEY_COLUMNS)
CHARGE_KINDS = "".join(copy_payload.KINDS["charges"][c] for c in usage_repo.CHARGE_COLUMNS)


class ColumnChunk(Protocol):
    """A decoder's native batch (``adapters.formats.threegpp.NativeChunk``)."""

    batch: RecordBatch
    source: str

    def __len__(self) -> int: ...

    def objects(self, indexes: Sequence[int] | None = None) -> list[Item]: ...


@dataclass(slots=True)
class Carried:
    """The records of a batch carried as columns. Arrays are per item of the batch, read
    where ``role[i] == 1``: a charged record. Its account id is ``account_ids[account[i]]``,
    event time ``event_us[i]`` (µs since the epoch, UTC), kind ``kind[i]`` (0 voice,
    2 data), usage ``usage[i]`` (seconds, or bytes up + down), amount ``amount[i]``
    (micro-units) in ``currencies[tariff[i]]``, tariff version ``version_ids[version[i]]``
    (-1: none stored), zone ``zones[zone_base[version[i]] + zone[i]]`` (-1: none); the
    decoded fields themselves (volumes up and down apart) in ``records.rows([i, ...])``.
    A per-batch grouping (say by account, UTC day, kind, zone, currency, version) walks
    the indexes of ``role`` that hold 1 and reads these arrays, no record object made."""

    count: int
    role: bytes
    months: set[date]
    expand: Callable[[], WriteBatch]  # the same batch through the object path, same usage ids
    account: array[int]
    account_ids: list[str]
    event_us: array[int]
    kind: bytearray
    usage: array[int]
    tariff: array[int]
    amount: array[int]
    version: array[int]
    zone: array[int]
    tables: Tables
    records: RecordBatch


class PayloadRows(Sequence[tuple[Any, ...]]):
    """The rows of a payload, read back from it only if someone asks (a claim row by row
    after a unique violation)."""

    __slots__ = ("_count", "_kinds", "_payload", "_rows")

    def __init__(self, payload: bytes, kinds: str, count: int) -> None:
        self._payload, self._kinds, self._count = payload, kinds, count
        self._rows: list[tuple[Any, ...]] | None = None

    def __len__(self) -> int:
        return self._count

    def _all(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = copy_payload.decode(self._payload, self._kinds)
        return self._rows

    @overload
    def __getitem__(self, index: int) -> tuple[Any, ...]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[Any, ...]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self._all()[index]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._all())


@dataclass(frozen=True, slots=True)
class Tables:
    """What the encoder writes by number, per compiled tariffs."""

    version_ids: array[int]
    zone_base: array[int]
    band_base: array[int]
    zones: native.Names
    bands: native.Names
    currency_names: tuple[str, ...]
    currencies: native.Names
    # the rollups' keys hold names: each zone (and tariff's currency) numbered by its name
    # among the distinct names
    zone_key: array[int]
    zone_distinct: native.Names
    currency_key: array[int]
    currency_distinct: native.Names


_tables: dict[int, tuple[CompiledTariffs, Tables]] = {}


def tables_of(compiled: CompiledTariffs) -> Tables:
    found = _tables.get(id(compiled))
    if found is not None and found[0] is compiled:
        return found[1]
    zones: list[str] = []
    bands: list[str] = []
    zone_base, band_base = array("i"), array("i")
    for zone_names, band_names in zip(compiled.zone_names, compiled.band_names, strict=True):
        zone_base.append(len(zones))
        band_base.append(len(bands))
        zones += zone_names
        bands += band_names
    zone_key, zone_distinct = _numbered(zones)
    currency_key, currency_distinct = _numbered(list(compiled.currencies))
    made = Tables(array("q", [-1 if v is None else v for v in compiled.version_ids]),
                  zone_base, band_base, native.Names(zones), native.Names(bands),
                  compiled.currencies, native.Names(list(compiled.currencies)),
                  zone_key, zone_distinct, currency_key, currency_distinct)
    if len(_tables) >= 8:  # raters are rebuilt when tariffs change: keep the latest few
        _tables.pop(next(iter(_tables)))
    _tables[id(compiled)] = (compiled, made)
    return made


def _numbered(names: list[str]) -> tuple[array[int], native.Names]:
    """Each name's number among the distinct names, and those names."""
    number: dict[str, int] = {}
    keys = array("i", [number.setdefault(name, len(number)) for name in names])
    return keys, native.Names(list(number))


def prepare_columns(chunk: ColumnChunk, rater: Rater, source: str,
                    position_of: Callable[[int], str], ids: Sequence[int],
                    source_file_id: int) -> WriteBatch:
    """``batch.prepare`` + ``rows.build_rows`` of the chunk's items, over columns."""

    def whole() -> WriteBatch:
        batch = prepare(chunk.objects(), rater, source, position_of)
        batch.rows = build_rows(batch, ids, source_file_id)
        return batch

    n = len(chunk)
    if (not isinstance(rater, NativeRater) or chunk.source != source or not n
            or len(source) > MAX_KEY_LENGTH or "\x00" in source):
        return whole()
    nb = chunk.batch
    role = bytearray(n)
    event_us, usage = array("q", bytes(8 * n)), array("q", bytes(8 * n))
    kind, called = bytearray(n), bytearray(WIDTH * n)
    native.classify(nb, role, event_us, kind, usage, called, WIDTH)
    compiled = rater.compiled
    tariff, account = array("i", bytes(4 * n)), array("i", bytes(4 * n))
    account_ids: list[str] = []
    native.resolve(nb, role, event_us, rater.accounts.by_identifier, compiled.tariff_index,
                   tariff, account, account_ids)
    status = bytearray(role.translate(_STATUS_OF_ROLE))
    amount = array("q", bytes(8 * n))
    version, zone, band = (array("i", bytes(4 * n)) for _ in range(3))
    compiled.kernel.rate(tariff, event_us, kind, usage, called, status, amount, version, zone,
                         band)
    role = bytearray(status.translate(_ROLE_OF_STATUS))  # refused by the rater: objects
    carried = n - role.count(0)
    if not carried:
        return whole()
    others = [m.start() for m in _NOT_CARRIED.finditer(role)]
    entries: list[Entry] = []
    if others:
        entries = prepare(chunk.objects(others), rater, source,
                          lambda k: position_of(others[k])).entries
    claims: list[Entry] = []
    claimed_at: list[int] = []
    rejects: list[Entry] = []
    for entry, index in zip(entries, others, strict=True):
        record, outcome = entry.record, entry.outcome
        if isinstance(outcome, Charge) or (record is not None and entry.source != source):
            return whole()
        if record is None or (isinstance(outcome, Failure) and key_problem(record) is not None):
            rejects.append(entry)
        elif outcome is not None:
            claims.append(entry)
            claimed_at.append(index)
    offsets = array("q", bytes(8 * (n + 1)))
    keys = native.render_keys(nb, role, offsets)
    names = [e.record.record_key for e in claims]  # type: ignore[union-attr]
    if len(set(names)) < len(names) or native.duplicates(
            keys, offsets, role, [k.encode("utf-8", "surrogatepass") for k in names]):
        return whole()  # a key twice in the batch: the object path tells which one claims
    total = carried + len(claims)
    if total > len(ids):
        raise ValueError(f"{len(ids)} usage ids for {total} records")
    key_rows = _object_keys(claims, claimed_at, role, ids)
    tables = tables_of(compiled)
    bits = native.optional(nb, role)
    optional = tuple(name for name, bit in native.OPTIONAL if bits & bit)
    usage_columns = (*usage_repo.USAGE_FIXED, *optional, *usage_repo.USAGE_TAIL)
    keys_payload, usage_payload, charges_payload, sums = native.encode(
        nb, role, array("q", ids), key_rows, source.encode(), keys, offsets, account,
        native.Names(account_ids), tariff, version, zone, band, amount, tables.version_ids,
        tables.zone_base, tables.band_base, tables.currencies, tables.zones, tables.bands,
        bits, source_file_id)
    totals: dict[str, int] = {}
    for number, amount_sum in sums.items():
        currency = tables.currency_names[number]
        totals[currency] = totals.get(currency, 0) + amount_sum
    usage_kinds = copy_payload.kinds_of("usage_records", usage_columns)
    assert usage_kinds is not None
    rows = Rows(source_file_id, claims, PayloadRows(keys_payload, KEY_KINDS, total), [],
                usage_columns,
                usage=PayloadRows(usage_payload, usage_kinds, carried),
                charges=PayloadRows(charges_payload, CHARGE_KINDS, carried),
                suspense=[suspense_row(e, e.outcome, source_file_id)  # type: ignore[arg-type]
                          for e in claims],
                failed=list(range(len(claims))),
                rejects=[suspense_row(e, e.outcome, source_file_id)  # type: ignore[arg-type]
                         for e in rejects],
                totals=totals,
                rollup=rollup_of(role, account, account_ids, event_us, kind, usage, tariff,
                                 amount, version, zone, compiled),
                payloads={"usage_keys": keys_payload, "usage_records": usage_payload,
                          "charges": charges_payload})
    batch = WriteBatch(entries, rows=rows)
    batch.carried = Carried(
        carried, bytes(role), {date(y, m, 1) for y, m in native.months(nb, role)}, whole,
        account, account_ids, event_us, kind, usage, tariff, amount, version, zone, tables, nb)
    return batch


_SERVICES = ("voice", "sms", "data")  # the kernel's kind codes the columnar path carries
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000


_ROLLUP_KINDS = "tDtttqqqNqq"  # charge_writes.ROLLUP_COLUMNS
_HOUR_KINDS = "TtqqNN"  # charge_writes.HOUR_COLUMNS


def rollup_of(role: bytearray, account: array[int], account_ids: list[str],
              event_us: array[int], kind: bytearray, usage: array[int], tariff: array[int],
              amount: array[int], version: array[int], zone: array[int],
              compiled: CompiledTariffs) -> charge_writes.Rollup:
    """``rows.rollup_of`` of the records ``role`` marks 1, all charged, from their columns
    (``Carried`` says what each holds): grouped and encoded by ``native.rollup``, or by its
    twin ``_rollup`` where a sum passes 64 bits. The units of a record are its kernel usage
    (seconds, bytes up + down, one SMS), as ``charge_writes.rollup_units`` counts them."""
    tables = tables_of(compiled)
    made = native.rollup(role, account, native.Names(account_ids), event_us, kind, usage,
                         tariff, amount, version, zone, tables.version_ids, tables.zone_base,
                         tables.zone_key, tables.zone_distinct, tables.currency_key,
                         tables.currency_distinct)
    if made is None:
        return _rollup(role, account, account_ids, event_us, kind, usage, tariff, amount,
                       version, zone, compiled)
    daily, days, monthly, months, hourly, hours = made
    return charge_writes.Rollup(PayloadRows(daily, _ROLLUP_KINDS, days),
                                PayloadRows(monthly, _ROLLUP_KINDS, months),
                                PayloadRows(hourly, _HOUR_KINDS, hours),
                                (daily, monthly, hourly))


def _rollup(role: bytearray, account: array[int], account_ids: list[str],
            event_us: array[int], kind: bytearray, usage: array[int], tariff: array[int],
            amount: array[int], version: array[int], zone: array[int],
            compiled: CompiledTariffs) -> charge_writes.Rollup:
    """``rollup_of`` in Python."""
    days: dict[tuple[Any, ...], list[Any]] = {}
    day_of: dict[int, date] = {}
    hours: dict[tuple[int, int], list[int]] = {}  # (hours since 1970, tariff) → count, Σ
    currencies, version_ids, zone_names = (compiled.currencies, compiled.version_ids,
                                           compiled.zone_names)
    for i in (m.start() for m in _CARRIED.finditer(role)):
        number = event_us[i] // _US_PER_DAY
        on = day_of.get(number)
        if on is None:
            on = day_of[number] = date.fromordinal(_EPOCH_ORDINAL + number)
        v, z, t = version[i], zone[i], tariff[i]
        key = (account_ids[account[i]], on, _SERVICES[kind[i]],
               zone_names[v][z] if z >= 0 else None, currencies[t], version_ids[v])
        sums = days.get(key)
        if sums is None:
            days[key] = [amount[i], 1, usage[i], 0, 0]
        else:
            sums[0] += amount[i]
            sums[1] += 1
            sums[2] += usage[i]
        hour = (event_us[i] // _US_PER_HOUR, t)
        counted = hours.get(hour)
        if counted is None:
            hours[hour] = [1, amount[i]]
        else:
            counted[0] += 1
            counted[1] += amount[i]
    by_currency: charge_writes.Hours = {}  # tariffs of one currency share its hour's row
    for (number, t), (count, amount_sum) in hours.items():
        hour_key = (charge_writes.hour_since_epoch(number), currencies[t])
        into = by_currency.setdefault(hour_key, [0, 0, 0, 0])
        into[0] += count
        into[2] += amount_sum
    return charge_writes.of_days(days, by_currency)


def _object_keys(claims: list[Entry], claimed_at: list[int], role: bytearray,
                 ids: Sequence[int]) -> list[bytes]:
    """The usage_keys rows (encoded) of the object path's claims, each taking the usage id
    of its place among all claims in file order; ``role`` marks them 2."""
    out: list[bytes] = []
    now = datetime.now(UTC)
    before, last = 0, 0  # claims before item ``last``
    for entry, index in zip(claims, claimed_at, strict=True):
        before += (index - last) - role.count(0, last, index)
        last = index + 1
        role[index] = 2
        usage_id = entry.usage_id = ids[before]
        before += 1
        outcome = entry.outcome
        assert entry.record is not None and outcome is not None
        row = (entry.source, entry.record.record_key, outcome.account_id,
               entry.event_time or now, usage_id)
        out.append(copy_payload.encode([row], KEY_KINDS)[_HEADER:-_TRAILER])
    return out
