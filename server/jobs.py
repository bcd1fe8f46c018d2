"""Long work kept as rows of a job table (rerate jobs, bill runs) and run in the background.

A job is ``queued`` until a process claims it, ``running`` while one works on it, then
``done`` or ``failed``. The claim is a session advisory lock held on one connection for the
whole run: when a process dies, PostgreSQL drops the lock with its session and the job,
still ``running``, is claimed again by the next worker that looks — at the latest when a
server starts — and resumes. Jobs commit step by step, each step with its progress, so a
resumed job never redoes a committed step.

Shutdown: the worker is asked to stop; the job returns once the step in progress has
committed, leaving the job ``running`` for the next start to resume. A step still going
after the grace period is cancelled, and its transaction rolls back with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import asyncpg

from billing_oss.server.store import jobs_repo
from billing_oss.server.store.pool import Connection

log = logging.getLogger(__name__)

OPEN = ("queued", "running")
STOP_GRACE_S = 30.0  # how long a stopping worker lets the step in progress finish


class JobKind(Protocol):
    """One job table: where its rows are and how one of them runs."""

    table: str  # e.g. "rerate_jobs"; its key column is ``<name>_id``
    name: str  # "rerate_job", "bill_run": the key column's prefix, used in logs
    lock_space: int  # advisory lock namespace (first key) of this kind's claims

    async def run(self, holder: Connection, job_id: int, stop: asyncio.Event) -> None:
        """Run or resume the job; return early, leaving it ``running``, once ``stop`` is
        set. ``holder`` is the connection that holds the claim (usable for the work)."""

    async def fail(self, pool: asyncpg.Pool, job_id: int, error: str) -> None:
        """Record that the job failed with ``error``."""


async def try_claim(conn: Connection, kind: JobKind, job_id: int) -> bool:
    """Take the job's claim on ``conn`` (a session lock: it outlives any transaction)."""
    return await jobs_repo.try_claim(conn, kind.lock_space, job_id)


async def release(conn: Connection, kind: JobKind, job_id: int) -> None:
    await jobs_repo.release(conn, kind.lock_space, job_id)


async def run_claimed(pool: asyncpg.Pool, holder: Connection, kind: JobKind, job_id: int,
                      stop: asyncio.Event) -> None:
    """Run a job whose claim ``holder`` holds, if it is still open; a failure is recorded
    on the job, then raised."""
    if await jobs_repo.state(holder, kind.table, kind.name, job_id) not in OPEN:
        return
    try:
        await kind.run(holder, job_id, stop)
    except Exception as exc:
        await kind.fail(pool, job_id, f"{type(exc).__name__}: {exc}"[:2000])
        raise


async def run_next(pool: asyncpg.Pool, kind: JobKind,
                   stop: asyncio.Event | None = None) -> int | None:
    """Claim one open job (queued, or running and abandoned) and run it; its id, or None
    when no job is free."""
    stop = stop or asyncio.Event()
    async with pool.acquire() as holder:
        for job_id in await jobs_repo.open_ids(holder, kind.table, kind.name, OPEN):
            if await try_claim(holder, kind, job_id):
                break
        else:
            return None
        try:
            await run_claimed(pool, holder, kind, job_id, stop)
        except Exception:
            log.exception("job failed", extra={"fields": {f"{kind.name}_id": job_id}})
        finally:
            await release(holder, kind, job_id)
    return job_id


async def mark_failed(pool: asyncpg.Pool, kind: JobKind, job_id: int, error: str) -> None:
    await jobs_repo.mark_failed(pool, kind.table, kind.name, job_id, error)


class Worker:
    """Runs one kind's open jobs one at a time; woken by ``wake()`` or a poll."""

    def __init__(self, pool: asyncpg.Pool, kind: JobKind, poll_s: float = 5.0) -> None:
        self._pool, self._kind, self._poll_s = pool, kind, poll_s
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                while (not self._stop.is_set()
                       and await run_next(self._pool, self._kind, self._stop) is not None):
                    pass
            except Exception:  # the database went away, say: keep the worker alive
                log.exception("job worker: error; retrying",
                              extra={"fields": {"jobs": self._kind.table}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()


@contextlib.asynccontextmanager
async def running_worker(pool: asyncpg.Pool, kind: JobKind,
                         grace_s: float = STOP_GRACE_S) -> AsyncIterator[Worker]:
    """A worker task for the body's duration; on exit it is stopped, given ``grace_s`` to
    commit the step in progress, then cancelled."""
    worker = Worker(pool, kind)
    task = asyncio.create_task(worker.run(), name=f"{kind.name}-worker")
    try:
        yield worker
    finally:
        worker.stop()
        _, late = await asyncio.wait([task], timeout=grace_s)
        if late:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
