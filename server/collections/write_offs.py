"""Write-offs: an invoice's uncollectable balance taken off the receivables with a reason,
audited, with the bad-debt VAT relief it allows noted (the VAT share of the amount, by the
invoice's own tax-to-payable ratio, rounded down to the minor unit). A late payment named
against a written-off invoice reinstates what it pays (``reinstate``) before it is
allocated, so the write-off is reversed by the money that arrived.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.core.errors import Conflict, NotFound
from billing_oss.core.money import format_micros
from billing_oss.core.rounding import minor_step
from billing_oss.server.collections import repo
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection


async def write_off(pool: asyncpg.Pool, actor: str, invoice_id: int, on: dt.date,
                    reason: str) -> int:
    """Write off what the invoice still owes; the write-off's ledger entry id."""
    async with pool.acquire() as conn, conn.transaction():
        owner = await repo.invoice_account(conn, invoice_id)
        if owner is None:
            raise NotFound(f"no invoice {invoice_id}")
        account_id = owner["account_id"]
        await repo.lock(conn, account_id)
        item = await repo.invoice_item(conn, account_id, invoice_id)
        if item is None:
            raise NotFound(f"no finalised invoice {invoice_id}")
        open_micros = int(item["open_micros"])
        if open_micros <= 0:
            raise Conflict(f"invoice {invoice_id} owes nothing: nothing to write off")
        currency = item["currency"].strip()
        tax, payable = await repo.invoice_tax_share(conn, account_id, invoice_id)
        relief = open_micros * tax // payable if payable else 0
        relief -= relief % minor_step(currency)
        entry_id = await repo.insert_entry(
            conn, account_id=account_id, kind="write_off", currency=currency,
            amount_micros=-open_micros, entry_date=max(on, item["entry_date"]),
            applies_to=item["entry_id"], invoice_id=invoice_id,
            description=f"Write-off, invoice {invoice_id} (bad-debt VAT relief "
                        f"{format_micros(relief)} {currency})", reason=reason)
        await audit.record(conn, actor, "write_off.create",
                           f"ledger_entry:{account_id}/{entry_id}", None,
                           {"invoice_id": invoice_id, "amount_micros": open_micros,
                            "currency": currency, "vat_relief_micros": relief,
                            "on": on.isoformat(), "reason": reason})
    return entry_id


async def reinstate(conn: Connection, actor: str, account_id: str, invoice_id: int,
                    amount_micros: int, on: dt.date) -> int:
    """Reverse up to ``amount_micros`` of an invoice's write-off (a late payment arrived);
    returns how much was reinstated. Call under the account's collections lock."""
    item = await repo.invoice_item(conn, account_id, invoice_id)
    if item is None:
        return 0
    take = min(amount_micros, await repo.written_off(conn, account_id, item["entry_id"]))
    if take <= 0:
        return 0
    entry_id = await repo.insert_entry(
        conn, account_id=account_id, kind="write_off_reversal",
        currency=item["currency"].strip(), amount_micros=take,
        entry_date=max(on, item["entry_date"]), applies_to=item["entry_id"],
        invoice_id=invoice_id, description=f"Write-off reversed, invoice {invoice_id}",
        reason="late payment")
    await audit.record(conn, actor, "write_off.reverse", f"ledger_entry:{account_id}/{entry_id}",
                       None, {"invoice_id": invoice_id, "amount_micros": take,
                              "on": on.isoformat()})
    return take
