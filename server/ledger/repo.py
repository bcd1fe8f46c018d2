"""SQL of the ledger export: a period's ledger entries with what their documents say."""

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
ORDER BY e.entry_date, e.entry_id
"""


async def entries(db: Db, start: dt.date, end: dt.date, currency: str) -> list[asyncpg.Record]:
    """Ledger entries dated in ``[start, end]`` in ``currency``, in date then entry order."""
    rows: list[asyncpg.Record] = await db.fetch(_ENTRIES, start, end, currency)
    return rows


async def other_currencies(db: Db, start: dt.date, end: dt.date, currency: str) -> list[str]:
    """Currencies of the period's entries other than the books' (exported on their own)."""
    rows = await db.fetch("SELECT DISTINCT currency FROM ledger_entries WHERE entry_date"
                          " BETWEEN $1 AND $2 AND currency <> $3 ORDER BY 1", start, end,
                          currency)
    return [r["currency"].strip() for r in rows]
