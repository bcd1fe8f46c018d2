"""Per-account API reads are router queries on Citus: one shard answers each.

The repository functions the admin API calls run on a connection that first asks EXPLAIN
of every statement, with the same arguments, on the cluster itself; each plan must name a
single task (``Task Count: 1``), i.e. Citus sent it to the one shard holding the account.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from billing_oss.server.collections import repo as collections
from billing_oss.server.store import traffic_repo
from billing_oss.server.store.citus import BY_ACCOUNT
from billing_oss.server.store.usage_repo import ensure_partitions
from tests.charge_seed import insert_charges

pytestmark = pytest.mark.citus


class Explaining:
    """Runs each statement for real after recording Citus's plan of it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.plans: list[tuple[str, str]] = []

    async def _explain(self, sql: str, args: tuple[Any, ...]) -> None:
        rows = await self.conn.fetch("EXPLAIN " + sql, *args)
        self.plans.append((sql, "\n".join(r[0] for r in rows)))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        await self._explain(sql, args)
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        await self._explain(sql, args)
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        await self._explain(sql, args)
        return await self.conn.fetchval(sql, *args)


async def test_traffic_tables_are_distributed_and_colocated(citus_pool: asyncpg.Pool) -> None:
    rows = await citus_pool.fetch(
        "SELECT logicalrelid::regclass::text AS name, colocationid,"
        " column_to_column_name(logicalrelid, partkey) AS key FROM pg_dist_partition"
        " WHERE partmethod = 'h'")
    by_name = {r["name"]: r for r in rows}
    assert set(BY_ACCOUNT) <= set(by_name)
    assert {by_name[t]["key"] for t in BY_ACCOUNT} == {"account_id"}
    assert len({by_name[t]["colocationid"] for t in BY_ACCOUNT}) == 1
    shards = await citus_pool.fetchval(
        "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'usage_records'"
        "::regclass")
    assert shards >= 2  # spread over the workers, not all on one node


async def test_per_account_reads_are_router_queries(citus_pool: asyncpg.Pool) -> None:
    march = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    async with citus_pool.acquire() as conn:
        await ensure_partitions(conn, [march.date()])
        await conn.execute("INSERT INTO accounts (account_id) VALUES ('A1'), ('A2')")
        await insert_charges(conn, ("account_id", "event_time", "usage_id", "kind",
                                    "amount_micros", "currency"),
                             [(account, march, 1, "charge", 1000, "EUR")
                              for account in ("A1", "A2")])
        db = Explaining(conn)
        period = traffic_repo.Period(account_id="A1", start=march,
                                     end=march + dt.timedelta(days=31))
        await traffic_repo.usage(db, period, kind=None, source=None,  # type: ignore[arg-type]
                                 after=None, limit=50)
        got = await traffic_repo.charges(db, period, kind=None,  # type: ignore[arg-type]
                                         rerate_job_id=None, after=None, limit=50)
        assert [c.account_id for c in got] == ["A1"]
        totals = await traffic_repo.totals(db, period)  # type: ignore[arg-type]
        assert totals[0].charged_micros == 1000
        await collections.payments(db, "A1", None, 50)  # type: ignore[arg-type]
        await collections.balance(db, march.date(), "A1")  # type: ignore[arg-type]
        await collections.statement(db, "A1", march.date(),  # type: ignore[arg-type]
                                    march.date() + dt.timedelta(days=30))
    assert len(db.plans) >= 6
    for sql, plan in db.plans:
        assert "Task Count: 1\n" in plan + "\n", f"not a router query:\n{sql}\n{plan}"
