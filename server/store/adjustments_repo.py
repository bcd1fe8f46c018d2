"""Adjustments: one-off credits (negative) or debits (positive) an operator books for an
account, billed as a line of the account's next invoice (the first cycle ending after the
booking). They are append-only: a wrong adjustment is corrected by an opposite one.

Rules: the amount is not zero and is exact in the currency's minor unit (an invoice line
cannot carry a fraction of a cent); the currency is the account's (an invoice is per
account and currency, and the account is billed in its own); a closed account, which no
bill run visits any more, takes none. An optional ``reference`` makes booking idempotent:
the same reference again for the account is the adjustment already booked.
"""

from __future__ import annotations

import datetime as dt

import asyncpg
import msgspec

from billing_oss.core.errors import Conflict, InvalidRequest, NotFound
from billing_oss.core.money import format_micros
from billing_oss.core.rounding import minor_digits, minor_step
from billing_oss.server.store import audit
from billing_oss.server.store.filters import Where
from billing_oss.server.store.pool import Connection


class Adjustment(msgspec.Struct, frozen=True, kw_only=True):
    account_id: str
    adjustment_id: int
    amount_micros: int
    currency: str
    description: str
    tax_class: str
    reference: str | None
    created_at: dt.datetime
    invoice_id: int | None  # the invoice that bills it, once a bill run has


class NewAdjustment(msgspec.Struct, frozen=True, kw_only=True):
    amount_micros: int
    description: str
    currency: str | None = None  # None: the account's
    tax_class: str = "standard"
    reference: str | None = None


_SELECT = (
    "SELECT j.account_id, j.adjustment_id, j.amount_micros, j.currency, j.description,"
    " j.tax_class, j.reference, j.created_at, (SELECT l.invoice_id FROM invoice_lines l"
    " WHERE l.account_id = j.account_id AND l.adjustment_id = j.adjustment_id) AS invoice_id"
    " FROM adjustments j"
)


async def find(pool: asyncpg.Pool, account_id: str, after: int | None,
               limit: int) -> list[Adjustment]:
    await _account(pool, account_id)
    w = Where().add("j.account_id = {}", account_id).add("j.adjustment_id > {}", after)
    rows = await pool.fetch(_SELECT + w.sql() + " ORDER BY j.adjustment_id"
                            + w.limit(limit + 1), *w.args)
    return [_adjustment(r) for r in rows]


async def add(pool: asyncpg.Pool, actor: str, account_id: str,
              new: NewAdjustment) -> tuple[Adjustment, bool]:
    """Book an adjustment, audited; (stored, created)."""
    async with pool.acquire() as conn, conn.transaction():
        account = await _account(conn, account_id, lock=True)
        currency = account["currency"].strip()
        if account["status"] == "closed":
            raise Conflict(f"account {account_id} is closed: no invoice would bill it")
        _check(new, currency)
        if new.reference is not None:
            row = await conn.fetchrow(_SELECT + " WHERE j.account_id = $1 AND j.reference = $2",
                                      account_id, new.reference)
            if row is not None:
                stored = _adjustment(row)
                if (stored.amount_micros, stored.currency, stored.description,
                        stored.tax_class) != (new.amount_micros, currency, new.description,
                                              new.tax_class):
                    raise Conflict(f"reference {new.reference} already names adjustment "
                                   f"{stored.adjustment_id} of account {account_id}, "
                                   "booked with other values")
                return stored, False
        new_id = await conn.fetchval(
            "INSERT INTO adjustments (account_id, amount_micros, currency, description,"
            " tax_class, reference) VALUES ($1, $2, $3, $4, $5, $6) RETURNING adjustment_id",
            account_id, new.amount_micros, currency, new.description, new.tax_class,
            new.reference)
        row = await conn.fetchrow(_SELECT + " WHERE j.account_id = $1 AND j.adjustment_id = $2",
                                  account_id, new_id)
        stored = _adjustment(row)
        await audit.record(conn, actor, "adjustment.create",
                           f"adjustment:{account_id}/{new_id}", None, stored)
    return stored, True


def _check(new: NewAdjustment, currency: str) -> None:
    if new.currency is not None and new.currency != currency:
        _invalid("currency", f"account is billed in {currency}, not {new.currency}")
    if new.amount_micros == 0:
        _invalid("amount", "must not be zero")
    if new.amount_micros % minor_step(currency):
        _invalid("amount", f"{format_micros(new.amount_micros)} is not a whole number of "
                 f"{currency} minor units ({minor_digits(currency)} decimals)")


def _invalid(field: str, message: str) -> None:
    raise InvalidRequest(f"invalid body: $.{field}: {message}",
                         errors=[{"location": "body", "path": f"$.{field}", "message": message}])


async def _account(conn: Connection | asyncpg.Pool, account_id: str,
                   lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT currency, status FROM accounts WHERE account_id = $1"
        + (" FOR UPDATE" if lock else ""), account_id)
    if row is None:
        raise NotFound(f"no account {account_id}")
    return row


def _adjustment(row: asyncpg.Record | None) -> Adjustment:
    assert row is not None
    return Adjustment(**{**dict(row), "currency": row["currency"].strip()})
