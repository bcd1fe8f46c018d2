"""Archiving a month on Citus: the finalised, paid month is exported, verified and its
partitions dropped (on the coordinator and their shards on the workers), as on one
PostgreSQL; the months still needed stay, and a restore brings the month back.

Three months of calls by two accounts, each month with the server's tick (partitions ahead,
pseudonymisation); January is billed and paid, February billed with one invoice unpaid and
an open suspense record of its own, March never billed. As of October with six months kept,
only January may go.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.collections import payments
from billing_oss.server.collections.model import NewPayment, Target
from billing_oss.server.retention import archive, housekeeping, months, repo
from tests.integration import billing_seed
from tests.integration.test_retention import CONFIG, calls

pytestmark = pytest.mark.citus

MONTHS = [dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)]
NOW = dt.datetime(2025, 10, 10, 12, tzinfo=dt.UTC)
TICKS = msgspec.structs.replace(CONFIG, archive_after_months=0)


async def pay_all(pool: asyncpg.Pool, period: str, on: dt.date, *, skip: str) -> None:
    """Pay the period's finalised invoices in full, but ``skip``'s."""
    rows = await pool.fetch("SELECT account_id, invoice_id, payable_micros FROM invoices"
                            " WHERE period = $1 AND status = 'finalised' AND payable_micros > 0"
                            " AND account_id <> $2", period, skip)
    for r in rows:
        await payments.record(pool, "test", NewPayment(
            account_id=r["account_id"], amount_micros=r["payable_micros"], received_on=on,
            method="transfer", external_id=f"invoice-{r['invoice_id']}",
            targets=(Target(r["invoice_id"]),)))


async def _shards_of(pool: asyncpg.Pool, month: dt.date) -> int:
    suffix = f"_{month:%Y_%m}"
    return int(await pool.fetchval(
        "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid::regclass::text"
        " IN ($1, $2)", "usage_records" + suffix, "charges" + suffix))


async def test_a_paid_month_is_archived_and_dropped_on_citus(
        citus_pool: asyncpg.Pool, citus_url: str, tmp_path: Path) -> None:
    # Sessions opened after the migration, as a server's are: they carry the database's
    # settings for Citus (nested execution for the collections helpers).
    async with asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                   server_settings={"timezone": "UTC"}) as pool:
        await archive_on_citus(pool, tmp_path)


async def archive_on_citus(pool: asyncpg.Pool, tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await billing_seed.base(conn)
        for account in ("A", "B"):
            await billing_seed.account(conn, account)
    for month in MONTHS:
        assert await housekeeping.run_if_due(pool, TICKS, months.start(month)
                                             + dt.timedelta(days=4), "test") is not None
        async with pool.acquire() as conn:
            await calls(conn, "A", month, 2)
            await calls(conn, "B", month, 3)
    for month, unpaid in ((MONTHS[0], ""), (MONTHS[1], "B")):
        now = months.start(months.add(month, 1)) + dt.timedelta(days=5)
        await bill_run(pool, months.label(month), billing_seed.SETTINGS, accounts=["A", "B"],
                       finalize=True, force=True, now=now, actor="test")
        await pay_all(pool, months.label(month), now.date(), skip=unpaid)
    await pool.execute(
        "INSERT INTO suspense (source, reason, record, created_at) VALUES"
        " ('msc1', 'NO_ZONE', $1, '2025-02-20')",
        json.dumps({"event_time": "2025-02-19T10:00:00Z", "calling": "33611"}))
    charged = await pool.fetchval(
        "SELECT sum(amount_micros) FROM charges WHERE event_time >= '2025-01-01Z'"
        " AND event_time < '2025-02-01Z'")
    assert await _shards_of(pool, MONTHS[0]) > 0
    # The tick of the day: the numbers of the months past 90 days become pseudonyms.
    assert await housekeeping.run_if_due(pool, TICKS, NOW, "test") is not None

    plans = {p.month: p for p in await archive.plan(pool, NOW, 6)}
    assert {m: p.action for m, p in plans.items() if m < "2025-04"} == {
        "2025-01": "archive", "2025-02": "hold", "2025-03": "hold"}
    assert any("suspense" in r for r in plans["2025-02"].reasons), plans["2025-02"].reasons

    (made,) = await archive.run(pool, tmp_path, NOW, 6, "test")
    assert made.month == "2025-01" and made.state == "dropped"
    left = {months.label(m) for _, _, m in await repo.partitions(pool)}
    assert "2025-01" not in left and {"2025-02", "2025-03"} <= left
    assert await _shards_of(pool, MONTHS[0]) == 0  # the workers' shards went with them
    assert await pool.fetchval("SELECT count(*) FROM charges WHERE event_time < '2025-02-01Z'"
                               ) == 0
    assert await pool.fetchval("SELECT count(*) FROM charges WHERE event_time >= '2025-02-01Z'"
                               " AND event_time < '2025-04-01Z'") == 10

    manifest_bytes = (tmp_path / "2025-01" / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == made.manifest_sha256
    for t in json.loads(manifest_bytes)["tables"]:
        data = (tmp_path / "2025-01" / t["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == t["sha256"]
        rows = list(csv.DictReader(io.StringIO(gzip.decompress(data).decode())))
        assert len(rows) == t["rows"] == 5
        if t["table"] == "charges":
            assert sum(int(r["amount_micros"]) for r in rows) == charged
        else:  # pseudonymised by the ticks before it left the database
            assert all(r["calling"].startswith("p:") for r in rows)
    assert await archive.verify(pool) == []

    (restored,) = await archive.restore(pool, MONTHS[0], "test")
    assert restored.state == "restored"
    assert await pool.fetchval("SELECT sum(amount_micros) FROM charges WHERE event_time"
                               " >= '2025-01-01Z' AND event_time < '2025-02-01Z'") == charged
