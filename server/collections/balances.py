"""An account's position from the ledger (DESIGN.md §9): its balance per currency, the sum of
every entry (+ owed, − credit), and the invoices it still owes, with what each owes now."""

from __future__ import annotations

import datetime as dt

import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.collections import repo


class OpenInvoice(msgspec.Struct, frozen=True, kw_only=True):
    invoice_id: int
    number: str
    issued_on: dt.date
    due_date: dt.date
    currency: str
    amount_micros: int
    open_micros: int


class Position(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    balances: dict[str, int]  # currency -> micro-units
    open_invoices: list[OpenInvoice]


async def position(db: repo.Db, account_id: str) -> Position:
    if await repo.account(db, account_id) is None:
        raise NotFound(f"no account {account_id}")
    balances = await repo.balance(db, dt.date.max, account_id)
    rows = await repo.open_invoices(db, account_id)
    return Position(account_id=account_id, balances=balances, open_invoices=[OpenInvoice(
        invoice_id=r["invoice_id"], number=r["number_text"], issued_on=r["entry_date"],
        due_date=r["due_date"], currency=r["currency"].strip(),
        amount_micros=r["amount_micros"], open_micros=int(r["open_micros"])) for r in rows])
