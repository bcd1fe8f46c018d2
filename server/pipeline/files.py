"""Ingesting one file: decode → validate + rate → write, as three tasks joined by bounded queues.

The file is registered by content (``source_files``, unique per source and sha256). Each batch
commits its rows together with the file's checkpoint (items committed so far, cumulative
counts and totals), so a crash at any point resumes after the last committed batch and a file
ingested before is recognised and changes nothing. A session advisory lock keeps a second
worker off a file that is being processed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from billing_oss.core.contract import Counts, FileOutcome
from billing_oss.core.errors import DecodeError, FileBusy, Reason
from billing_oss.core.metrics import (
    PIPELINE_BATCH_SECONDS,
    PIPELINE_QUEUE_DEPTH,
    PIPELINE_WRITE_RETRIES,
)
from billing_oss.core.money import format_outcome
from billing_oss.core.ports import Decoder, Failure, FileHeader, Item, Rater, SequencedDecoder
from billing_oss.server.integrations import outbox
from billing_oss.server.integrations.events import UsageFileIngested
from billing_oss.server.pipeline import writer
from billing_oss.server.pipeline.batch import Entry, WriteBatch, prepare
from billing_oss.server.pipeline.columnar import ColumnChunk, prepare_columns
from billing_oss.server.pipeline.raters import RaterCache
from billing_oss.server.pipeline.retry import (
    MAX_BACKOFF_S,
    RETRY_MESSAGE,
    TRANSIENT,
    discard,
    with_retries,
)
from billing_oss.server.pipeline.rows import build_rows
from billing_oss.server.store import usage_repo
from billing_oss.server.store.pool import Connection

# Called after each committed batch with the number of items committed so far.
FileProgress = Callable[[int, int | None], None]  # (items committed, items in the file)
log = logging.getLogger(__name__)
RAW_EXCERPT = 65536  # bytes of an undecodable remainder kept in suspense for diagnosis


@dataclass(frozen=True, slots=True)
class FileSettings:
    batch_size: int
    queue_depth: int
    write_attempts: int
    retry_backoff_s: float
    write_lanes: int = 1


@dataclass(slots=True)
class _Chunk:
    start: int  # ordinal of the first item in the file
    items: list[Item] | ColumnChunk  # a native batch goes the columnar path
    batch: WriteBatch | None = None
    rater: Rater | None = None


@dataclass(slots=True)
class _Stop:
    error: DecodeError | None  # None: the file ended normally
    ordinal: int  # items decoded before the stop


@dataclass(slots=True)
class _State:
    claim: usage_repo.FileClaim
    conn: Any = None  # the writer's connection, holding the file's lock


@dataclass(slots=True)
class _InFlight:
    chunk: _Chunk
    task: asyncio.Task[None]
    started: float
    lane: int
    claimed: asyncio.Event  # its record keys are taken: the next batch may take its own


class _PreviousFailed(Exception):
    """The batch before this one did not commit: this one rolls back and is run again."""


async def file_sha256(path: Path) -> tuple[str, int]:
    def digest() -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
                size += len(block)
        return h.hexdigest(), size
    return await asyncio.to_thread(digest)


async def ingest_file(
    pool: asyncpg.Pool, raters: RaterCache, decoder: Decoder, settings: FileSettings,
    path: Path, *, source: str, fmt: str, name: str, sequence_no: int | None = None,
    progress: FileProgress | None = None,
    fault: Callable[[Connection], Awaitable[None]] | None = None,
) -> FileOutcome:
    """Push one file through the pipeline; return its reconciliation."""
    sha, size = await file_sha256(path)
    header = FileHeader(None, None)
    if isinstance(decoder, SequencedDecoder):  # the declared count is stored with the file
        header = await _read_header(decoder, path, count=progress is not None)
    if sequence_no is None:
        sequence_no = header.sequence_no

    async def register() -> usage_repo.FileClaim:
        async with pool.acquire() as conn:
            return await usage_repo.claim_file(conn, source=source, name=name, fmt=fmt,
                                               sha256=sha, size=size, sequence_no=sequence_no,
                                               declared_records=header.declared)

    claim = await with_retries(register, attempts=settings.write_attempts,
                               backoff_s=settings.retry_backoff_s, what=name)
    if claim.state != "claimed":
        return _outcome(claim, name, sha, replay=True)
    state = _State(claim)
    run = _FileRun(pool, raters, decoder, settings, path, source, name, state, progress, fault)
    run.total = header.items
    try:
        await run.retried(run.lock)
        if state.claim.state != "claimed":
            return _outcome(state.claim, name, sha, replay=True)
        run.report_progress()  # where this run starts: the rate counts from here
        with _fewer_collections():
            await run.stages()
        run.total = state.claim.committed_records  # done: the exact count, said once more
        run.report_progress()
    finally:
        await run.release()
    return _outcome(state.claim, name, sha, replay=False)


GC_THRESHOLD_INGESTING = 50_000  # allocations between young-generation collections
_ingesting: list[tuple[int, int, int]] = []  # the thresholds saved by each running file


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """A file makes millions of short-lived, acyclic objects (records, rows, outcomes); at
    the default threshold the cyclic collector runs every 700 allocations and keeps
    traversing the batches waiting in the queues — a third of the CPU of an ingest. While
    any file is being ingested the young generation is collected less often."""
    saved = gc.get_threshold()
    if not _ingesting:
        gc.set_threshold(max(saved[0], GC_THRESHOLD_INGESTING), saved[1], saved[2])
    _ingesting.append(saved)
    try:
        yield
    finally:
        first = _ingesting[0]
        _ingesting.pop()
        if not _ingesting:
            gc.set_threshold(*first)


class _FileRun:
    def __init__(self, pool: asyncpg.Pool, raters: RaterCache, decoder: Decoder,
                 settings: FileSettings, path: Path, source: str, name: str, state: _State,
                 progress: FileProgress | None,
                 fault: Callable[[Connection], Awaitable[None]] | None) -> None:
        self.pool, self.raters, self.decoder, self.settings = pool, raters, decoder, settings
        self.path, self.source, self.name, self.state = path, source, name, state
        self.progress, self.fault = progress, fault
        self.total: int | None = None  # items in the file: declared, then counted once decoded
        self.file_id = state.claim.source_file_id
        # Lane 0 writes on the lock connection; the other lanes on pooled connections.
        self.lanes: list[Any] = [None] * max(1, settings.write_lanes)  # pool connections
        self._locking = asyncio.Lock()

    def report_progress(self) -> None:
        """Items committed and the file's total, while the total is credible: a header that
        declares fewer items than are already committed (or a negative count) has none."""
        if self.progress is None:
            return
        done = self.state.claim.committed_records
        if self.total is not None and self.total < done:
            self.total = None
        self.progress(done, self.total)

    async def retried(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """``attempt`` (one round trip or a few) again after a lost connection."""
        return await with_retries(attempt, attempts=self.settings.write_attempts,
                                  backoff_s=self.settings.retry_backoff_s, what=self.name)

    # -- the writer's connection and the file lock ---------------------------------------

    async def lock(self) -> None:
        conn = await self.pool.acquire()
        try:
            if not await usage_repo.try_lock_file(conn, self.file_id):
                raise FileBusy(f"{self.name} is being ingested by another worker")
            # Re-read under the lock: another worker may have finished it meanwhile.
            self.state.claim = await usage_repo.read_file(conn, self.file_id)
        except BaseException:
            await discard(self.pool, conn)
            raise
        self.state.conn = conn

    async def release(self) -> None:
        for lane in range(1, len(self.lanes)):
            conn = self.lanes[lane]
            self.lanes[lane] = None
            if conn is not None:
                await self._give_back(conn)
        conn, self.state.conn = self.state.conn, None
        if conn is None:
            return
        try:
            await usage_repo.unlock_file(conn, self.file_id)
        except Exception:  # a dead connection released its session locks already
            await discard(self.pool, conn)
            return
        await self._give_back(conn)

    async def _give_back(self, conn: Any) -> None:
        """Release a connection to the pool; one that cannot be reset is discarded."""
        try:
            await self.pool.release(conn)
        except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError):
            await discard(self.pool, conn)

    async def _connection(self) -> Connection:
        async with self._locking:  # lanes reconnecting at once must not lock twice
            if self.state.conn is None:
                await self.lock()
        conn: Connection = self.state.conn
        return conn

    async def _lane(self, lane: int) -> Connection:
        """The lane's connection. The lock connection comes first, so that after a failure the
        checkpoint is re-read before any lane decides what is already committed."""
        conn = await self._connection()
        if lane == 0:
            return conn
        if self.lanes[lane] is None:
            self.lanes[lane] = await self.pool.acquire()
        lane_conn: Connection = self.lanes[lane]
        return lane_conn

    async def _drop_connection(self) -> None:
        """After a failure the connections' state is unknown: close them all; retries
        reconnect, relock and re-read the checkpoint."""
        conns = [self.state.conn, *self.lanes[1:]]
        self.state.conn = None
        self.lanes = [None] * len(self.lanes)
        for conn in conns:
            if conn is not None:
                await discard(self.pool, conn)

    # -- the stages ------------------------------------------------------------------------

    async def stages(self) -> None:
        depth = self.settings.queue_depth
        decoded: asyncio.Queue[_Chunk | _Stop] = asyncio.Queue(depth)
        rated: asyncio.Queue[_Chunk | _Stop] = asyncio.Queue(depth)
        tasks = [asyncio.create_task(self._decode(decoded), name="decode"),
                 asyncio.create_task(self._rate(decoded, rated), name="rate"),
                 asyncio.create_task(self._write(rated), name="write")]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _decode(self, out: asyncio.Queue[_Chunk | _Stop]) -> None:
        """Decoding runs in a worker thread (the native decoders release the GIL), so the
        event loop keeps feeding PostgreSQL meanwhile."""
        resume = self.state.claim.committed_records
        ordinal = 0
        columns = getattr(self.decoder, "columns", None)
        chunks: Iterator[list[Item] | ColumnChunk] = (columns or self.decoder)(
            self.path, source=self.source, chunk=self.settings.batch_size)
        try:
            while (items := await asyncio.to_thread(next, chunks, None)) is not None:
                start, ordinal = ordinal, ordinal + len(items)
                if ordinal > resume:
                    skip = max(0, resume - start)
                    if skip:  # resumed inside it: the items after the checkpoint, as objects
                        objects = items if isinstance(items, list) else items.objects()
                        await out.put(_Chunk(start + skip, objects[skip:]))
                    else:
                        await out.put(_Chunk(start, items))
                    PIPELINE_QUEUE_DEPTH.labels("decoded").set(out.qsize())
        except DecodeError as exc:
            self.total = None  # the malformed rest is one more item, of no known size
            await out.put(_Stop(exc, ordinal))
            return
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        self.total = ordinal
        await out.put(_Stop(None, ordinal))

    async def _rate(self, inp: asyncio.Queue[_Chunk | _Stop],
                    out: asyncio.Queue[_Chunk | _Stop]) -> None:
        """Validate, rate and build the batch's rows in a worker thread; usage ids are
        reserved first so the write stage only streams rows."""
        while True:
            chunk = await inp.get()
            if isinstance(chunk, _Stop):
                await out.put(chunk)
                return
            chunk.rater = await self.retried(self.raters.current)
            ids = await self.retried(functools.partial(self._usage_ids, len(chunk.items)))
            chunk.batch = await asyncio.to_thread(
                _prepare_rows, chunk.items, chunk.rater, self.source,
                _positions(self.name, chunk.start), ids, self.file_id)
            chunk.items = []
            await out.put(chunk)
            PIPELINE_QUEUE_DEPTH.labels("rated").set(out.qsize())

    async def _usage_ids(self, count: int) -> list[int]:
        async with self.pool.acquire() as conn:
            return await usage_repo.next_usage_ids(conn, count)

    async def _write(self, inp: asyncio.Queue[_Chunk | _Stop]) -> None:
        """Commit the chunks in file order, several in flight: chunk n+1 writes its rows on
        another connection while chunk n commits, so PostgreSQL and this process work at the
        same time. Each commit (rows + the file's checkpoint) waits for the one before it.

        When a chunk's transaction fails, the chunks in flight after it are rolled back too,
        and all of them run again from the last committed checkpoint after a pause — the
        retry a lone batch would get (``server.pipeline.retry``), for a window of them.
        """
        window: collections.deque[_InFlight] = collections.deque()
        ready: collections.deque[_Chunk] = collections.deque()  # received or rolled back
        getter: asyncio.Future[_Chunk | _Stop] | None = None
        stop: _Stop | None = None
        failures, delay = 0, self.settings.retry_backoff_s
        try:
            while True:
                while ready and len(window) < len(self.lanes):
                    self._launch(window, ready.popleft())
                if stop is not None and not window and not ready:
                    await self._finish(stop)
                    return
                if getter is None and stop is None and not ready:
                    getter = asyncio.ensure_future(inp.get())
                waits: set[asyncio.Future[Any]] = {window[0].task} if window else set()
                if getter is not None and len(window) < len(self.lanes):
                    waits.add(getter)
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if getter is not None and getter.done():
                    item, getter = getter.result(), None
                    if isinstance(item, _Stop):
                        stop = item
                    else:
                        ready.append(item)
                if not (window and window[0].task.done()):
                    continue
                flight = window.popleft()
                try:
                    flight.task.result()
                except TRANSIENT as exc:
                    failures += 1
                    if failures >= self.settings.write_attempts:
                        raise
                    rolled_back = [flight.chunk, *await self._abort(window)]
                    ready.extendleft(reversed(rolled_back))
                    PIPELINE_WRITE_RETRIES.inc()
                    log.warning(RETRY_MESSAGE, extra={"fields": {
                        "what": self.name, "attempt": failures, "batches": len(rolled_back),
                        "error": f"{type(exc).__name__}: {exc}"}})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    continue
                failures, delay = 0, self.settings.retry_backoff_s
                self._committed(flight)
        finally:
            if getter is not None:
                getter.cancel()
            if window:
                await self._abort(window)

    def _launch(self, window: collections.deque[_InFlight], chunk: _Chunk) -> None:
        previous = window[-1] if window else None
        lane, claimed = self._free_lane(window), asyncio.Event()
        task = asyncio.create_task(self._commit(chunk, lane, previous, claimed),
                                   name=f"commit {lane}")
        window.append(_InFlight(chunk, task, time.perf_counter(), lane, claimed))

    def _free_lane(self, window: collections.deque[_InFlight]) -> int:
        busy = {flight.lane for flight in window}
        return next(lane for lane in range(len(self.lanes)) if lane not in busy)

    async def _abort(self, window: collections.deque[_InFlight]) -> list[_Chunk]:
        """Stop the transactions in flight (rolled back with their connections); return
        their chunks, in order."""
        for flight in window:
            flight.task.cancel()
        await asyncio.gather(*(flight.task for flight in window), return_exceptions=True)
        chunks = [flight.chunk for flight in window]
        window.clear()
        await self._drop_connection()
        return chunks

    def _committed(self, flight: _InFlight) -> None:
        PIPELINE_BATCH_SECONDS.labels("file").observe(time.perf_counter() - flight.started)
        assert flight.chunk.batch is not None
        writer.observe(flight.chunk.batch)
        self.report_progress()

    async def _commit(self, chunk: _Chunk, lane: int, previous: _InFlight | None,
                      claimed: asyncio.Event) -> None:
        batch, rater = chunk.batch, chunk.rater
        assert batch is not None and rater is not None
        end = chunk.start + batch.size
        conn: Connection | None = None
        try:
            conn = await self._lane(lane)
            if self.state.claim.committed_records >= end:
                claimed.set()
                await _committed(previous)
                return  # committed by an attempt whose answer was lost
            await usage_repo.ensure_partitions(conn, writer.months(batch))
            async with conn.transaction():
                await writer.store_batch(conn, batch, source_file_id=self.file_id, rater=rater,
                                         turn=functools.partial(_claimed, previous),
                                         claimed_keys=claimed.set)
                await _committed(previous)
                claim = self.state.claim
                counts = _add(claim.counts, batch.counts)
                totals = _add(claim.totals, batch.totals)
                await usage_repo.checkpoint_file(conn, self.file_id, after=chunk.start,
                                                 committed_records=end, counts=counts,
                                                 totals=totals)
                if self.fault is not None:
                    await self.fault(conn)
        except BaseException:
            await self._drop_lane(lane, conn)
            raise
        claim.committed_records, claim.counts, claim.totals = end, counts, totals

    async def _drop_lane(self, lane: int, conn: Connection | None) -> None:
        """A failed lane's connection is closed at once (its transaction rolls back); the
        write loop then drops the others and re-reads the checkpoint (``_abort``). Only the
        connection this lane used: its slot may hold a newer one by now (or none)."""
        if conn is None:
            return
        if lane and self.lanes[lane] is conn:
            self.lanes[lane] = None
        elif not lane and self.state.conn is conn:
            self.state.conn = None
        else:
            return  # dropped already (``_drop_connection``), maybe replaced since
        await discard(self.pool, conn)

    async def _finish(self, stop: _Stop) -> None:
        async def attempt() -> None:
            try:
                conn = await self._connection()
                claim = self.state.claim
                if claim.state != "claimed":
                    return
                async with conn.transaction():
                    counts = dict(claim.counts)
                    error, end = None, stop.ordinal
                    if stop.error is not None:
                        # The undecodable remainder counts as one item, in suspense.
                        error, end = stop.error.message, stop.ordinal + 1
                        await self._store_undecodable(conn, stop)
                        counts = _add(counts, {"in": 1, "suspense": 1})
                    await usage_repo.checkpoint_file(
                        conn, self.file_id, after=claim.committed_records, committed_records=end,
                        counts=counts, totals=claim.totals,
                        state="error" if error else "done", error=error)
                    await outbox.emit(conn, UsageFileIngested(
                        file_id=self.file_id, source=self.source, name=self.name,
                        sequence=claim.sequence_no, state="error" if error else "done",
                        error=error, records_in=counts.get("in", 0),
                        charged=counts.get("charged", 0), suspense=counts.get("suspense", 0),
                        duplicates=counts.get("duplicates", 0),
                        filtered=counts.get("filtered", 0), pending=counts.get("pending", 0)),
                        stream=f"source:{self.source}")
            except BaseException:
                await self._drop_connection()
                raise
            claim.state, claim.counts, claim.error = ("error" if error else "done"), counts, error
        await with_retries(attempt, attempts=self.settings.write_attempts,
                           backoff_s=self.settings.retry_backoff_s, what=self.name)

    async def _store_undecodable(self, conn: Connection, stop: _Stop) -> None:
        assert stop.error is not None
        offset = stop.error.offset or 0
        with self.path.open("rb") as f:
            f.seek(offset)
            raw = f.read(RAW_EXCERPT)
        entry = Entry(self.source, None, None, Failure(Reason.MALFORMED, stop.error.message),
                      f"{self.name}#{stop.ordinal}", raw)
        entry.status = "suspense"
        await usage_repo.copy_rows(conn, "suspense", usage_repo.SUSPENSE_COLUMNS,
                                   [writer.suspense_row(entry, entry.outcome, self.file_id)])  # type: ignore[arg-type]


async def _read_header(decoder: SequencedDecoder, path: Path, *, count: bool) -> FileHeader:
    """The file's header; a header too damaged to read is the decode stage's problem (it
    stops there and the file goes to ``error``), not the claim's."""
    try:
        return await asyncio.to_thread(functools.partial(decoder.header, path, count=count))
    except (DecodeError, OSError, ValueError):
        return FileHeader(None, None)


def _prepare_rows(items: list[Item] | ColumnChunk, rater: Rater, source: str,
                  position_of: Callable[[int], str], ids: list[int],
                  source_file_id: int) -> WriteBatch:
    if not isinstance(items, list):
        return prepare_columns(items, rater, source, position_of, ids, source_file_id)
    batch = prepare(items, rater, source, position_of)
    batch.rows = build_rows(batch, ids, source_file_id)
    return batch


async def _claimed(previous: _InFlight | None) -> None:
    """Wait until the batch before this one has taken its record keys; raise if it failed."""
    if previous is None:
        return
    claimed = asyncio.ensure_future(previous.claimed.wait())
    try:
        await asyncio.wait({claimed, previous.task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        claimed.cancel()
    if not previous.claimed.is_set():
        raise _PreviousFailed


async def _committed(previous: _InFlight | None) -> None:
    """Wait for the batch before this one to commit; raise if it did not."""
    if previous is None:
        return
    task = previous.task
    await asyncio.wait({task})
    if task.cancelled() or task.exception() is not None:
        raise _PreviousFailed


def _positions(name: str, start: int) -> Callable[[int], str]:
    return lambda index: f"{name}#{start + index}"


def _add(base: dict[str, int], extra: dict[str, int]) -> dict[str, int]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = out.get(key, 0) + value
    return out


def _outcome(claim: usage_repo.FileClaim, name: str, sha: str, *, replay: bool) -> FileOutcome:
    c = claim.counts
    return FileOutcome(
        source_file_id=claim.source_file_id, name=name, sha256=sha,
        sequence_no=claim.sequence_no, replay=replay,
        counts=Counts(in_=c.get("in", 0), charged=c.get("charged", 0),
                      suspense=c.get("suspense", 0), duplicates=c.get("duplicates", 0),
                      filtered=c.get("filtered", 0), pending=c.get("pending", 0)),
        totals={cur: format_outcome(v) for cur, v in sorted(claim.totals.items())})
