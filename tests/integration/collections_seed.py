"""Seeding helpers for the collections tests: accounts, finalised invoices and credit notes
written straight into their tables and posted to the ledger as the finaliser and the issuer
post them (``server.collections.postings``), so a test can build hundreds of documents in
milliseconds without a bill run."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable

from billing_oss.server.collections import aging, aging_kept_repo, postings
from billing_oss.server.collections.model import AgingRow
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


async def assert_kept_aging_is_the_ledgers(db: aging_kept_repo.Db, *,
                                           account_id: str | None = None,
                                           days: Iterable[dt.date] = ()) -> None:
    """The kept aging (``aging.kept``) equals the ledger's (``aging.from_ledger``) as of today
    and each of ``days`` from today on, in total and per account (every account, or one),
    to the micro-unit, and a walk of its pages gives every account's line once."""
    today = dt.datetime.now(dt.UTC).date()
    for day in sorted({today, *(d for d in days if d >= today)}):
        assert await aging.kept(db, day, account_id=account_id) == \
            await aging.from_ledger(db, day, account_id=account_id), day
        ledger = await aging.from_ledger(db, day, per_account=True, account_id=account_id)
        assert await aging.kept(db, day, per_account=True, account_id=account_id) == ledger, day
        if account_id is None:
            walked: list[AgingRow] = []
            after: tuple[str, str] | None = None
            while page := await aging.kept_page(db, day, after=after, limit=7):
                walked += page
                after = (str(page[-1].account_id), page[-1].currency)
            # in the database's order of account ids (code points under C.UTF-8)
            assert len(set(walked)) == len(walked), day
            assert sorted(walked, key=lambda r: (r.account_id or "", r.currency)) == ledger, day
