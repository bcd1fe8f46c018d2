"""`serve` keeps partitions ahead on its own, and two servers on one database share the
housekeeping task (``server.scheduled``): one run per interval between them."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools

import asyncpg
import pytest

from billing_oss.server import config
from billing_oss.server.composition import serve
from billing_oss.server.retention import months, repo
from tests.conftest import free_port


async def test_two_servers_share_the_housekeeping(pool: asyncpg.Pool, database_url: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="billing_oss.server.retention.housekeeping")
    stop = asyncio.Event()
    tasks = []
    for _ in range(2):
        cfg = config.load(env={}, overrides={
            "database.url": database_url, "http.port": free_port(),
            "retention.interval_s": 1.0, "retention.partitions_ahead_months": 2,
            "assurance.interval_s": 0})
        started = asyncio.Event()
        tasks.append(asyncio.create_task(serve(cfg, stop, started=started)))
        await asyncio.wait_for(started.wait(), 60)
    await asyncio.sleep(4)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)

    runs = sorted(dt.datetime.fromisoformat(r.fields["at"])  # type: ignore[attr-defined]
                  for r in caplog.records if r.getMessage() == "retention housekeeping")
    assert len(runs) >= 3, runs
    assert all((b - a).total_seconds() >= 0.9 for a, b in itertools.pairwise(runs)), runs
    now = months.first_of(dt.datetime.now(dt.UTC))
    made = {(parent, m) for parent, _, m in await repo.partitions(pool)}
    made |= {(parent, d.replace(day=1)) for parent, _, d in await repo.day_partitions(pool)}
    for n in range(3):
        assert {(t, months.add(now, n)) for t in repo.MONTHLY} <= made
    policy = await pool.fetchrow("SELECT * FROM retention_policy")
    assert (policy["pseudonymise_after_days"], policy["archive_after_months"]) == (0, 0)
