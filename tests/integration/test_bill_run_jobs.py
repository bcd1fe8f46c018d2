"""Bill runs as background jobs over HTTP: 202 + Location, state and counts while it runs,
a failure's error; a run whose process is killed mid-batch resumes at the next server start
after its last committed batch; a shutdown lets the batch in progress commit, or rolls it
back when it cannot finish in time — never half-written."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from billing_oss.server.store import audit
from tests.conftest import REPO, wait_until
from tests.integration import billing_seed as seed
from tests.integration.api_harness import Api, live_api

UTC = dt.UTC
ONE_PER_BATCH = {"billing.batch_size": 1}


async def accounts(pool: asyncpg.Pool, prefix: str, n: int, *, currency: str = "EUR",
                   ) -> list[str]:
    names = [f"{prefix}{i}" for i in range(n)]
    async with pool.acquire() as conn:
        await seed.base(conn)
        for i, name in enumerate(names):
            await seed.account(conn, name)
            for k in range(3):
                await seed.charge(conn, name, dt.datetime(2026, 1, 3 + k, tzinfo=UTC),
                                  (i + 1) * 1_000_000 + k, currency=currency)
    return names


async def finished(api: Api, run_id: int) -> dict[str, Any]:
    status, run = await api.call("GET", f"/v1/bill-runs/{run_id}", "viewer",
                                 params={"wait": "20"})
    assert status == 200 and run["state"] in ("done", "failed"), run
    return run  # type: ignore[no-any-return]


async def billed(pool: asyncpg.Pool, names: list[str]) -> dict[str, tuple[int, int]]:
    """Per account with a draft: (invoices, charges linked)."""
    rows = await pool.fetch(
        "SELECT i.account_id, count(DISTINCT i.invoice_id) AS invoices, count(l.charge_id) AS"
        " links FROM invoices i LEFT JOIN invoice_line_charges l USING (account_id, invoice_id)"
        " WHERE i.account_id = ANY($1) GROUP BY i.account_id", names)
    return {r["account_id"]: (r["invoices"], r["links"]) for r in rows}


async def batch_accounts(pool: asyncpg.Pool, run_id: int) -> list[str]:
    """The first account of each committed batch of a run, in audit order."""
    return [e.after["first_account"] for e in await audit.entries(pool, f"bill_run:{run_id}")
            if e.action == "bill_run.batch"]


async def test_a_run_is_a_job_with_state_and_counts(pool: asyncpg.Pool,
                                                     database_url: str) -> None:
    names = await accounts(pool, "JOB", 3)
    async with live_api(pool, database_url) as api:
        await a_run_over_http(api, pool, names)


async def a_run_over_http(api: Api, pool: asyncpg.Pool, names: list[str]) -> None:
    status, queued = await api.call("POST", "/v1/bill-runs", "operator",
                                    json={"period": "2026-01", "accounts": names})
    assert status == 202 and queued["state"] in ("queued", "running", "done"), queued
    assert queued["accounts"] == names and queued["requested_by"].startswith("key:")
    async with api.http.post(api.url + "/v1/bill-runs", headers=api.headers("operator"),
                             json={"period": "2026-01", "accounts": names[:1]}) as r:
        again = await r.json()
        assert r.status == 202 and r.headers["Location"] == f"/v1/bill-runs/{again['bill_run_id']}"
    run = await finished(api, queued["bill_run_id"])
    assert (await finished(api, again["bill_run_id"]))["state"] == "done"
    assert run["state"] == "done" and run["error"] is None
    assert run["progress"] == {"accounts_total": 3, "accounts_done": 3}
    assert (run["invoices"], run["charges"], len(run["invoice_ids"])) == (3, 9, 3)
    assert run["started_at"] and run["finished_at"] >= run["started_at"]
    assert await billed(pool, names) == dict.fromkeys(names, (1, 3))

    status, page = await api.call("GET", "/v1/bill-runs", "viewer",
                                  params={"state": "done", "period": "2026-01", "limit": "1"})
    assert status == 200 and page["next_cursor"] and "invoice_ids" not in page["items"][0]
    everything = [r for p in await api.pages("/v1/bill-runs", {"limit": 1}) for r in p]
    assert queued["bill_run_id"] in [r["bill_run_id"] for r in everything]
    status, none = await api.call("GET", "/v1/bill-runs", "viewer", params={"state": "queued",
                                                                            "period": "2999-01"})
    assert none == {"items": [], "next_cursor": None}
    status, problem = await api.call("GET", "/v1/bill-runs/999999", "viewer")
    assert status == 404 and problem["code"] == "NOT_FOUND"
    status, problem = await api.call("GET", f"/v1/bill-runs/{run['bill_run_id']}", "viewer",
                                     params={"wait": "21"})
    assert status == 422 and problem["errors"][0]["path"] == "wait"
    trail = [e.action for e in await audit.entries(pool, f"bill_run:{run['bill_run_id']}")]
    assert trail == ["bill_run.start", "bill_run.batch", "bill_run.done"]


async def test_a_failed_run_shows_its_error(pool: asyncpg.Pool, database_url: str) -> None:
    good = await accounts(pool, "FAILOK", 1)
    bad = await accounts(pool, "FAILZZ", 1, currency="ZZZ")  # no such ISO 4217 currency
    async with live_api(pool, database_url) as api:
        status, run = await api.call("POST", "/v1/bill-runs", "operator",
                                     json={"period": "2026-01", "accounts": good + bad})
        assert status == 202
        run = await finished(api, run["bill_run_id"])
    assert run["state"] == "failed" and "ZZZ" in run["error"], run
    assert run["invoices"] == 0 and await billed(pool, good + bad) == {}  # one batch: undone
    trail = [e.action for e in await audit.entries(pool, f"bill_run:{run['bill_run_id']}")]
    assert trail == ["bill_run.start", "bill_run.failed"]


async def lock_waiter(pool: asyncpg.Pool) -> int | None:
    """The pid of a session of this database waiting for a lock, if any."""
    pid: int | None = await pool.fetchval(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid() LIMIT 1")
    return pid


async def run_row(pool: asyncpg.Pool, run_id: int) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT state, accounts_done, resume_account FROM bill_runs"
                              " WHERE bill_run_id = $1", run_id)
    assert row is not None
    return row


@contextlib.asynccontextmanager
async def held(pool: asyncpg.Pool, sql: str, *args: object) -> AsyncIterator[None]:
    """Row locks taken by ``sql`` on a connection of its own, until the body ends."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql, *args)
        yield


async def hold(pool: asyncpg.Pool, sql: str, *args: object) -> contextlib.AsyncExitStack:
    """Row locks taken by ``sql`` on a connection of its own, until the stack is closed."""
    stack = contextlib.AsyncExitStack()
    await stack.enter_async_context(held(pool, sql, *args))
    return stack


async def account_lock(pool: asyncpg.Pool, account: str) -> contextlib.AsyncExitStack:
    """Held before a run starts: the run stops at ``account``'s batch, whose first statement
    locks the account, the batches before it committed."""
    return await hold(pool, "SELECT 1 FROM accounts WHERE account_id = $1 FOR UPDATE", account)


async def block_at_audit(pool: asyncpg.Pool, account: contextlib.AsyncExitStack,
                         ) -> tuple[int, contextlib.AsyncExitStack]:
    """Let the batch held by ``account`` write everything, then hold it at its last
    statement, its audit entry. The blocked session's pid, and the audit lock to close."""
    pid = await wait_until(lambda: lock_waiter(pool), within=30)
    assert pid, "the run never reached the locked account"
    audit_lock = await hold(pool, "LOCK TABLE audit_log IN SHARE MODE")
    await account.aclose()

    async def at_audit() -> bool:
        return bool(await pool.fetchval(
            "SELECT wait_event_type = 'Lock' AND query LIKE '%audit_log%'"
            " FROM pg_stat_activity WHERE pid = $1", pid))

    assert await wait_until(at_audit, within=30), "the batch never reached its audit entry"
    return pid, audit_lock


async def test_a_killed_run_resumes_at_the_next_start(pool: asyncpg.Pool,
                                                      database_url: str) -> None:
    names = await accounts(pool, "KILL", 4)
    locked = await account_lock(pool, names[2])
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing_oss", "bill-run", "--period", "2026-01",
        *[a for n in names for a in ("--account", n)], "--json", cwd=REPO,
        env={**os.environ, "BILLING_OSS_DATABASE_URL": database_url,
             "BILLING_OSS_BILLING_BATCH_SIZE": "1"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    pid, audit_lock = await block_at_audit(pool, locked)
    run_id = await pool.fetchval("SELECT max(bill_run_id) FROM bill_runs")
    proc.send_signal(signal.SIGKILL)  # the process dies inside the batch's transaction
    await proc.wait()
    await audit_lock.aclose()
    # Its session goes once PostgreSQL sees the client gone: the batch never committed.
    assert await wait_until(lambda: _gone(pool, pid), within=30)
    row = await run_row(pool, run_id)
    assert (row["state"], row["accounts_done"], row["resume_account"]) == (
        "running", 2, names[1])
    assert await billed(pool, names) == dict.fromkeys(names[:2], (1, 3))

    async with live_api(pool, database_url, overrides=ONE_PER_BATCH) as api:  # a server starts
        run = await finished(api, run_id)
    assert run["state"] == "done" and run["progress"]["accounts_done"] == 4, run
    assert run["invoices"] == 4 and run["charges"] == 12
    assert await billed(pool, names) == dict.fromkeys(names, (1, 3))
    assert await batch_accounts(pool, run_id) == names  # each batch committed once
    trail = [e.action for e in await audit.entries(pool, f"bill_run:{run_id}")]
    assert trail.count("bill_run.resume") == 1 and trail[-1] == "bill_run.done"


async def _true(value: bool) -> bool:
    return value


async def _gone(pool: asyncpg.Pool, pid: int) -> bool:
    return not await pool.fetchval("SELECT true FROM pg_stat_activity WHERE pid = $1", pid)


@pytest.mark.parametrize("commits", [True, False], ids=["batch-commits", "batch-rolls-back"])
async def test_shutdown_never_leaves_a_batch_half_written(
        pool: asyncpg.Pool, database_url: str, commits: bool) -> None:
    names = await accounts(pool, f"STOP{int(commits)}", 4)
    server = contextlib.AsyncExitStack()
    api = await server.enter_async_context(live_api(
        pool, database_url, overrides=ONE_PER_BATCH, job_grace_s=1.0))
    locked = await account_lock(pool, names[2])
    status, run = await api.call("POST", "/v1/bill-runs", "operator",
                                 json={"period": "2026-01", "accounts": names})
    assert status == 202, run
    run_id = run["bill_run_id"]
    _, audit_lock = await block_at_audit(pool, locked)
    shutdown = asyncio.create_task(server.aclose())
    if commits:  # the batch can finish within the grace period: it commits, the run stops
        assert await wait_until(lambda: _true(api.bill_run_worker.stopping), within=10)
        await audit_lock.aclose()
        await asyncio.wait_for(shutdown, timeout=20)
    else:  # it cannot: the worker is cancelled and the batch rolls back
        await asyncio.wait_for(shutdown, timeout=20)
        await audit_lock.aclose()
    done = 3 if commits else 2
    row = await run_row(pool, run_id)
    assert (row["state"], row["accounts_done"], row["resume_account"]) == (
        "running", done, names[done - 1])
    assert await billed(pool, names) == dict.fromkeys(names[:done], (1, 3))
    assert await batch_accounts(pool, run_id) == names[:done]

    async with live_api(pool, database_url, overrides=ONE_PER_BATCH) as api:
        run = await finished(api, run_id)
    assert run["state"] == "done" and run["invoices"] == 4, run
    assert await billed(pool, names) == dict.fromkeys(names, (1, 3))
    assert await batch_accounts(pool, run_id) == names
