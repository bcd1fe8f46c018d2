"""Committing adapters' deliveries (MQTT messages, HTTP batches): one transaction per call.

Positions are claimed first (``source_offsets``): a position committed before is a replay and
gets the stored outcome of its first delivery; a position repeated within the same call is a
replay of its first occurrence. The remaining deliveries are written as one batch, and each
one's outcome is stored with its position (``stored_outcomes``) so a replay can answer the
same.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import msgspec

from billing_oss.core.contract import Counts, Delivery, Outcome, RecordResult
from billing_oss.core.metrics import PIPELINE_BATCH_SECONDS
from billing_oss.core.money import format_outcome
from billing_oss.core.ports import Charge, Failure, Item, Rater
from billing_oss.server.pipeline import json_columns, stored_outcomes, writer
from billing_oss.server.pipeline.batch import Entry, WriteBatch, prepare
from billing_oss.server.pipeline.raters import RaterCache
from billing_oss.server.pipeline.retry import with_retries
from billing_oss.server.pipeline.rows import build_rows, printable
from billing_oss.server.store import usage_repo

_COUNT_FIELD = {"charged": "charged", "suspense": "suspense", "duplicate": "duplicates",
                "filtered": "filtered", "pending": "pending"}


class UsageIds:
    """Usage ids reserved from the database sequence in blocks, handed out here: a commit
    of a few hundred records should not pay a round trip for its ids. Ids never used (the
    rest of a block when the process stops) are gaps, as a rolled-back insert leaves."""

    def __init__(self, pool: asyncpg.Pool, block: int = 8192) -> None:
        self.pool, self.block = pool, block
        self._free: collections.deque[int] = collections.deque()
        self._refill = asyncio.Lock()

    async def take(self, count: int) -> list[int]:
        async with self._refill:
            if len(self._free) < count:
                async with self.pool.acquire() as conn:
                    self._free.extend(await usage_repo.next_usage_ids(
                        conn, max(count - len(self._free), self.block)))
            free = self._free
            return [free.popleft() for _ in range(count)]


async def commit(
    pool: asyncpg.Pool, raters: RaterCache, deliveries: Sequence[Delivery], *,
    attempts: int, backoff_s: float, usage_ids: UsageIds | None = None,
) -> list[Outcome]:
    if not deliveries:
        return []
    started = time.perf_counter()
    rater = await raters.current()
    # Validation, rating and the COPY rows are built before a connection is taken, so the
    # transaction only claims and streams. Usage ids are reserved for every item.
    size = sum(len(d.records) + len(d.rejects) for d in deliveries)
    ids = await (usage_ids or UsageIds(pool, block=0)).take(size)
    parts = _parts(deliveries, rater, ids)
    months = set().union(*(writer.months(part.batch) for part in parts))
    tries = 0

    async def attempt() -> tuple[list[Outcome], list[WriteBatch]]:
        nonlocal tries
        tries += 1
        async with pool.acquire() as conn:
            await usage_repo.ensure_partitions(conn, months)
            async with conn.transaction():
                stored = await usage_repo.claim_offsets(
                    conn, [d.source for d in deliveries], [d.position for d in deliveries])
                fresh = _fresh(deliveries, stored)
                if all(fresh) and tries == 1:  # the rows built ahead are the ones to write
                    outcomes: list[Outcome] = []
                    for part in parts:
                        await writer.store_batch(conn, part.batch, source_file_id=None,
                                                 rater=rater)
                        outcomes += part.outcomes()
                    outcomes = [outcomes[k] for k in _order(parts)]
                    batches = [part.batch for part in parts]
                else:  # replays (or a retry after a partial claim): rows built in here
                    objects = _Objects(deliveries, rater, ids)
                    batch = WriteBatch([e for i, b in enumerate(objects.prepared())
                                        if fresh[i] for e in b.entries])
                    await writer.store_batch(conn, batch, source_file_id=None, rater=rater)
                    outcomes = _outcomes(deliveries, objects.prepared(), fresh, stored)
                    batches = [batch]
                new = [i for i, is_fresh in enumerate(fresh) if is_fresh]
                if new:
                    await usage_repo.store_offset_results(
                        conn, [deliveries[i].source for i in new],
                        [deliveries[i].position for i in new],
                        [stored_outcomes.encode(outcomes[i]) for i in new])
        return outcomes, batches

    outcomes, batches = await with_retries(attempt, attempts=attempts, backoff_s=backoff_s,
                                           what=f"{len(deliveries)} deliveries")
    for batch in batches:
        writer.observe(batch)
    PIPELINE_BATCH_SECONDS.labels("deliveries").observe(time.perf_counter() - started)
    return outcomes


@dataclass(slots=True)
class _Part:
    """Deliveries of a commit written as one batch: carried as columns, or objects."""

    indexes: list[int]  # of the deliveries, in the commit
    deliveries: list[Delivery]
    batch: WriteBatch
    objects: _Objects

    def outcomes(self) -> list[Outcome]:
        """Once the batch is written: each delivery's outcome (all fresh)."""
        carried = self.batch.carried
        if isinstance(carried, json_columns.CarriedJson):  # every record charged
            return json_columns.outcomes(self.deliveries, carried)
        return _outcomes(self.deliveries, self.objects.prepared(),
                         [True] * len(self.deliveries), {})


def _parts(deliveries: Sequence[Delivery], rater: Rater, ids: list[int]) -> list[_Part]:
    """The commit as one batch carried by column; else, when some deliveries can be and
    others not, those two groups as two batches (written one after the other in the same
    transaction) unless a record key is in both (then which copy claims it depends on the
    order: the object path decides); else one batch of objects."""
    whole = _Objects(deliveries, rater, ids)
    everything = list(range(len(deliveries)))
    refused: list[int] = []
    columns = json_columns.prepare(deliveries, rater, ids, whole.combined, refused)
    if columns is not None:
        return [_Part(everything, list(deliveries), columns, whole)]
    if len(deliveries) > 1:
        if refused:  # the records the rater refuses name their deliveries: the rest may go
            starts = list(itertools.accumulate((len(d.records) for d in deliveries),
                                               initial=0))
            out = {bisect.bisect_right(starts, i) - 1 for i in refused}
            carried = [i for i in everything if i not in out]
        else:  # some check over all the columns failed: try each delivery alone
            carried = [i for i, d in enumerate(deliveries)
                       if json_columns.prepare([d], rater, ids, _no_expand) is not None]
        if carried and len(carried) < len(deliveries):
            split = _split(deliveries, rater, ids, carried)
            if split is not None:
                return split
    return [_Part(everything, list(deliveries), whole.combined(), whole)]


def _split(deliveries: Sequence[Delivery], rater: Rater, ids: list[int], carried: list[int]
           ) -> list[_Part] | None:
    taken = set(carried)
    others = [i for i in range(len(deliveries)) if i not in taken]
    by_column = [deliveries[i] for i in carried]
    by_object = [deliveries[i] for i in others]
    keys = {(r.source, r.record_key) for d in by_column for r in d.records}
    if any((r.source, r.record_key) in keys for d in by_object for r in d.records):
        return None
    size = sum(len(d.records) for d in by_column)
    column_ids, object_ids = ids[:size], ids[size:]
    objects = _Objects(by_column, rater, column_ids)
    columns = json_columns.prepare(by_column, rater, column_ids, objects.combined)
    if columns is None:  # a key twice among the carried deliveries
        return None
    rest = _Objects(by_object, rater, object_ids)
    return [_Part(carried, by_column, columns, objects),
            _Part(others, by_object, rest.combined(), rest)]


def _no_expand() -> WriteBatch:
    raise AssertionError("a delivery tried alone is never written")


def _order(parts: list[_Part]) -> list[int]:
    """Where each delivery's outcome is in the parts' outcomes, put end to end."""
    at: dict[int, int] = {}
    for part in parts:
        for index in part.indexes:
            at[index] = len(at)
    return [at[i] for i in range(len(at))]


class _Objects:
    """The object path of a commit's items, made once, when first asked for: the batch to
    write (``combined``) and each delivery's entries in it (``prepared``). A batch carried
    as columns asks for it only when the writer expands it, or on a replay or retry."""

    def __init__(self, deliveries: Sequence[Delivery], rater: Rater, ids: list[int]) -> None:
        self._args = (deliveries, rater, ids)
        self._made: tuple[list[WriteBatch], WriteBatch] | None = None

    def _make(self) -> tuple[list[WriteBatch], WriteBatch]:
        if self._made is None:
            self._made = _prepare(*self._args)
        return self._made

    def prepared(self) -> list[WriteBatch]:
        return self._make()[0]

    def combined(self) -> WriteBatch:
        return self._make()[1]


def _prepare(deliveries: Sequence[Delivery], rater: Rater, ids: list[int]
             ) -> tuple[list[WriteBatch], WriteBatch]:
    """Each delivery's entries, and all of them as one batch with its rows built.

    The deliveries' items are validated and rated together, in one call to the rater: a
    commit of many small messages pays the rater's per-call cost once, not per message."""
    items: list[Item] = []
    starts: list[int] = []
    for delivery in deliveries:
        starts.append(len(items))
        items += delivery.records
        # a reject naming no source is filed under its delivery's, as ``prepare`` would
        items += [r if r.source else msgspec.structs.replace(r, source=delivery.source)
                  for r in delivery.rejects]
    positions = [d.position for d in deliveries]

    def position_of(index: int) -> str:
        k = bisect.bisect_right(starts, index) - 1
        return f"{positions[k]}#{index - starts[k]}"

    entries = prepare(items, rater, "", position_of).entries
    ends = [*starts[1:], len(items)]
    prepared = [WriteBatch(entries[start:end]) for start, end in zip(starts, ends, strict=True)]
    combined = WriteBatch(entries)
    combined.rows = build_rows(combined, ids, None)
    return prepared, combined


def _fresh(deliveries: Sequence[Delivery], stored: dict[tuple[str, str], bytes | None]
           ) -> list[bool]:
    """Deliveries to write now: not committed before, first occurrence in this call."""
    seen: set[tuple[str, str]] = set()
    fresh = []
    for d in deliveries:
        key = (d.source, d.position)
        fresh.append(key not in stored and key not in seen)
        seen.add(key)
    return fresh


def _outcomes(deliveries: Sequence[Delivery], prepared: list[WriteBatch], fresh: list[bool],
              stored: dict[tuple[str, str], bytes | None]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    first: dict[tuple[str, str], Outcome] = {}
    for delivery, batch, is_fresh in zip(deliveries, prepared, fresh, strict=True):
        key = (delivery.source, delivery.position)
        if is_fresh:
            outcome = _outcome(delivery.position, batch.entries)
            first[key] = outcome
        elif key in first:
            outcome = _replayed(first[key])
        else:
            raw = stored.get(key)
            outcome = (_replayed(stored_outcomes.decode(raw)) if raw
                       else Outcome(position=delivery.position, replay=True, counts=Counts(),
                                    results=[]))
        outcomes.append(outcome)
    return outcomes


def _replayed(original: Outcome) -> Outcome:
    return Outcome(position=original.position, replay=True, counts=original.counts,
                   results=original.results)


def _outcome(position: str, entries: list[Entry]) -> Outcome:
    counts = Counts(in_=len(entries))
    tally = dict.fromkeys(_COUNT_FIELD.values(), 0)
    results: list[RecordResult] = []
    append = results.append
    amounts: dict[int, str] = {}  # the same few prices recur: format each once
    for entry in entries:
        status = entry.status or "suspense"
        tally[_COUNT_FIELD[status]] += 1
        key = entry.record.record_key if entry.record is not None else None
        outcome = entry.outcome
        if status == "charged" and isinstance(outcome, Charge):
            micros = outcome.amount_micros
            amount = amounts.get(micros)
            if amount is None:
                amount = amounts[micros] = format_outcome(micros)
            append(RecordResult(record_key=key, status=status, amount=amount,
                                currency=outcome.currency))
        elif status == "suspense" and isinstance(outcome, Failure):
            if key is not None and "\x00" in key:  # outcomes are stored as jsonb
                key = printable(key)
            append(RecordResult(record_key=key, status=status, reason=str(outcome.reason),
                                detail=outcome.detail))
        else:
            append(RecordResult(record_key=key, status=status))
    for name, value in tally.items():
        setattr(counts, name, value)
    return Outcome(position=position, replay=False, counts=counts, results=results)
