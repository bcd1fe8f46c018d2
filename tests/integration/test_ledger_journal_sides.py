"""``ledger_journal_sides`` (migration 1543), the SQL the journal's days are kept by, books
every ledger entry as the export's builder (``ledger.journal.build``) does, to the
micro-unit: hypothesis draws the entry's kind and amount, its invoice's net, tax and
payable, its credit note's net and tax (negative ones too: negative rounding, VAT relief
above the amount or below zero) in currencies of 0, 2, 3 and 4 minor digits, and each
draw's debit and credit are compared. And ``currency_minor_steps``, the minor units it
rounds the VAT relief to, are babel's for every currency babel knows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest
from babel.numbers import list_currencies
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from billing_oss.core.money import INT64_MAX, is_currency
from billing_oss.core.rounding import minor_step
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger.journal import build

KINDS = ("invoice", "credit_note", "payment", "refund", "reversal", "fee", "write_off",
         "write_off_reversal")
CURRENCIES = ("EUR", "JPY", "BHD", "CLF", "USD", "ISK")
DAY = dt.date(2026, 5, 4)
_SIDES = ("SELECT debit_micros, credit_micros FROM ledger_journal_sides($1, $2, $3, $4, $5,"
          " $6, $7, (SELECT step_micros FROM currency_minor_steps WHERE currency = $8))")

money = st.integers(min_value=-10**13, max_value=10**13)
small = st.integers(min_value=-10**7, max_value=10**7)  # near zero: relief, rounding edges
amounts = st.one_of(money, small, st.sampled_from([0, 1, -1, 10_000, -10_000]))
optional = st.one_of(st.none(), amounts)


def row(kind: str, amount: int, currency: str, net: int | None, tax: int | None,
        payable: int | None, note_net: int | None, note_tax: int | None) -> dict[str, Any]:
    """A ledger entry as ``ledger.repo`` reads it, with its documents."""
    return {
        "account_id": "A", "account_name": "Customer A", "entry_id": 1, "kind": kind,
        "currency": currency, "amount_micros": amount, "entry_date": DAY, "invoice_id": 1,
        "credit_note_id": 1, "payment_id": 1, "description": "", "reason": None,
        "booked_on": DAY, "invoice_number": "R-1", "invoice_date": DAY, "invoice_net": net,
        "invoice_tax": tax, "invoice_payable": payable, "note_number": "RC-1",
        "note_date": DAY, "note_net": note_net, "note_tax": note_tax,
        "payment_reference": None, "payment_method": "transfer", "payment_date": DAY}


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(KINDS), amount=amounts, currency=st.sampled_from(CURRENCIES),
       net=optional, tax=optional, payable=optional, note_net=optional, note_tax=optional)
@example(kind="invoice", amount=200_010_000, currency="EUR", net=200_000_000,
         tax=40_000_000, payable=239_990_000, note_net=None, note_tax=None)  # rounding < 0
@example(kind="write_off", amount=5_000_000, currency="EUR", net=10, tax=-3_000_000,
         payable=7_000_000, note_net=None, note_tax=None)  # relief < 0
@example(kind="write_off_reversal", amount=7, currency="JPY", net=1, tax=9_000_000,
         payable=1_000_000, note_net=None, note_tax=None)  # relief > amount
@example(kind="write_off", amount=1, currency="BHD", net=1, tax=-1, payable=-3,
         note_net=None, note_tax=None)  # floor of a negative quotient with a negative payable
async def test_the_sql_books_every_entry_as_the_builder(
        pool: asyncpg.Pool, kind: str, amount: int, currency: str, net: int | None,
        tax: int | None, payable: int | None, note_net: int | None,
        note_tax: int | None) -> None:
    entry = build([row(kind, amount, currency, net, tax, payable, note_net, note_tax)],
                  LedgerConfig(currency=currency), DAY, DAY).entries[0]
    note(f"builder: {entry.lines}")
    if max(entry.debit_micros, entry.credit_micros) > INT64_MAX:
        # documents no invoice has (a VAT relief of tax/payable × A past 64 bits): the
        # builder's Python ints go on, the SQL refuses what no bigint column could keep
        with pytest.raises(asyncpg.NumericValueOutOfRangeError):
            await pool.fetchrow(_SIDES, kind, amount, net, tax, payable, note_net, note_tax,
                                currency)
        return
    got = await pool.fetchrow(_SIDES, kind, amount, net, tax, payable, note_net, note_tax,
                              currency)
    assert (got["debit_micros"], got["credit_micros"]) == (entry.debit_micros,
                                                           entry.credit_micros)


async def test_the_minor_units_are_babels(pool: asyncpg.Pool) -> None:
    """The table is babel's data written out; when babel changes, this fails with the rows a
    new migration should write."""
    expected = {c: minor_step(c) for c in list_currencies() if is_currency(c)}
    kept = {r["currency"]: r["step_micros"] for r in await pool.fetch(
        "SELECT currency, step_micros FROM currency_minor_steps")}
    assert kept == expected, sorted(set(expected.items()) ^ set(kept.items()))


async def test_a_currency_without_minor_unit_books_no_sides(pool: asyncpg.Pool) -> None:
    """As ``core.money`` refuses an unknown currency, the SQL gives no debit or credit for
    one (the deltas' NOT NULL then refuses the posting) rather than a write-off booked short."""
    for kind in KINDS:
        got = await pool.fetchrow(_SIDES, kind, 1_200_000, 1_000_000, 200_000, 1_200_000,
                                  1_000_000, 200_000, "QQQ")
        assert (got["debit_micros"], got["credit_micros"]) == (None, None), kind
