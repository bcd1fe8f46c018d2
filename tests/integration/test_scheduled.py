"""Clock work among several processes (``server.scheduled``), each process a pool of its own
on a real PostgreSQL: one run per interval, none while another holds the task, and a tick
whose runner died is run by the next process that looks."""

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from billing_oss.server import scheduled


@pytest.fixture
async def processes(database_url: str, pool: asyncpg.Pool) -> AsyncIterator[list[asyncpg.Pool]]:
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=2) for _ in range(3)]
    yield [p for p in pools if p is not None]
    for p in pools:
        if p is not None:
            await p.close()


async def test_one_run_per_interval_across_processes(processes: list[asyncpg.Pool]) -> None:
    task, interval = f"t-{uuid.uuid4().hex[:8]}", 0.5
    runs: list[float] = []
    running = 0

    async def action() -> None:
        nonlocal running
        running += 1
        assert running == 1, "two processes ran the task at once"
        runs.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.05)
        running -= 1

    async def process(pool: asyncpg.Pool) -> int:
        ran = 0
        end = asyncio.get_running_loop().time() + 3.2
        while asyncio.get_running_loop().time() < end:
            ran += await scheduled.run_if_due(pool, task, interval, action)
            await asyncio.sleep(0.02)
        return ran

    counts = await asyncio.gather(*(process(p) for p in processes))
    # the first look starts the clock; then a run every interval (plus the looks' lag)
    assert 3 <= sum(counts) <= 6, counts
    assert len(runs) == sum(counts)
    assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(runs)), runs


async def test_a_tick_whose_runner_died_is_run_by_another(
        processes: list[asyncpg.Pool], pool: asyncpg.Pool) -> None:
    task = f"t-{uuid.uuid4().hex[:8]}"
    first, second = processes[0], processes[1]
    assert not await scheduled.run_if_due(first, task, 0.0, _nothing)  # starts the clock
    started, ran_by_second = asyncio.Event(), []

    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    dying = asyncio.create_task(scheduled.run_if_due(first, task, 0.0, hang))
    await asyncio.wait_for(started.wait(), 10)

    async def record() -> None:
        ran_by_second.append(True)

    assert not await scheduled.run_if_due(second, task, 0.0, record), "ran beside its holder"
    # the holder's session ends as a killed process's does: its claim goes with it
    holders = await pool.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid <> pg_backend_pid() AND classid = $1 AND database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())", 0x5449434B)
    for row in holders:
        await pool.execute("SELECT pg_terminate_backend($1)", row["pid"])
    deadline = asyncio.get_running_loop().time() + 10
    while not ran_by_second and asyncio.get_running_loop().time() < deadline:
        await scheduled.run_if_due(second, task, 0.0, record)
        await asyncio.sleep(0.05)
    assert ran_by_second == [True]
    dying.cancel()
    with pytest.raises((asyncio.CancelledError, asyncpg.PostgresError,
                        asyncpg.InterfaceError, OSError)):
        await dying


async def _nothing() -> None:
    return None


async def test_a_failed_run_reports_its_own_error_when_the_claim_died_with_it(
        processes: list[asyncpg.Pool], pool: asyncpg.Pool) -> None:
    task = f"t-{uuid.uuid4().hex[:8]}"
    runner = processes[0]
    assert not await scheduled.run_if_due(runner, task, 0.0, _nothing)  # starts the clock

    async def fails_with_the_database() -> None:
        for row in await pool.fetch(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid <> pg_backend_pid() AND classid = $1 AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                0x5449434B):
            await pool.execute("SELECT pg_terminate_backend($1)", row["pid"])
        raise ValueError("control failed: the database went away")

    with pytest.raises(ValueError, match="the database went away"):
        await scheduled.run_if_due(runner, task, 0.0, fails_with_the_database)
    ran: list[bool] = []

    async def record() -> None:
        ran.append(True)

    # unrecorded: the next process to look runs it
    assert await scheduled.run_if_due(processes[1], task, 0.0, record) and ran == [True]
