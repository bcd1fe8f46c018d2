"""Dunning on a test clock: 120 daily runs over 1,000 accounts that pay early, late, after
suspension, never, or dispute — every ladder step fires exactly once where due and never
where paid or disputed, a suspension is lifted in the transaction of the payment that
clears it, and the steps reach the outbox in order per account."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import asyncpg

from billing_oss.server.collections import dunning, payments, postings
from billing_oss.server.collections.model import NewPayment
from tests.integration import collections_seed as seed

DAY0 = dt.date(2026, 1, 1)
DUE = DAY0 + dt.timedelta(days=14)
N = 1000
AMOUNT = 30_000_000
# behaviour (account number % 6) -> (day it pays, relative to the due date, or None;
# the steps it must see)
BEHAVIOUR = {
    0: (-2, []),
    1: (5, ["reminder"]),
    2: (15, ["reminder", "fee"]),
    3: (25, ["reminder", "fee", "suspend"]),
    4: (None, ["reminder", "fee", "suspend", "terminate"]),
    5: (None, []),  # disputes its invoice two days after it falls due
}
LADDER_DAY = {"reminder": 3, "fee": 10, "suspend": 20, "terminate": 60}


async def test_a_120_day_simulation_over_1000_accounts(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO accounts (account_id) SELECT 'D' || lpad(g::text, 4,"
                           " '0') FROM generate_series(0, $1 - 1) g", N)
        await postings.post_invoices(conn, await conn.fetch(
            "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
            " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
            " total_micros, rounding_micros, payable_micros, seller, buyer, status, series,"
            " number, number_text, issue_date, due_date) SELECT 'D' || lpad(g::text, 4, '0'),"
            " '2025-12', now(), now(), 'EUR', 'half-up', $2, 0, $2, 0, $2, 0, $2, '{}', '{}',"
            " 'finalised', 'D', g + 1, 'D-' || lpad((g + 1)::text, 6, '0'), $3, $4"
            " FROM generate_series(0, $1 - 1) g"
            " RETURNING account_id, invoice_id, number_text, currency, payable_micros,"
            " issue_date, due_date", N, AMOUNT, DAY0, DUE))
    accounts = [f"D{i:04d}" for i in range(N)]
    invoice_of = {r["account_id"]: r["invoice_id"] for r in await pool.fetch(
        "SELECT account_id, invoice_id FROM invoices WHERE account_id LIKE 'D%'")}
    pays_on: dict[dt.date, list[str]] = defaultdict(list)
    for i, a in enumerate(accounts):
        offset = BEHAVIOUR[i % 6][0]
        if offset is not None:
            pays_on[DUE + dt.timedelta(days=offset)].append(a)
    for day_no in range(121):
        today = DAY0 + dt.timedelta(days=day_no)
        for a in pays_on.get(today, []):
            await payments.record(pool, "sim", NewPayment(
                account_id=a, amount_micros=AMOUNT, received_on=today, method="transfer"))
        if today == DUE + dt.timedelta(days=2):
            async with pool.acquire() as conn:
                for i in range(5, N, 6):
                    await dunning.open_dispute(conn, "sim", invoice_of[accounts[i]],
                                               "customer disputes the roaming charges", today)
        async with pool.acquire() as conn:
            await dunning.run(conn, "sim", today)

    steps = defaultdict(list)
    for r in await pool.fetch("SELECT account_id, action, run_on, days_past_due, invoice_id"
                              " FROM dunning_events ORDER BY account_id, step_no"):
        steps[r["account_id"]].append(r)
        assert r["run_on"] == DUE + dt.timedelta(days=LADDER_DAY[r["action"]]), dict(r)
        assert r["invoice_id"] == invoice_of[r["account_id"]]
    for i, a in enumerate(accounts):
        assert [s["action"] for s in steps[a]] == BEHAVIOUR[i % 6][1], (a, steps[a])

    suspensions = {r["account_id"]: r for r in await pool.fetch(
        "SELECT * FROM dunning_suspensions")}
    for i, a in enumerate(accounts):
        kind = i % 6
        if kind == 3:  # lifted the day it paid, by that payment
            assert suspensions[a]["lifted_on"] == DUE + dt.timedelta(days=25)
            assert suspensions[a]["lifted_by"].startswith("payment ")
        elif kind == 4:
            assert suspensions[a]["lifted_on"] is None
        else:
            assert a not in suspensions
    fees = await pool.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'fee'")
    assert fees == sum(1 for i in range(N) if i % 6 in (2, 3, 4))

    events = defaultdict(list)
    for r in await pool.fetch("SELECT account_id, type, payload->>'action' AS action"
                              " FROM outbox_events WHERE type LIKE 'dunning.%'"
                              " OR type LIKE 'account.%' ORDER BY stream, seq"):
        events[r["account_id"]].append(r["action"] or r["type"])
    assert events[accounts[3]] == ["reminder", "fee", "suspend", "account.suspend",
                                   "account.resume"]
    assert events[accounts[4]] == ["reminder", "fee", "suspend", "account.suspend",
                                   "terminate", "account.terminate"]
    assert events[accounts[0]] == [] and events[accounts[5]] == []

    # A second run on the last day takes nothing again.
    async with pool.acquire() as conn:
        again = await dunning.run(conn, "sim", DAY0 + dt.timedelta(days=120))
    assert again.steps == 0 and again.suspended == [] and again.resumed == []
    # The fees, payments and their allocations kept the aging as the ledger has it.
    await seed.assert_kept_aging_is_the_ledgers(pool)
