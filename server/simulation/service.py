"""Running a simulation end to end: read, compare, store the result row.

``run(pool, ...)`` is what the CLI calls; ``Simulations`` is the job kind the HTTP API
queues (``server.jobs``): a request is a row, a background worker runs it and stores the
result on it. The read-only snapshot and the result row use different transactions: the
row is written only after the snapshot is released, and nothing else is written.
"""

from __future__ import annotations

import asyncio
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


class Simulations:
    """Queued simulations, run one at a time by a ``jobs.Worker``."""

    table = "simulations"
    name = "simulation"
    lock_space = LOCK_SPACE

    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool, self._settings = pool, settings

    async def run(self, holder: Connection, job_id: int, stop: asyncio.Event) -> None:
        stored = await repo.get(holder, job_id)
        request = msgspec.convert(stored.request, engine.Request)
        await repo.start(holder, job_id)
        outcome = await engine.simulate(holder, request, self._settings)
        result = report.build(outcome)
        await repo.finish(holder, job_id, encode(result), report.run_info(outcome))

    async def fail(self, pool: asyncpg.Pool, job_id: int, error: str) -> None:
        await repo.fail(pool, job_id, error)
