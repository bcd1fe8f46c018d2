"""The receivables ledger under random sequences of invoices, payments, allocations,
refunds, reversals, credit notes and write-offs (hypothesis), checked against the source
tables after every step:
a payment is never allocated beyond itself, every invoice's open amount is its total less
its credit notes and allocations and never below zero, aging as of every date of the
sequence totals the receivables the documents add up to, per currency, and the aging kept
by the ledger's writers (migration 1510) equals the ledger's as of today and every later
date of the sequence, per account and across accounts, before and after compactions; and
the journal's days kept by the same writers (migration 1543) are the export's builder's."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from billing_oss.core.errors import Conflict, InvalidRequest
from billing_oss.server.collections import aging, aging_kept_repo, payments, write_offs
from billing_oss.server.collections.model import AUTO, NONE, NewPayment, Target
from tests.integration import collections_seed as seed
from tests.integration.journal_days_check import assert_kept_days_are_the_builders

START = dt.date(2026, 1, 1)
CENT = 10_000

amounts = st.integers(min_value=1, max_value=50_000).map(lambda c: c * CENT)
step = st.one_of(
    st.tuples(st.just("invoice"), amounts),
    st.tuples(st.just("pay"), amounts, st.sampled_from([AUTO, NONE])),
    # an amount, what the invoice owes (None), or a cent either side of what it owes
    st.tuples(st.just("allocate"), st.integers(0, 9), st.integers(0, 9),
              st.one_of(st.none(), amounts, st.sampled_from([-CENT, 0, CENT]))),
    st.tuples(st.just("allocate_auto"), st.integers(0, 9)),
    st.tuples(st.just("refund"), st.integers(0, 9),
              st.one_of(amounts, st.sampled_from([-CENT, 0, CENT]))),
    st.tuples(st.just("reverse"), st.integers(0, 9)),
    st.tuples(st.just("credit"), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("write_off"), st.integers(0, 9)),
    st.tuples(st.just("compact")),
)
gaps = st.integers(0, 20)
# Some invoices and payments first, so the random steps after them have things to act on.
sequences = st.builds(
    lambda a, b, c: a + b + c,
    st.lists(st.tuples(gaps, st.tuples(st.just("invoice"), amounts)), min_size=1, max_size=3),
    st.lists(st.tuples(gaps, st.tuples(st.just("pay"), amounts, st.sampled_from([AUTO, NONE]))),
             min_size=1, max_size=3),
    st.lists(st.tuples(gaps, step), max_size=20))


@dataclass
class World:
    account: str
    invoices: list[tuple[int, int]] = field(default_factory=list)  # (id, payable)
    payments: list[int] = field(default_factory=list)
    days: list[dt.date] = field(default_factory=list)


async def apply(pool: asyncpg.Pool, w: World, day: dt.date, op: tuple[Any, ...]) -> None:
    kind = op[0]
    try:
        if kind == "invoice":
            async with pool.acquire() as conn:
                invoice_id = await seed.invoice(conn, w.account, op[1], day, due_days=10)
            w.invoices.append((invoice_id, op[1]))
        elif kind == "pay":
            p, _ = await payments.record(pool, "test", NewPayment(
                account_id=w.account, amount_micros=op[1], received_on=day,
                method="transfer", allocate=op[2]))
            w.payments.append(p.payment_id)
        elif kind == "allocate" and w.payments and w.invoices:
            pid = w.payments[op[1] % len(w.payments)]
            iid = w.invoices[op[2] % len(w.invoices)][0]
            amount = op[3]
            if amount is not None and amount <= CENT:  # relative to what the invoice owes
                amount += await pool.fetchval(
                    "SELECT collections_item_open(account_id, entry_id) FROM ledger_entries"
                    " WHERE kind = 'invoice' AND invoice_id = $1", iid)
            await payments.allocate(pool, "test", pid, (Target(iid, amount),))
        elif kind == "allocate_auto" and w.payments:
            await payments.allocate(pool, "test", w.payments[op[1] % len(w.payments)], ())
        elif kind == "refund" and w.payments:
            pid = w.payments[op[1] % len(w.payments)]
            amount = op[2]
            if amount <= CENT:  # relative to what is left to refund
                p = await payments.get(pool, pid)
                amount += p.amount_micros - p.refunded_micros - p.reversed_micros
            await payments.refund(pool, "test", pid, amount, day, "test")
        elif kind == "reverse" and w.payments:
            await payments.reverse(pool, "test", w.payments[op[1] % len(w.payments)],
                                   day, "AC04")
        elif kind == "credit" and w.invoices:
            iid, payable = w.invoices[op[1] % len(w.invoices)]
            async with pool.acquire() as conn, conn.transaction():
                credited = await conn.fetchval(
                    "SELECT coalesce(sum(total_micros), 0) FROM credit_notes"
                    " WHERE invoice_id = $1", iid)
                amount = (payable * op[2] // 100) // CENT * CENT
                amount = min(amount, payable - credited)
                if amount > 0:
                    await seed.credit_note(conn, w.account, iid, amount, day)
        elif kind == "write_off" and w.invoices:
            await write_offs.write_off(pool, "test", w.invoices[op[1] % len(w.invoices)][0],
                                       day, "uncollectable")
        elif kind == "compact":
            await aging_kept_repo.compact(pool)
    except (InvalidRequest, Conflict):
        pass  # refused input changes nothing; the checks below prove it


async def check(pool: asyncpg.Pool, w: World) -> None:
    a = w.account
    # Σ allocations of a payment ≤ the payment, and with refunds and reversals too.
    rows = await pool.fetch(
        "SELECT p.payment_id, p.amount_micros,"
        " coalesce((SELECT sum(x.amount_micros) FROM payment_allocations x"
        "   WHERE x.payment_id = p.payment_id), 0) AS allocated,"
        " (SELECT min(n) FROM (SELECT sum(x.amount_micros) AS n FROM payment_allocations x"
        "   WHERE x.payment_id = p.payment_id GROUP BY x.entry_id) s) AS least_net,"
        " coalesce((SELECT sum(e.amount_micros) FROM ledger_entries e"
        "   WHERE e.payment_id = p.payment_id AND e.kind IN ('refund', 'reversal')), 0) AS back"
        " FROM payments p WHERE p.account_id = $1", a)
    for r in rows:
        assert 0 <= r["allocated"] <= r["amount_micros"], dict(r)
        assert r["allocated"] + r["back"] <= r["amount_micros"], dict(r)
        assert r["least_net"] is None or r["least_net"] >= 0, dict(r)
    # Every invoice: open = total − credit notes − allocations ≥ 0, as the ledger says.
    rows = await pool.fetch(
        "SELECT i.invoice_id, i.payable_micros"
        " - coalesce((SELECT sum(c.total_micros) FROM credit_notes c"
        "   WHERE c.invoice_id = i.invoice_id), 0)"
        " - coalesce((SELECT sum(x.amount_micros) FROM payment_allocations x"
        "   JOIN ledger_entries e ON e.account_id = x.account_id AND e.entry_id = x.entry_id"
        "   WHERE e.kind = 'invoice' AND e.invoice_id = i.invoice_id), 0)"
        " + coalesce((SELECT sum(w.amount_micros) FROM ledger_entries w"
        "   WHERE w.kind IN ('write_off', 'write_off_reversal')"
        "   AND w.invoice_id = i.invoice_id), 0) AS open,"
        " (SELECT collections_item_open(e.account_id, e.entry_id) FROM ledger_entries e"
        "   WHERE e.kind = 'invoice' AND e.invoice_id = i.invoice_id) AS ledger_open"
        " FROM invoices i WHERE i.account_id = $1", a)
    for r in rows:
        assert r["open"] >= 0 and r["open"] == r["ledger_open"], dict(r)
    # Aging as of every date = receivables from the documents as of that date.
    for day in sorted(set(w.days)):
        found = await aging.aging(pool, day, account_id=a)
        row = found[0] if found else None
        expected = await pool.fetchval(
            "SELECT coalesce((SELECT sum(payable_micros) FROM invoices WHERE account_id = $1"
            "   AND status = 'finalised' AND issue_date <= $2), 0)"
            " - coalesce((SELECT sum(total_micros) FROM credit_notes WHERE account_id = $1"
            "   AND issue_date <= $2), 0)"
            " - coalesce((SELECT sum(amount_micros) FROM payments WHERE account_id = $1"
            "   AND received_on <= $2), 0)"
            " + coalesce((SELECT sum(amount_micros) FROM ledger_entries WHERE account_id = $1"
            "   AND kind IN ('refund', 'reversal', 'write_off', 'write_off_reversal')"
            "   AND entry_date <= $2), 0)", a, day)
        got = 0 if row is None else row.total_micros
        assert got == expected, (day, row, expected)
        if row is not None:
            assert all(b >= 0 for b in row.buckets) and row.credit_micros <= 0, (day, row)
    await seed.assert_kept_aging_is_the_ledgers(pool, account_id=a, days=w.days)
    await seed.assert_kept_aging_is_the_ledgers(pool, days=w.days[-1:])
    # The journal's days kept by the same writers: the account's deltas are its journal.
    await assert_kept_days_are_the_builders(pool, account_id=a)


@settings(max_examples=60)
@given(sequence=sequences)
async def test_ledger_invariants_hold_over_random_sequences(
        pool: asyncpg.Pool, sequence: list[tuple[int, tuple[Any, ...]]]) -> None:
    note(f"sequence: {sequence!r}")
    w = World(account=f"P{uuid.uuid4().hex[:10]}")
    async with pool.acquire() as conn:
        await seed.account(conn, w.account)
    day = START
    for gap, op in sequence:
        day += dt.timedelta(days=gap)
        w.days.append(day)
        await apply(pool, w, day, op)
        await check(pool, w)


async def test_the_check_catches_a_ledger_write_that_skips_the_kept_aging(
        pool: asyncpg.Pool) -> None:
    """An entry written to the ledger without its move makes the kept aging differ from the
    ledger's, which the check above sees; formed anew from the ledger, they agree again."""
    today = dt.datetime.now(dt.UTC).date()
    async with pool.acquire() as conn:
        await seed.account(conn, "SKIP1")
        await seed.invoice(conn, "SKIP1", 40 * CENT, today - dt.timedelta(days=30))
        await seed.assert_kept_aging_is_the_ledgers(conn, account_id="SKIP1")
        await conn.execute(
            "INSERT INTO ledger_entries (account_id, kind, currency, amount_micros, entry_date,"
            " due_date, description) VALUES ('SKIP1', 'fee', 'EUR', $1, $2, $2, 'fee')",
            5 * CENT, today)
        with pytest.raises(AssertionError):
            await seed.assert_kept_aging_is_the_ledgers(conn, account_id="SKIP1")
        await aging_kept_repo.rebuild(conn)
        await seed.assert_kept_aging_is_the_ledgers(conn)
