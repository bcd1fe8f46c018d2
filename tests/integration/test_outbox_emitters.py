"""The events billing writes to the outbox with their cause: an invoice finalised, a credit
note issued (the ingested file's event: test_outbox_file_events)."""

from __future__ import annotations

import datetime as dt
import json

import asyncpg

from billing_oss.server.billing import issuing
from tests.integration.billing_seed import finalised_invoice


async def stored(pool: asyncpg.Pool, type_: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT stream, account_id, payload::text AS payload FROM"
                            " outbox_events WHERE type = $1 ORDER BY occurred_at, seq", type_)


async def test_finalised_invoices_and_issued_credit_notes_are_events_of_their_account(
        pool: asyncpg.Pool) -> None:
    invoice_id = await finalised_invoice(pool, "OBE1", fee=12_000_000)
    (row,) = await stored(pool, "invoice.finalised")
    finalised = json.loads(row["payload"])
    assert row["stream"] == "acct:OBE1" and finalised["invoice_id"] == invoice_id
    assert finalised["currency"] == "EUR" and finalised["number"].startswith("INV-")
    payable = await pool.fetchval("SELECT payable_micros FROM invoices WHERE invoice_id = $1",
                                  invoice_id)
    assert finalised["total"] == f"{payable / 1_000_000:.2f}"
    async with pool.acquire() as conn:
        note = await issuing.issue_credit_note(conn, invoice_id, "goodwill", None, "CN",
                                               dt.date(2026, 2, 10), actor="test")
    (row,) = await stored(pool, "credit_note.issued")
    issued = json.loads(row["payload"])
    assert row["account_id"] == "OBE1" and issued["credit_note_id"] == note.credit_note_id
    assert issued["total"] == finalised["total"] and issued["reason"] == "goodwill"
    assert issued["invoice_number"] == finalised["number"]
