"""`serve` keeps partitions ahead on its own, and two servers on one database share each
housekeeping tick: every tick is done by one of them, once."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from billing_oss.server import config
from billing_oss.server.composition import serve
from billing_oss.server.retention import months, repo
from tests.conftest import free_port


async def test_two_servers_do_each_tick_once(pool: asyncpg.Pool, database_url: str,
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

    ticks = [r.fields["tick"] for r in caplog.records  # type: ignore[attr-defined]
             if r.getMessage() == "retention tick"]
    assert len(ticks) >= 3 and len(ticks) == len(set(ticks)), ticks
    now = months.first_of(dt.datetime.now(dt.UTC))
    made = {(parent, m) for parent, _, m in await repo.partitions(pool)}
    for n in range(3):
        assert {(t, months.add(now, n)) for t in repo.MONTHLY} <= made
    policy = await pool.fetchrow("SELECT * FROM retention_policy")
    assert (policy["pseudonymise_after_days"], policy["archive_after_months"]) == (0, 0)
