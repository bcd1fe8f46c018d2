"""Usage read by binary COPY, rated by the native kernel, summed per account cycle.

PostgreSQL shapes each row to fixed width (account number, event time, kind code, rating
usage, ``called`` as 20 bytes, event quantity), so a chunk of the COPY stream is a numpy
record array without any per-record Python object. Each batch is rated under every catalog
being compared (``server.rating``'s compiled kernel, one GIL-free call) and added into dense
per-(account, cycle, slot) sums, where a slot is (currency, zone, kind): what a bill run's
usage groups are keyed by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from billing_oss.native import rating as kernel
from billing_oss.server.rating import NativeRater
from billing_oss.server.rating.native import STATUS_REASONS
from billing_oss.server.simulation.snapshot_repo import PAD

WIDTH = kernel.CALLED_WIDTH
KINDS = ("voice", "sms", "data", "event")
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in µs since 1970: binary timestamptz's zero
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
MAX_CELLS = 40_000_000  # accounts × cycles × slots held in memory per catalog

ROW = np.dtype([
    ("nf", ">i2"), ("l0", ">i4"), ("account", ">i4"), ("l1", ">i4"), ("event", ">i8"),
    ("l2", ">i4"), ("kind", ">i2"), ("l3", ">i4"), ("usage", ">i8"), ("l4", ">i4"),
    ("called", "u1", (WIDTH,)), ("l5", ">i4"), ("quantity", ">i8"),
])
_LENGTHS = {"nf": 6, "l0": 4, "l1": 8, "l2": 2, "l3": 8, "l4": WIDTH, "l5": 8}


class CopyError(ValueError):
    """The COPY stream is not what ``copy_query`` asks for."""


class RowStream:
    """Cuts a binary COPY byte stream into whole ``ROW`` arrays of at most ``batch`` rows."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self._buffer = bytearray()
        self._header_done = False
        self.ended = False

    def feed(self, data: bytes) -> list[npt.NDArray[np.void]]:
        self._buffer += data
        if not self._header_done:
            if len(self._buffer) < 19:
                return []
            if bytes(self._buffer[:11]) != SIGNATURE:
                raise CopyError("not a PostgreSQL binary COPY stream")
            extension = int.from_bytes(self._buffer[15:19], "big")
            del self._buffer[: 19 + extension]
            self._header_done = True
        out = []
        while len(self._buffer) >= self.batch * ROW.itemsize:
            out.append(self._take(self.batch))
        return out

    def finish(self) -> list[npt.NDArray[np.void]]:
        """The rows left; the stream must end with its trailer."""
        whole = (len(self._buffer) - 2) // ROW.itemsize
        out = [self._take(whole)] if whole > 0 else []
        if bytes(self._buffer) != b"\xff\xff":
            raise CopyError(f"the COPY stream ends with {len(self._buffer)} stray bytes")
        self._buffer.clear()
        self.ended = True
        return out

    def _take(self, rows: int) -> npt.NDArray[np.void]:
        size = rows * ROW.itemsize
        chunk = np.frombuffer(bytes(self._buffer[:size]), dtype=ROW)
        del self._buffer[:size]
        for name, length in _LENGTHS.items():
            if not (chunk[name] == length).all():
                raise CopyError(f"unexpected COPY field layout ({name})")
        return chunk


@dataclass(slots=True)
class Columns:
    """One batch as the kernel reads it (native byte order, contiguous)."""

    account: npt.NDArray[np.int32]
    event_us: npt.NDArray[np.int64]
    kind: npt.NDArray[np.uint8]
    usage: npt.NDArray[np.int64]
    called: npt.NDArray[np.uint8]  # n × WIDTH, NUL-padded
    quantity: npt.NDArray[np.int64]  # what a bill run sums: usage; events: micro-units

    @classmethod
    def of(cls, rows: npt.NDArray[np.void]) -> Columns:
        called = np.ascontiguousarray(rows["called"])
        called[called == PAD] = 0
        kind = rows["kind"].astype(np.uint8)
        usage = rows["usage"].astype(np.int64)
        return cls(account=rows["account"].astype(np.int32),
                   event_us=rows["event"].astype(np.int64) + PG_EPOCH_US, kind=kind,
                   usage=usage, called=called.reshape(-1),
                   quantity=np.where(kind == 3, rows["quantity"].astype(np.int64), usage))

    def __len__(self) -> int:
        return len(self.account)


@dataclass(slots=True)
class Plans:
    """Each account's plans (tariff numbers of one compiled catalog over [from, to)), flat:
    account a's plans are rows ``first[a] .. first[a] + count[a]``."""

    first: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    start_us: npt.NDArray[np.int64]
    end_us: npt.NDArray[np.int64]  # int64 max: open-ended
    tariff: npt.NDArray[np.int32]

    @classmethod
    def build(cls, per_account: Sequence[Sequence[tuple[int, int | None, int]]]) -> Plans:
        first: list[int] = []
        count: list[int] = []
        start: list[int] = []
        end: list[int] = []
        tariff: list[int] = []
        for plans in per_account:
            first.append(len(start))
            count.append(len(plans))
            for s, e, t in plans:
                start.append(s)
                end.append(np.iinfo(np.int64).max if e is None else e)
                tariff.append(t)
        return cls(np.array(first, np.int64), np.array(count, np.int64),
                   np.array(start, np.int64), np.array(end, np.int64),
                   np.array(tariff, np.int32))

    def tariffs(self, account: npt.NDArray[np.int32],
                event_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
        """The tariff number in force per record (-1: none)."""
        out = np.full(len(account), -1, np.int32)
        first, count = self.first[account], self.count[account]
        for j in range(int(self.count.max(initial=0))):
            row = first + j
            has = j < count
            row = np.where(has, row, 0)
            hit = (has & (out < 0) & (self.start_us[row] <= event_us)
                   & (event_us < self.end_us[row]))
            out[hit] = self.tariff[row[hit]]
        return out


@dataclass(slots=True)
class Slots:
    """(currency, zone name, kind) ↔ slot number, shared by the catalogs compared; per
    compiled catalog, each version's zone ids mapped to zone names' numbers."""

    currencies: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=lambda: [""])  # "": no zone (a "*" rate)

    def currency(self, code: str) -> int:
        if code not in self.currencies:
            self.currencies.append(code)
        return self.currencies.index(code)

    def zone(self, name: str) -> int:
        if name not in self.zones:
            self.zones.append(name)
        return self.zones.index(name)


@dataclass(slots=True)
class SlotMap:
    version_base: npt.NDArray[np.int64]
    zone_number: npt.NDArray[np.int64]  # version_base[v] + zone id -> zone name number
    version_currency: npt.NDArray[np.int64]

    @classmethod
    def build(cls, rater: NativeRater, slots: Slots) -> SlotMap:
        compiled = rater.compiled
        tariff_of_version = []
        for number, tariff_id in enumerate(compiled.tariff_index):
            versions = len(rater.catalog.tariffs[tariff_id].versions)
            tariff_of_version += [number] * versions
        base: list[int] = []
        numbers: list[int] = []
        for names in compiled.zone_names:
            base.append(len(numbers))
            numbers += [slots.zone(name) for name in names]
        return cls(np.array(base, np.int64), np.array(numbers or [0], np.int64),
                   np.array([slots.currency(compiled.currencies[t]) for t in tariff_of_version]
                            or [0], np.int64))


# Kernel status -> reason name, as the coverage report lists it.
REASONS = {code: reason.value for code, reason in STATUS_REASONS.items() if reason is not None}
N_STATUS = max(REASONS) + 1


@dataclass(slots=True)
class Totals:
    """Dense sums per (account, cycle, slot) of one catalog, plus what it could not rate."""

    cells: int
    amount: npt.NDArray[np.int64]
    count: npt.NDArray[np.int64]
    quantity: npt.NDArray[np.int64]
    rejected: npt.NDArray[np.int64]  # per status code: records
    rated: int = 0

    @classmethod
    def empty(cls, cells: int) -> Totals:
        if cells > MAX_CELLS:
            raise ValueError(f"{cells} account × cycle × (currency, zone, kind) cells exceed "
                             f"{MAX_CELLS}: narrow the run with --accounts or --segment")
        return cls(cells, np.zeros(cells, np.int64), np.zeros(cells, np.int64),
                   np.zeros(cells, np.int64), np.zeros(N_STATUS, np.int64))


@dataclass(slots=True)
class Rated:
    status: npt.NDArray[np.uint8]
    amount: npt.NDArray[np.int64]
    currency: npt.NDArray[np.int64]
    slot: npt.NDArray[np.int64]


def rate(rater: NativeRater, plans: Plans, slot_map: SlotMap, slots: Slots,
         cols: Columns) -> Rated:
    """One batch under one catalog: the kernel's status and amount, and each charged
    record's slot."""
    n = len(cols)
    tariff = plans.tariffs(cols.account, cols.event_us)
    status = np.where(tariff < 0, kernel.STATUS_NO_TARIFF, 0).astype(np.uint8)
    amount = np.zeros(n, np.int64)
    version = np.zeros(n, np.int32)
    zone = np.zeros(n, np.int32)
    band = np.zeros(n, np.int32)
    columns: list[Any] = [tariff, cols.event_us, cols.kind, cols.usage, cols.called, status,
                          amount, version, zone, band]
    rater.compiled.kernel.rate(*(memoryview(c) for c in columns))
    ok = status == 0
    safe_version = np.where(ok, version, 0)
    zone_name = np.where(
        ok & (zone >= 0),
        slot_map.zone_number[np.where(ok & (zone >= 0),
                                      slot_map.version_base[safe_version] + zone, 0)], 0)
    currency = np.where(ok, slot_map.version_currency[safe_version], 0)
    slot = (currency * len(slots.zones) + zone_name) * len(KINDS) + cols.kind
    return Rated(status, amount, currency, slot.astype(np.int64))


def add(totals: Totals, rated: Rated, cell_base: npt.NDArray[np.int64],
        quantity: npt.NDArray[np.int64]) -> None:
    """Add a rated batch into ``totals``; ``cell_base`` is each record's (account, cycle)
    cell times the number of slots (-1: outside the simulated cycles)."""
    inside = cell_base >= 0
    ok = (rated.status == 0) & inside
    cell = cell_base[ok] + rated.slot[ok]
    np.add.at(totals.amount, cell, rated.amount[ok])
    np.add.at(totals.count, cell, 1)
    np.add.at(totals.quantity, cell, quantity[ok])
    totals.rated += int(ok.sum())
    totals.rejected += np.bincount(rated.status[inside & ~ok], minlength=N_STATUS)[:N_STATUS]
