"""SQL of the ledger export: a period's ledger entries with what their documents say, whole
or a page at a time in (date, entry id) order after a cursor."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.server.collections.repo import Db

_ENTRIES = """
SELECT e.account_id, a.name AS account_name, e.entry_id, e.kind, e.currency, e.amount_micros,
       e.entry_date, e.invoice_id, e.credit_note_id, e.payment_id, e.description, e.reason,
       (e.created_at AT TIME ZONE 'UTC')::date AS booked_on,
       i.number_text AS invoice_number, i.issue_date AS invoice_date,
       i.net_micros AS invoice_net, i.tax_micros AS invoice_tax,
       i.payable_micros AS invoice_payable,
       c.number_text AS note_number, c.issue_date AS note_date, c.net_micros AS note_net,
       c.tax_micros AS note_tax,
       p.reference AS payment_reference, p.method AS payment_method,
       p.received_on AS payment_date
FROM ledger_entries e
JOIN accounts a ON a.account_id = e.account_id
LEFT JOIN invoices i ON i.account_id = e.account_id AND i.invoice_id = e.invoice_id
LEFT JOIN credit_notes c ON c.account_id = e.account_id AND c.credit_note_id = e.credit_note_id
LEFT JOIN payments p ON p.account_id = e.account_id AND p.payment_id = e.payment_id
WHERE e.entry_date BETWEEN $1 AND $2 AND e.currency = $3
"""
_ORDER = " ORDER BY e.entry_date, e.entry_id"
# The page after a cursor: ledger_entries_journal (migration 1520) walks the currency's
# entries in this order from the cursor on, so a page reads its own rows at any depth.
_PAGE = (_ENTRIES + " AND (e.entry_date, e.entry_id) > ($4, $5)" + _ORDER + " LIMIT $6")
_FIRST_PAGE = _ENTRIES + _ORDER + " LIMIT $4"


async def entries(db: Db, start: dt.date, end: dt.date, currency: str) -> list[asyncpg.Record]:
    """Ledger entries dated in ``[start, end]`` in ``currency``, in date then entry order."""
    rows: list[asyncpg.Record] = await db.fetch(_ENTRIES + _ORDER, start, end, currency)
    return rows


async def entries_after(db: Db, start: dt.date, end: dt.date, currency: str,
                        after: tuple[dt.date, int] | None, limit: int) -> list[asyncpg.Record]:
    """The first ``limit`` of ``entries`` after the entry ``after`` (its date and id)."""
    rows: list[asyncpg.Record]
    if after is None:
        rows = await db.fetch(_FIRST_PAGE, start, end, currency, limit)
    else:
        rows = await db.fetch(_PAGE, start, end, currency, *after, limit)
    return rows


async def other_currencies(db: Db, start: dt.date, end: dt.date, currency: str) -> list[str]:
    """Currencies of the period's entries other than the books' (exported on their own).

    A walk over the few currencies the ledger holds, one probe of ledger_entries_journal
    each, rather than a read of the period's entries (100,000 for a month of 100,000
    invoices) for the one or two that differ."""
    found: list[str] = []
    seen: str | None = ""
    while True:
        seen = await db.fetchval(
            "SELECT min(currency) FROM ledger_entries WHERE currency > $1", seen)
        if seen is None:
            return found
        if seen.strip() != currency and await db.fetchval(
                "SELECT EXISTS (SELECT 1 FROM ledger_entries WHERE currency = $1"
                " AND entry_date BETWEEN $2 AND $3)", seen, start, end):
            found.append(seen.strip())
