"""Grace period of drafts, and the per-statement checks that keep line ↔ charge links sound."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.core.errors import Conflict
from billing_oss.server.billing import drafts_repo, issuing
from billing_oss.server.billing.bill_runs import bill_run
from tests.conftest import REPO
from tests.integration import billing_seed as seed

UTC = dt.UTC
GRACE = msgspec.structs.replace(seed.SETTINGS, grace_days=3)
JAN_END = dt.datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module", autouse=True)
async def seeded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.base(conn)


async def net(pool: asyncpg.Pool, invoice_id: int) -> int:
    async with pool.acquire() as conn:
        return (await issuing.load(conn, invoice_id)).content.totals.net_micros


async def test_draft_recomputed_within_grace_then_left_alone(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "G1")
        await seed.charge(conn, "G1", dt.datetime(2026, 1, 10, tzinfo=UTC), 1_000_000)
    first = await bill_run(pool, "2026-01", GRACE, accounts=["G1"],
                           now=JAN_END + dt.timedelta(days=1), actor="test")
    async with pool.acquire() as conn:
        await seed.charge(conn, "G1", dt.datetime(2026, 1, 31, 20, tzinfo=UTC), 2_000_000)
    last_minute = JAN_END + dt.timedelta(days=3, seconds=-1)
    again = await bill_run(pool, "2026-01", GRACE, accounts=["G1"], now=last_minute, actor="test")
    assert again.invoice_ids == first.invoice_ids and again.frozen == 0
    assert await net(pool, first.invoice_ids[0]) == 3_000_000

    async with pool.acquire() as conn:  # arrives once the grace period is over
        late = await seed.charge(conn, "G1", dt.datetime(2026, 1, 31, 22, tzinfo=UTC), 4_000_000)
    over = await bill_run(pool, "2026-01", GRACE, accounts=["G1"],
                          now=JAN_END + dt.timedelta(days=3), actor="test")
    assert over.frozen == 1 and over.invoices == 0 and over.charges == 0
    assert await net(pool, first.invoice_ids[0]) == 3_000_000  # untouched draft
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM invoice_line_charges "
                                   "WHERE account_id = 'G1' AND charge_id = $1", late) == 0
        await issuing.finalise(conn, first.invoice_ids, "G", dt.date(2026, 2, 4), 30,
                                 actor="test")
    feb = await bill_run(pool, "2026-02", GRACE, accounts=["G1"],
                         now=dt.datetime(2026, 3, 2, tzinfo=UTC), actor="test")
    assert feb.charges == 1 and await net(pool, feb.invoice_ids[0]) == 4_000_000


async def test_finalise_only_drafts_past_grace_unless_forced(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "G2")  # cycle ends 2026-02-01 00:00 UTC
        await seed.account(conn, "G3", billing_day=15)  # cycle ends 2026-02-15
        for a in ("G2", "G3"):
            await seed.charge(conn, a, dt.datetime(2026, 1, 20, tzinfo=UTC), 1_000_000)
    now = dt.datetime(2026, 2, 10, tzinfo=UTC)
    run = await bill_run(pool, "2026-01", GRACE, accounts=["G2", "G3"], now=now, actor="test")
    g2, g3 = run.invoice_ids
    async with pool.acquire() as conn:
        due = await issuing.drafts_due(conn, "2026-01", ["G2", "G3"], 3, now)
        assert (due.due, due.waiting) == ([g2], [g3])
        assert due.waiting_until == dt.datetime(2026, 2, 18, tzinfo=UTC)
        forced = await issuing.drafts_due(conn, "2026-01", ["G2", "G3"], 3, now, force=True)
        assert (forced.due, forced.waiting) == ([g2, g3], [])


async def cli_bill_run(database_url: str, *args: str) -> dict[str, object]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing_oss", "bill-run", *args, "--json", cwd=REPO,
        env={**os.environ, "BILLING_OSS_DATABASE_URL": database_url,
             "BILLING_OSS_BILLING_GRACE_DAYS": "3"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out)
    return result


async def test_cli_finalize_respects_grace_and_force(database_url: str,
                                                     pool: asyncpg.Pool) -> None:
    now = dt.datetime.now(UTC)
    current = f"{now:%Y-%m}"  # the current cycle: its grace period cannot be over
    async with pool.acquire() as conn:
        await seed.account(conn, "G5")
        await seed.charge(conn, "G5", now.replace(day=1, hour=0, minute=0), 1_500_000)
        await seed.charge(conn, "G5", dt.datetime(2026, 1, 5, tzinfo=UTC), 2_000_000)
    old = await cli_bill_run(database_url, "--period", "2026-01", "--account", "G5",
                             "--finalize")
    assert old["finalized"] == old["invoice_ids"] != []  # January: grace long over
    waiting = await cli_bill_run(database_url, "--period", current, "--account", "G5",
                                 "--finalize")
    assert waiting["finalized"] == [] and waiting["in_grace"] == waiting["invoice_ids"]
    forced = await cli_bill_run(database_url, "--period", current, "--account", "G5",
                                "--finalize", "--force")
    assert forced["finalized"] == waiting["invoice_ids"] and forced["in_grace"] == []


async def test_links_are_checked_by_the_bill_run(pool: asyncpg.Pool) -> None:
    """A charge is linked once (the key); a draft charges are still linked to is not
    deleted; the links of a finalised invoice are neither rewritten nor dropped."""
    async with pool.acquire() as conn:
        await seed.account(conn, "L1")
        first = await seed.charge(conn, "L1", dt.datetime(2026, 1, 3, tzinfo=UTC), 1_000_000)
        await seed.charge(conn, "L1", dt.datetime(2026, 1, 4, tzinfo=UTC), 1_000_000)
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["L1"], actor="test")
    invoice_id = run.invoice_ids[0]
    links = "SELECT count(*) FROM invoice_line_charges WHERE account_id = 'L1'"
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.UniqueViolationError):  # a charge is billed once
            await conn.execute("INSERT INTO invoice_line_charges (account_id, charge_id,"
                               " invoice_id, line_no) VALUES ('L1', $1, $2, 1)",
                               first, invoice_id)
        with pytest.raises(Conflict, match=f"invoice {invoice_id} still has charges linked"):
            async with conn.transaction():  # as if the recomputation had left it no line
                await drafts_repo.drop_emptied_drafts(conn, ["L1"], "2026-01", [])
        assert await conn.fetchval(links) == 2
        await issuing.finalise(conn, run.invoice_ids, "L", dt.date(2026, 2, 2), 30, actor="test")
        with pytest.raises(Conflict, match=f"invoice {invoice_id} is finalised"):
            await drafts_repo.refuse_unless_drafts(conn, [("L1", invoice_id)])
    again = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["L1"], actor="test")
    async with pool.acquire() as conn:
        assert again.invoice_ids == [] and await conn.fetchval(links) == 2
        assert await conn.fetchval("SELECT count(*) FROM invoices WHERE account_id = 'L1'") == 1


async def test_invoice_verb_shows_renders_and_exports(database_url: str, pool: asyncpg.Pool,
                                                      tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "V1")
        await seed.charge(conn, "V1", dt.datetime(2026, 1, 7, tzinfo=UTC), 2_345_678)
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["V1"], actor="test")
    env = {**os.environ, "BILLING_OSS_DATABASE_URL": database_url}
    outputs = {}
    for what in ("show", "pdf", "xml"):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "billing_oss", "invoice", what, str(run.invoice_ids[0]),
            "--output", str(tmp_path / what), cwd=REPO, env=env, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        outputs[what] = (tmp_path / what).read_bytes()
    shown = json.loads(outputs["show"])
    assert shown["totals"]["net"] == "2.35" and shown["status"] == "draft"
    assert outputs["pdf"].startswith(b"%PDF-") and b"factur-x.xml" in outputs["pdf"]
    assert b"<ram:DuePayableAmount>2.82</ram:DuePayableAmount>" in outputs["xml"]
    missing = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "billing_oss", "invoice", "show", "999999999", cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(missing.communicate(), timeout=60)
    assert missing.returncode == 1 and b"no invoice 999999999" in err
