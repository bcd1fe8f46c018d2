"""A batch on its way to the database: each item validated and, where it can be, rated.

``prepare`` is the CPU stage (no I/O): rejects and invalid records become suspense entries,
3GPP partial parts are set aside for the merge (which needs the database), everything else
is priced by the rater in one call. The writer then only dedupes and stores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from billing_oss.core.contract import RecordStatus, Reject
from billing_oss.core.ports import Charge, Failure, Item, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.validate import validate

if TYPE_CHECKING:
    from billing_oss.server.pipeline.rows import Rows


class Carried(Protocol):
    """Items of a batch carried as columns, no entry each (``server.pipeline.columnar`` for
    files, ``server.pipeline.json_columns`` for deliveries)."""

    @property
    def count(self) -> int: ...

    @property
    def months(self) -> set[date]: ...

    @property
    def expand(self) -> Callable[[], WriteBatch]:
        """The same batch through the object path, same usage ids."""


@dataclass(slots=True)
class Entry:
    """One item of a batch. ``outcome`` is None for a partial part awaiting its group."""

    source: str
    record: UsageRecord | None
    event_time: datetime | None
    outcome: Charge | Failure | None
    position: str  # where it came from, stored with suspense rows
    raw: bytes | None = None
    status: RecordStatus | None = None  # set by the writer
    usage_id: int | None = None
    parts: list[Entry] | None = None  # a merged partial group: its parts in this batch


@dataclass(slots=True)
class WriteBatch:
    entries: list[Entry]
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)  # currency → micro-units charged
    merged: list[Entry] = field(default_factory=list)  # partial groups completed by the batch
    rows: Rows | None = None  # built ahead of the write (``server.pipeline.rows``)
    # Items carried as columns (``Carried``): no entry each, every one
    # charged unless its key was taken before; then ``expand`` turns the batch into entries.
    carried: Carried | None = None

    @property
    def size(self) -> int:
        """Items of the input the batch stands for."""
        return len(self.entries) + (self.carried.count if self.carried is not None else 0)

    def expand(self) -> None:
        """The batch as the object path makes it: an entry per item (same usage ids)."""
        if self.carried is not None:
            whole = self.carried.expand()
            self.entries, self.rows, self.carried = whole.entries, whole.rows, None

    def reset(self) -> None:
        """Forget what a failed write attempt decided, so the batch can be written again
        (usage ids reserved with the rows stay: the rolled-back attempt did not use them)."""
        for entry in self.entries:
            entry.status = None
        self.counts = {}
        self.totals = {}
        self.merged = []


def prepare(
    items: Sequence[Item], rater: Rater, source: str, position_of: Callable[[int], str]
) -> WriteBatch:
    """Validate and rate ``items`` received from ``source``.

    ``position_of(i)`` names where item i came from; it is only called for items that may
    be stored outside usage (suspense, partial parts). A record is deduplicated under its
    own ``source`` field; ``source`` is used for rejects, which have none.
    """
    entries: list[Entry] = []
    to_rate: list[UsageRecord] = []
    rated: list[tuple[int, Entry]] = []
    for index, item in enumerate(items):
        if isinstance(item, Reject):
            detail = f"{item.detail} (at {item.where})" if item.where else item.detail
            failure = Failure(item.reason, detail)
            entries.append(Entry(item.source or source, None, None, failure,
                                 position_of(index), item.raw))
            continue
        when, problem = validate(item)
        if problem is not None:
            entries.append(Entry(item.source, item, when, problem, position_of(index)))
        elif item.partial_seq is not None:
            entries.append(Entry(item.source, item, when, None, position_of(index)))
        else:
            entry = Entry(item.source, item, when, None, "")
            entries.append(entry)
            to_rate.append(item)
            rated.append((index, entry))
    if to_rate:
        for (index, entry), outcome in zip(rated, rater.rate(to_rate), strict=True):
            entry.outcome = outcome
            if isinstance(outcome, Failure):
                entry.position = position_of(index)
    return WriteBatch(entries)
