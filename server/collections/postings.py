"""What issued documents write to the receivables ledger, in the transaction that issues them.

A finalised invoice enters the ledger for what it made payable, due on its due date, and an
account holding unapplied payment money has it allocated to the new items at once. An issued
credit note reduces its invoice's item; what was already paid on the invoice beyond what it
still asks becomes the payments' unapplied credit again.

The finaliser and the credit-note issuer call these (``server.billing.issuing``), never a
trigger: on Citus a trigger on a distributed table runs on a shard, where reading the
account's other tables needs their co-located shards by name (DESIGN.md §7). Called from the
coordinator, each statement here names its account and is routed to its shard.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from billing_oss.server.collections import repo
from billing_oss.server.store.pool import Connection


async def post_invoices(conn: Connection, finalised: Sequence[Any]) -> None:
    """Post invoices just finalised: rows with account_id, invoice_id, number_text, currency,
    payable_micros, issue_date, due_date. Entries go in invoice-id order; then each
    (account, currency) with unapplied payment money is settled under its account's lock,
    in (account, currency) order so that concurrent finalisers queue rather than deadlock."""
    payable = sorted((r for r in finalised if r["payable_micros"] > 0),
                     key=lambda r: r["invoice_id"])
    if not payable:
        return
    await repo.post_invoices(conn, [
        (r["account_id"], r["invoice_id"], r["number_text"], r["currency"],
         r["payable_micros"], r["issue_date"], r["due_date"]) for r in payable])
    posted = {(r["account_id"], r["currency"].strip()) for r in payable}
    credit = await repo.holding_credit(conn, sorted({account for account, _ in posted}))
    for account_id, currency in sorted(posted & credit):
        await repo.lock(conn, account_id)
        await repo.settle(conn, account_id, currency)


async def post_credit_note(conn: Connection, *, account_id: str, invoice_id: int,
                           credit_note_id: int, number_text: str, currency: str,
                           payable_micros: int, issue_date: dt.date) -> None:
    """Post a credit note just issued that refunds ``payable_micros`` (its total and its share
    of the rounding). A note refunding nothing, or one on an invoice that made nothing
    payable (no ledger item), writes nothing."""
    if payable_micros <= 0:
        return
    await repo.lock(conn, account_id)
    item = await repo.post_credit_note(conn, account_id, invoice_id, credit_note_id,
                                       number_text, currency, payable_micros, issue_date)
    if item is not None:
        await repo.release_excess(conn, account_id, item, issue_date)
