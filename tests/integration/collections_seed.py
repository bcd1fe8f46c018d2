"""Seeding helpers for the collections tests: accounts, finalised invoices and credit notes
written straight into their tables and posted to the ledger as the finaliser and the issuer
post them (``server.collections.postings``), so a test can build hundreds of documents in
milliseconds without a bill run."""

from __future__ import annotations

import datetime as dt
import itertools
import json

from billing_oss.server.collections import postings
from billing_oss.server.store.pool import Connection

_numbers = itertools.count(1)


async def account(conn: Connection, account_id: str, currency: str = "EUR",
                  **attrs: object) -> None:
    await conn.execute(
        "INSERT INTO accounts (account_id, name, currency, attrs) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING", account_id, f"Customer {account_id}", currency,
        json.dumps(attrs))


async def invoice(conn: Connection, account_id: str, payable_micros: int, issued: dt.date,
                  *, due_days: int = 14, currency: str = "EUR", tax_micros: int = 0) -> int:
    """A finalised invoice of ``payable_micros`` (``tax_micros`` of it VAT) issued on
    ``issued``; its id."""
    n = next(_numbers)
    async with conn.transaction():
        invoice_id: int = await conn.fetchval(
            "INSERT INTO invoices (account_id, period, period_start, period_end, currency,"
            " rounding_method, line_total_micros, allowance_micros, net_micros, tax_micros,"
            " total_micros, rounding_micros, payable_micros, seller, buyer)"
            " VALUES ($1, $2, now(), now(), $3, 'half-up', $4, 0, $4, $5, $4::bigint + $5::bigint,"
            " 0, $4::bigint + $5::bigint,"
            " '{}', '{}') RETURNING invoice_id", account_id, f"t{n}", currency,
            payable_micros - tax_micros, tax_micros)
        finalised = await conn.fetch(
            "UPDATE invoices SET status = 'finalised', series = 'T', number = $2,"
            " number_text = 'T-' || lpad($2::bigint::text, 6, '0'), issue_date = $3,"
            " due_date = $4"
            " WHERE invoice_id = $1 RETURNING account_id, invoice_id, number_text, currency,"
            " payable_micros, issue_date, due_date", invoice_id, n, issued,
            issued + dt.timedelta(days=due_days))
        await postings.post_invoices(conn, finalised)
    return invoice_id


async def credit_note(conn: Connection, account_id: str, invoice_id: int, amount_micros: int,
                      issued: dt.date, currency: str = "EUR") -> int:
    n = next(_numbers)
    async with conn.transaction():
        credit_note_id: int = await conn.fetchval(
            "INSERT INTO credit_notes (account_id, invoice_id, series, number, number_text,"
            " reason, issue_date, currency, net_micros, tax_micros, total_micros, lines, taxes)"
            " VALUES ($1, $2, 'TC', $3, 'TC-' || $3::bigint, 'test', $4, $5, $6, 0, $6, '[]',"
            " '[]') RETURNING credit_note_id", account_id, invoice_id, n, issued, currency,
            amount_micros)
        await postings.post_credit_note(
            conn, account_id=account_id, invoice_id=invoice_id, credit_note_id=credit_note_id,
            number_text=f"TC-{n}", currency=currency, payable_micros=amount_micros,
            issue_date=issued)
    return credit_note_id
