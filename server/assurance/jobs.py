"""Assurance runs asked for over HTTP, run in the background (``server.jobs``).

``POST /v1/assurance/runs`` stores a job and answers at once; the worker claims it, runs
the controls with ``engine.run`` and stores the run under the job's id, counting the
controls finished as it goes. The CLI and the schedule call ``engine.run`` directly.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from billing_oss.server import assurance
from billing_oss.server.assurance import engine, repo
from billing_oss.server.config import AssuranceConfig, LedgerConfig
from billing_oss.server.store.pool import Connection

LOCK_SPACE = 1341  # advisory lock namespace of assurance job claims


class AssuranceJobs:
    """Queued assurance runs, one at a time by a ``jobs.Worker``."""

    table = "assurance_jobs"
    name = "assurance_job"
    lock_space = LOCK_SPACE

    def __init__(self, pool: asyncpg.Pool, config: AssuranceConfig,
                 ledger: LedgerConfig | None = None) -> None:
        self._pool, self._config, self._ledger = pool, config, ledger

    async def run(self, holder: Connection, job_id: int, stop: asyncio.Event) -> None:
        job = await repo.job(holder, job_id)
        assert job is not None
        if await repo.run_exists(holder, job_id):  # stored before a crash: only the mark
            await repo.finish_job(holder, job_id)
            return
        ctx = assurance.context(self._config, job.as_of or dt.datetime.now(dt.UTC),
                                self._ledger)
        await repo.start_job(holder, job_id, ctx.as_of)

        async def progress(done: int) -> None:
            await repo.job_progress(self._pool, job_id, done)

        # Controls only read: a run stopped half-way is simply run again on resume.
        await engine.run(self._pool, ctx, controls=job.controls, trigger="api",
                         actor=job.requested_by, run_id=job_id, progress=progress)
        await repo.finish_job(holder, job_id)

    async def fail(self, pool: asyncpg.Pool, job_id: int, error: str) -> None:
        await repo.fail_job(pool, job_id, error)
