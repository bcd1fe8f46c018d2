"""Running a simulation end to end: read, compare, store the result row.

``run(pool, ...)`` is what the CLI calls; ``Simulations`` is the job kind the HTTP API
queues (``server.jobs``): a request is a row, a background worker runs it and stores the
result on it. The read-only snapshot and the result row use different transactions: the
row is written only after the snapshot is released, and nothing else is written.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec

from billing_oss.server.billing.model import Settings
from billing_oss.server.simulation import engine, repo, report
from billing_oss.server.store.pool import Connection

LOCK_SPACE = 1100  # advisory lock namespace of simulation claims


def encode(result: dict[str, Any]) -> bytes:
    """The result as canonical JSON: the same data gives the same bytes."""
    return msgspec.json.encode(result, order="deterministic")


async def run(pool: asyncpg.Pool, request: engine.Request, settings: Settings, actor: str,
              progress: engine.ReadProgress | None = None,
              ) -> tuple[int, engine.Outcome, dict[str, Any]]:
    """Simulate, store the result row; (its id, the outcome, the result)."""
    simulation_id = await repo.create(pool, actor, msgspec.to_builtins(request), "running")
    try:
        async with pool.acquire() as conn:
            outcome = await engine.simulate(conn, request, settings, progress)
        result = report.build(outcome)
    except Exception as exc:
        await repo.fail(pool, simulation_id, f"{type(exc).__name__}: {exc}"[:2000])
        raise
    await repo.finish(pool, simulation_id, encode(result), report.run_info(outcome))
    return simulation_id, outcome, result


def progress_document(p: engine.Progress) -> dict[str, Any]:
    """What ``GET /v1/simulations/{id}`` and the console show of a running simulation."""
    return {"phase": p.phase, "percent": str(p.percent), "records_read": p.records_read,
            "records_expected": p.records_expected, "cycles_priced": p.cycles_priced,
            "cycles": p.cycles}


class ProgressWriter:
    """Keeps a running simulation's latest ``Progress`` and writes it to its row every
    ``every_s`` (from the pool: the simulation's own connection is in its read-only
    snapshot). ``seen`` is called from pricing's thread too: it only swaps a reference."""

    def __init__(self, pool: asyncpg.Pool, simulation_id: int, every_s: float) -> None:
        self._pool, self._id, self._every_s = pool, simulation_id, every_s
        self._latest: engine.Progress | None = None
        self._written: engine.Progress | None = None

    def seen(self, p: engine.Progress) -> None:
        self._latest = p

    async def flush(self) -> None:
        latest = self._latest
        if latest is not None and latest is not self._written:
            await repo.progress(self._pool, self._id, progress_document(latest))
            self._written = latest

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            await self.flush()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[ProgressWriter]:
        task = asyncio.create_task(self._loop(), name=f"simulation-{self._id}-progress")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Simulations:
    """Queued simulations, run one at a time by a ``jobs.Worker``; a running one's progress
    is written every ``progress_every_s``."""

    table = "simulations"
    name = "simulation"
    lock_space = LOCK_SPACE

    def __init__(self, pool: asyncpg.Pool, settings: Settings,
                 progress_every_s: float = 1.0) -> None:
        self._pool, self._settings = pool, settings
        self._every_s = progress_every_s

    async def run(self, holder: Connection, job_id: int, stop: asyncio.Event) -> None:
        stored = await repo.get(holder, job_id)
        request = msgspec.convert(stored.request, engine.Request)
        await repo.start(holder, job_id)
        async with ProgressWriter(self._pool, job_id, self._every_s).writing() as progress:
            outcome = await engine.simulate(holder, request, self._settings,
                                            stages=progress.seen)
            await progress.flush()
        result = report.build(outcome)
        await repo.finish(holder, job_id, encode(result), report.run_info(outcome))

    async def fail(self, pool: asyncpg.Pool, job_id: int, error: str) -> None:
        await repo.fail(pool, job_id, error)
