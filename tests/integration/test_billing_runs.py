"""Bill runs against a real PostgreSQL: drafts, recomputation, late usage, finalisation."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.core.errors import Conflict
from billing_oss.server.billing import drafts_repo, issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.store import accounts_repo, subscriptions_repo
from tests.integration import billing_seed as seed

UTC = dt.UTC


@pytest.fixture(scope="module", autouse=True)
async def seeded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.base(conn)
        await seed.product(conn, "basic", 10_000_000)
        await seed.account(conn, "A1")
        await seed.subscribe(conn, "A1", "basic", dt.datetime(2025, 12, 1, tzinfo=UTC))
        for i in range(10):
            await seed.charge(conn, "A1", dt.datetime(2026, 1, 5, 10, i, tzinfo=UTC), 123_456)


async def test_draft_totals_and_links(pool: asyncpg.Pool) -> None:
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["A1"], actor="test")
    assert run.invoices == 1 and run.charges == 10
    async with pool.acquire() as conn:
        inv = await issuing.load(conn, run.invoice_ids[0])
        linked = await conn.fetchval("SELECT count(*) FROM invoice_line_charges "
                                     "WHERE invoice_id = $1", inv.invoice_id)
    t = inv.content.totals
    assert linked == 10
    # 10 × 0.123456 = 1.23456 → 1.23; fee 10.00; VAT 20 % of 11.23 = 2.246 → 2.25
    assert [ln.net_micros for ln in inv.content.lines] == [1_230_000, 10_000_000]
    assert t.net_micros == 11_230_000 and t.tax_micros == 2_250_000
    assert t.payable_micros == 13_480_000


async def test_dry_run_writes_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "DRY")
        await seed.charge(conn, "DRY", dt.datetime(2026, 1, 9, tzinfo=UTC), 5_000_000)
        before = await conn.fetchval("SELECT count(*) FROM invoice_line_charges")
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["DRY"], dry_run=True,
                         actor="test")
    assert run.bill_run_id is None and len(run.previews) == 1
    assert run.previews[0].totals.payable_micros == 6_000_000
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM invoice_line_charges") == before
        assert await conn.fetchval("SELECT count(*) FROM invoices WHERE account_id = 'DRY'") == 0


async def test_late_usage_recomputes_draft_then_goes_to_next_invoice(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "LATE")
        await seed.charge(conn, "LATE", dt.datetime(2026, 1, 10, tzinfo=UTC), 1_000_000)
    first = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["LATE"], actor="test")
    async with pool.acquire() as conn:  # late usage within the grace period
        await seed.charge(conn, "LATE", dt.datetime(2026, 1, 31, 23, tzinfo=UTC), 2_000_000)
    again = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["LATE"], actor="test")
    assert again.invoice_ids == first.invoice_ids  # same draft, recomputed in place
    async with pool.acquire() as conn:
        inv = await issuing.load(conn, first.invoice_ids[0])
        assert inv.content.totals.net_micros == 3_000_000
        await issuing.finalise(conn, first.invoice_ids, "T", dt.date(2026, 2, 3), 30,
                                 actor="test")
        # after finalisation: late January usage waits for the February invoice
        await seed.charge(conn, "LATE", dt.datetime(2026, 1, 20, tzinfo=UTC), 4_000_000)
    rerun = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["LATE"], actor="test")
    async with pool.acquire() as conn:
        frozen = await issuing.load(conn, first.invoice_ids[0])
        assert frozen.content.totals.net_micros == 3_000_000 and frozen.status == "finalised"
    assert rerun.invoice_ids != first.invoice_ids
    feb = await bill_run(pool, "2026-02", seed.SETTINGS, accounts=["LATE"], dry_run=True,
                         actor="test")
    assert rerun.charges == 1 and feb.charges == 0  # billed once, on the next document


# 10 minutes included, then 0.10 a minute up to 10 billable minutes, 0.05 beyond
TIERED = [{"service": "voice", "model": "graduated", "unit": "min", "unit_size": 60,
           "included": "10", "tiers": [{"up_to": "10", "price": "0.10"},
                                       {"up_to": None, "price": "0.05"}]}]


async def minutes(pool: asyncpg.Pool, account_id: str, day: int, n: int) -> None:
    async with pool.acquire() as conn:
        for i in range(n):
            await seed.charge(conn, account_id, dt.datetime(2026, 1, day, 10, i, tzinfo=UTC), 0)


async def usage_nets(pool: asyncpg.Pool, account_id: str) -> list[int]:
    rows = await pool.fetch("SELECT net_micros FROM invoices WHERE account_id = $1 "
                            "ORDER BY invoice_id", account_id)
    return [r["net_micros"] for r in rows]


async def test_late_usage_gets_the_cycle_allowance_and_tiers_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.product(conn, "tiered", 0, usage_pricing=TIERED)
        for acc in ("TIER-ON", "TIER-LATE"):
            await seed.account(conn, acc)
            await seed.subscribe(conn, acc, "tiered", dt.datetime(2025, 12, 1, tzinfo=UTC))
    await minutes(pool, "TIER-ON", 5, 15)
    await minutes(pool, "TIER-ON", 20, 15)
    await minutes(pool, "TIER-LATE", 5, 15)
    await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["TIER-ON", "TIER-LATE"],
                   finalize=True, force=True, actor="test")
    await minutes(pool, "TIER-LATE", 20, 15)  # late: the first invoice is final already
    await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["TIER-LATE"], finalize=True,
                   force=True, actor="test")
    # 30 minutes: 10 included, 10 × 0.10, 10 × 0.05 = 1.50, on time or in two invoices
    # (15 minutes: 0.50; then the cycle's 30 cost 1.00 more, not 15 minutes afresh: 0.50)
    assert await usage_nets(pool, "TIER-ON") == [1_500_000]
    assert await usage_nets(pool, "TIER-LATE") == [500_000, 1_000_000]
    async with pool.acquire() as conn:
        late_id = await conn.fetchval("SELECT max(invoice_id) FROM invoices "
                                      "WHERE account_id = 'TIER-LATE'")
        (line,) = [ln for ln in (await issuing.load(conn, late_id)).content.lines
                   if ln.subscription_id is not None]
    assert (line.quantity, line.detail["total_units"], line.detail["billed_before_units"]) == (
        15, "30", "5")


async def test_finalised_invoice_is_immutable(pool: asyncpg.Pool) -> None:
    """The invoice row refuses change in the database (its own row trigger); its lines,
    taxes and links are written only by the bill run, which refuses to write those of a
    finalised invoice and leaves them as they are when it runs the period again."""
    async with pool.acquire() as conn:
        await seed.account(conn, "IMM")
        await seed.charge(conn, "IMM", dt.datetime(2026, 1, 10, tzinfo=UTC), 1_000_000)
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["IMM"], actor="test")
    parts = ("SELECT (SELECT array_agg(net_micros ORDER BY line_no) FROM invoice_lines"
             " WHERE invoice_id = $1), (SELECT array_agg(tax_micros) FROM taxes"
             " WHERE invoice_id = $1), (SELECT array_agg(charge_id ORDER BY charge_id)"
             " FROM invoice_line_charges WHERE invoice_id = $1)")
    async with pool.acquire() as conn:
        await issuing.finalise(conn, run.invoice_ids, "T", dt.date(2026, 2, 3), 30, actor="test")
        key = run.invoice_ids[0]
        for sql in ("UPDATE invoices SET tax_micros = tax_micros WHERE invoice_id = $1",
                    "DELETE FROM invoices WHERE invoice_id = $1"):
            with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="finalised"):
                await conn.execute(sql, key)
        with pytest.raises(Conflict, match=f"invoice {key} is finalised: its lines"):
            await drafts_repo.refuse_unless_drafts(conn, [("IMM", key)])
        before = tuple(await conn.fetchrow(parts, key))
        await seed.charge(conn, "IMM", dt.datetime(2026, 1, 20, tzinfo=UTC), 2_000_000)
    await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["IMM"], actor="test")
    async with pool.acquire() as conn:
        assert tuple(await conn.fetchrow(parts, key)) == before and before[2]


async def test_multi_currency_account_gets_one_invoice_per_currency(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "MC")
        await seed.charge(conn, "MC", dt.datetime(2026, 1, 3, tzinfo=UTC), 1_005_000)
        await seed.charge(conn, "MC", dt.datetime(2026, 1, 3, tzinfo=UTC), 150_500_000,
                          currency="JPY")
    run = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["MC"], actor="test")
    async with pool.acquire() as conn:
        invoices = {i.content.currency: i for i in
                    [await issuing.load(conn, n) for n in run.invoice_ids]}
    assert invoices["EUR"].content.totals.net_micros == 1_010_000  # 1.005 → 1.01 half-up
    assert invoices["JPY"].content.totals.net_micros == 151_000_000  # 150.5 → 151 (0 decimals)
    assert invoices["JPY"].content.totals.tax_micros == 30_000_000  # 20 % of 151 = 30.2 → 30


async def test_a_draft_left_with_nothing_to_bill_is_removed(pool: asyncpg.Pool) -> None:
    """The plan moves to another currency: the old currency's draft must not stay behind
    with its old totals (and no lines) to be finalised and billed beside the new one."""
    async with pool.acquire() as conn:
        await seed.product(conn, "plan-eur", 10_000_000)
        await seed.product(conn, "plan-usd", 11_000_000, currency="USD")
        await seed.account(conn, "CUR1")
        sub = await seed.subscribe(conn, "CUR1", "plan-eur", dt.datetime(2025, 12, 1, tzinfo=UTC))
    first = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["CUR1"], actor="test")
    (eur,) = first.invoice_ids
    await subscriptions_repo.update(pool, "test", sub, product="plan-usd", valid_to=None,
                                    set_valid_to=False)
    second = await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["CUR1"], actor="test")
    rows = await pool.fetch("SELECT invoice_id, currency, payable_micros FROM invoices "
                            "WHERE account_id = 'CUR1'")
    assert [(r["currency"], r["payable_micros"]) for r in rows] == [("USD", 13_200_000)]
    assert rows[0]["invoice_id"] == second.invoice_ids[0] != eur
    dropped = await pool.fetchval(
        "SELECT after->>'drafts_dropped' FROM audit_log WHERE action = 'bill_run.batch' "
        "ORDER BY seq DESC LIMIT 1")
    assert dropped == f"[{eur}]"


async def _day15_account_billed_for_january(pool: asyncpg.Pool, account_id: str) -> int:
    """An account on billing day 15 with a 28.00 plan, January (15 Jan → 15 Feb) finalised
    with a 1.00 call of 5 February. Returns that call's charge id."""
    async with pool.acquire() as conn:
        await seed.product(conn, "plan-28", 28_000_000)
        await seed.account(conn, account_id, billing_day=15)
        await seed.subscribe(conn, account_id, "plan-28", dt.datetime(2025, 6, 1, tzinfo=UTC))
        overlap = await seed.charge(conn, account_id, dt.datetime(2026, 2, 5, tzinfo=UTC),
                                    1_000_000)
    await bill_run(pool, "2026-01", seed.SETTINGS, accounts=[account_id], finalize=True,
                   force=True, actor="test")
    return overlap


async def _period(pool: asyncpg.Pool, invoice_id: int) -> tuple[dt.date, dt.date]:
    async with pool.acquire() as conn:
        c = (await issuing.load(conn, invoice_id)).content
    return c.period_start.date(), c.period_end.date()


async def test_billing_day_change_bills_a_transition_cycle_once(pool: asyncpg.Pool) -> None:
    """15 → 1 after January (15 Jan → 15 Feb) was finalised: February runs 15 Feb → 1 Mar,
    its fee is 14/28 of the plan, the call of 5 February stays on January's invoice; March
    is a normal cycle again. An account keeping day 15 is billed as before."""
    overlap = await _day15_account_billed_for_january(pool, "BDAY1")
    await _day15_account_billed_for_january(pool, "BDAY15")
    await accounts_repo.update(pool, "test", "BDAY1", {"billing_day": 1})
    async with pool.acquire() as conn:
        late = await seed.charge(conn, "BDAY1", dt.datetime(2026, 2, 20, tzinfo=UTC), 2_000_000)
    feb = await bill_run(pool, "2026-02", seed.SETTINGS, accounts=["BDAY1", "BDAY15"],
                         finalize=True, force=True, actor="test")
    async with pool.acquire() as conn:
        invoices = {i.content.account_id: i.content for i in
                    [await issuing.load(conn, n) for n in feb.invoice_ids]}
        links = {r["charge_id"]: r["n"] for r in await conn.fetch(
            "SELECT charge_id, count(*) AS n FROM invoice_line_charges "
            "WHERE account_id = 'BDAY1' GROUP BY charge_id")}
    moved = invoices["BDAY1"]
    assert (moved.period_start.date(), moved.period_end.date()) == (
        dt.date(2026, 2, 15), dt.date(2026, 3, 1))
    assert [(ln.kind, ln.description, ln.net_micros) for ln in moved.lines] == [
        ("usage", "Voice — national", 2_000_000),
        ("recurring", "Plan plan-28 (14/28 days)", 14_000_000)]
    assert links == {overlap: 1, late: 1}
    kept = invoices["BDAY15"]
    assert (kept.period_start.date(), kept.period_end.date()) == (
        dt.date(2026, 2, 15), dt.date(2026, 3, 15))
    assert [(ln.description, ln.net_micros) for ln in kept.lines] == [("Plan plan-28", 28_000_000)]
    mar = await bill_run(pool, "2026-03", seed.SETTINGS, accounts=["BDAY1"], actor="test")
    assert await _period(pool, mar.invoice_ids[0]) == (dt.date(2026, 3, 1), dt.date(2026, 4, 1))
    async with pool.acquire() as conn:
        march = (await issuing.load(conn, mar.invoice_ids[0])).content
    assert [(ln.description, ln.net_micros) for ln in march.lines] == [("Plan plan-28", 28_000_000)]


async def test_billing_day_moved_later_bills_the_days_between(pool: asyncpg.Pool) -> None:
    """1 → 15 after January (1 Jan → 1 Feb) was finalised: February runs 1 Feb → 15 Mar and
    bills 42 of the plan's 28 days; the fortnight between is not lost."""
    async with pool.acquire() as conn:
        await seed.product(conn, "plan-28", 28_000_000)
        await seed.account(conn, "BDAYL")
        await seed.subscribe(conn, "BDAYL", "plan-28", dt.datetime(2025, 6, 1, tzinfo=UTC))
    await bill_run(pool, "2026-01", seed.SETTINGS, accounts=["BDAYL"], finalize=True,
                   force=True, actor="test")
    await accounts_repo.update(pool, "test", "BDAYL", {"billing_day": 15})
    feb = await bill_run(pool, "2026-02", seed.SETTINGS, accounts=["BDAYL"], actor="test")
    assert await _period(pool, feb.invoice_ids[0]) == (dt.date(2026, 2, 1), dt.date(2026, 3, 15))
    async with pool.acquire() as conn:
        lines = (await issuing.load(conn, feb.invoice_ids[0])).content.lines
    assert [(ln.description, ln.net_micros) for ln in lines] == [
        ("Plan plan-28 (42/28 days)", 42_000_000)]


async def test_refreshed_draft_follows_a_billing_day_change(pool: asyncpg.Pool) -> None:
    await _day15_account_billed_for_january(pool, "BDAY2")
    first = await bill_run(pool, "2026-02", seed.SETTINGS, accounts=["BDAY2"], actor="test")
    assert await _period(pool, first.invoice_ids[0]) == (dt.date(2026, 2, 15),
                                                          dt.date(2026, 3, 15))
    await accounts_repo.update(pool, "test", "BDAY2", {"billing_day": 1})
    again = await bill_run(pool, "2026-02", seed.SETTINGS, accounts=["BDAY2"], actor="test")
    assert again.invoice_ids == first.invoice_ids  # the same draft, refreshed
    assert await _period(pool, first.invoice_ids[0]) == (dt.date(2026, 2, 15),
                                                          dt.date(2026, 3, 1))
    row = await pool.fetchrow("SELECT period_start, period_end, net_micros FROM invoices "
                              "WHERE invoice_id = $1", first.invoice_ids[0])
    assert row["period_end"] == dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert row["net_micros"] == 14_000_000
