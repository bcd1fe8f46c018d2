"""Recording payments, allocating them, refunds and reversals (DESIGN.md §9).

Every change runs in one transaction under the account's collections lock, writes its
ledger entries and allocations, one audit row (``payment:<id>``) and its outbox event.

Rules, each a 422 naming the field when broken: a payment is positive, a whole number of the
currency's minor unit, in the account's currency; an allocation never exceeds what the
invoice still owes nor what the payment has left; a refund never exceeds what was paid less
what was refunded or reversed before. Allocating oldest first takes open invoices and fees
by due date; an overpayment stays unapplied, a credit balance that the account's next
invoices consume when they are finalised (``postings.post_invoices``).
"""

from __future__ import annotations

import datetime as dt
from typing import NoReturn

import asyncpg

from billing_oss.core.errors import Conflict, InvalidRequest, NotFound
from billing_oss.core.money import format_micros
from billing_oss.core.rounding import minor_digits, minor_step
from billing_oss.server.collections import dunning, repo, write_offs
from billing_oss.server.collections.model import AUTO, NewPayment, Payment, Target
from billing_oss.server.integrations import events, outbox
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection


async def record(pool: asyncpg.Pool, actor: str, new: NewPayment) -> tuple[Payment, bool]:
    """Record a payment and allocate it (named targets, else oldest first unless
    ``allocate`` is NONE). (payment, created): the same external id again is the payment
    already recorded."""
    async with pool.acquire() as conn, conn.transaction():
        return await record_in(conn, actor, new)


async def record_in(conn: Connection, actor: str, new: NewPayment) -> tuple[Payment, bool]:
    """``record`` inside the caller's transaction (bank-file imports record many)."""
    await repo.lock(conn, new.account_id)
    account = await repo.account(conn, new.account_id)
    if account is None:
        raise NotFound(f"no account {new.account_id}")
    currency = account["currency"].strip()
    _check_amount(new.amount_micros, currency, new.currency)
    if new.external_id is not None:
        found = await repo.payment_by_external(conn, new.account_id, new.source,
                                               new.external_id)
        if found is not None:
            if (found.amount_micros, found.received_on) != (new.amount_micros,
                                                             new.received_on):
                raise Conflict(f"{new.source} id {new.external_id} already names payment "
                               f"{found.payment_id} of account {new.account_id}, "
                               "recorded with another amount or date")
            return found, False
    payment_id = await repo.insert_payment(
        conn, account_id=new.account_id, amount_micros=new.amount_micros, currency=currency,
        received_on=new.received_on, method=new.method, reference=new.reference,
        source=new.source, external_id=new.external_id,
        description=f"Payment ({new.method}{', ' + new.reference if new.reference else ''})")
    if new.targets:
        await _allocate_named(conn, actor, new.account_id, payment_id, new.received_on,
                              new.amount_micros, new.targets)
    elif new.allocate == AUTO:
        await repo.settle(conn, new.account_id, currency, payment_id)
    stored = await _load(conn, payment_id)
    await dunning.resume_cleared(conn, [new.account_id], new.received_on,
                                 f"payment {payment_id}")
    await audit.record(conn, actor, "payment.record", f"payment:{payment_id}", None,
                       _audit_view(stored))
    await outbox.emit(conn, events.PaymentReceived(
        payment_id=payment_id, amount=format_micros(stored.amount_micros), currency=currency,
        received_on=stored.received_on.isoformat(), method=stored.method,
        allocated=format_micros(stored.allocated_micros)), account_id=new.account_id)
    return stored, True


async def allocate(pool: asyncpg.Pool, actor: str, payment_id: int,
                   targets: tuple[Target, ...]) -> Payment:
    """Allocate what a payment has left: to the named invoices, else oldest first."""
    async with pool.acquire() as conn, conn.transaction():
        before = await _locked(conn, payment_id)
        if targets:
            await _allocate_named(conn, actor, before.account_id, payment_id, before.received_on,
                                  before.unapplied_micros, targets)
        elif before.unapplied_micros > 0:
            await repo.settle(conn, before.account_id, before.currency, payment_id)
        after = await _load(conn, payment_id)
        await dunning.resume_cleared(conn, [after.account_id], dt.datetime.now(dt.UTC).date(),
                                     f"payment {payment_id}")
        if after.allocations != before.allocations:
            await audit.record(conn, actor, "payment.allocate", f"payment:{payment_id}",
                               _audit_view(before), _audit_view(after))
    return after


async def refund(pool: asyncpg.Pool, actor: str, payment_id: int, amount_micros: int,
                 on: dt.date, reason: str) -> Payment:
    """Pay money back: unapplied money first, then the newest allocations are released."""
    async with pool.acquire() as conn, conn.transaction():
        before = await _locked(conn, payment_id)
        _check_amount(amount_micros, before.currency, None)
        refundable = before.amount_micros - before.refunded_micros - before.reversed_micros
        if amount_micros > refundable:
            _invalid("amount", f"{format_micros(amount_micros)} is more than the "
                     f"{format_micros(refundable)} {before.currency} payment {payment_id} "
                     "has left to refund")
        _check_date(on, before)
        shortfall = amount_micros - max(before.unapplied_micros, 0)
        if shortfall > 0:
            await repo.release(conn, before.account_id, payment_id, shortfall, on)
        await repo.insert_entry(conn, account_id=before.account_id, kind="refund",
                                currency=before.currency, amount_micros=amount_micros,
                                entry_date=on, payment_id=payment_id,
                                description=f"Refund of payment {payment_id}", reason=reason)
        after = await _load(conn, payment_id)
        await audit.record(conn, actor, "payment.refund", f"payment:{payment_id}",
                           _audit_view(before), _audit_view(after))
        await outbox.emit(conn, events.PaymentRefunded(
            payment_id=payment_id, amount=format_micros(amount_micros),
            currency=before.currency, refunded_on=on.isoformat(), reason=reason),
            account_id=before.account_id)
    return after


async def reverse(pool: asyncpg.Pool, actor: str, payment_id: int, on: dt.date,
                  reason: str) -> Payment:
    """A payment that bounced or was returned: every allocation is released (its invoices
    are open again) and what was not refunded leaves the account's credit."""
    async with pool.acquire() as conn, conn.transaction():
        return await reverse_in(conn, actor, payment_id, on, reason)


async def reverse_in(conn: Connection, actor: str, payment_id: int, on: dt.date,
                     reason: str) -> Payment:
    before = await _locked(conn, payment_id)
    if before.reversed_micros:
        raise Conflict(f"payment {payment_id} is already reversed")
    remaining = before.amount_micros - before.refunded_micros
    if remaining <= 0:
        raise Conflict(f"payment {payment_id} was refunded in full: nothing to reverse")
    _check_date(on, before)
    await repo.release(conn, before.account_id, payment_id, None, on)
    await repo.insert_entry(conn, account_id=before.account_id, kind="reversal",
                            currency=before.currency, amount_micros=remaining, entry_date=on,
                            payment_id=payment_id,
                            description=f"Reversal of payment {payment_id}", reason=reason)
    # The invoices it paid are open again: other unapplied money of the account pays them.
    await repo.settle(conn, before.account_id, before.currency)
    after = await _load(conn, payment_id)
    await audit.record(conn, actor, "payment.reverse", f"payment:{payment_id}",
                       _audit_view(before), _audit_view(after))
    await outbox.emit(conn, events.PaymentReversed(
        payment_id=payment_id, amount=format_micros(remaining), currency=before.currency,
        reversed_on=on.isoformat(), reason=reason), account_id=before.account_id)
    return after


async def get(db: repo.Db, payment_id: int) -> Payment:
    found = await repo.payment(db, payment_id)
    if found is None:
        raise NotFound(f"no payment {payment_id}")
    return found


async def _allocate_named(conn: Connection, actor: str, account_id: str, payment_id: int,
                          received_on: dt.date, available: int,
                          targets: tuple[Target, ...]) -> None:
    released_on = await repo.last_release(conn, account_id, payment_id)
    for i, target in enumerate(targets):
        where = f"allocations[{i}]"
        # A late payment named against a written-off invoice reverses the write-off first.
        await write_offs.reinstate(conn, actor, account_id, target.invoice_id,
                                   target.amount_micros or available, received_on)
        item = await repo.invoice_item(conn, account_id, target.invoice_id)
        if item is None:
            _invalid(f"{where}.invoice_id", f"account {account_id} has no finalised invoice "
                     f"{target.invoice_id}")
        open_micros = int(item["open_micros"])
        amount = min(open_micros, available) if target.amount_micros is None \
            else target.amount_micros
        if target.amount_micros is not None:
            _check_amount(amount, item["currency"].strip(), None, f"{where}.amount")
        if amount > open_micros:
            _invalid(f"{where}.amount", f"{format_micros(amount)} is more than the "
                     f"{format_micros(open_micros)} invoice {target.invoice_id} still owes")
        if amount > available:
            _invalid(f"{where}.amount", f"{format_micros(amount)} is more than the "
                     f"{format_micros(available)} payment {payment_id} has left")
        if amount <= 0:
            _invalid(f"{where}.invoice_id", f"invoice {target.invoice_id} owes nothing"
                     if open_micros <= 0 else f"payment {payment_id} has nothing left")
        day = max(received_on, item["entry_date"], released_on or received_on,
                  item["released_on"] or received_on)
        await repo.allocate(conn, account_id, payment_id, item["entry_id"], amount, day)
        available -= amount


async def _locked(conn: Connection, payment_id: int) -> Payment:
    """The payment, after taking its account's collections lock."""
    found = await repo.payment(conn, payment_id, with_allocations=False)
    if found is None:
        raise NotFound(f"no payment {payment_id}")
    await repo.lock(conn, found.account_id)
    return await _load(conn, payment_id)


async def _load(conn: Connection, payment_id: int) -> Payment:
    found = await repo.payment(conn, payment_id)
    assert found is not None
    return found


def _check_amount(amount: int, currency: str, given_currency: str | None,
                  field: str = "amount") -> None:
    if given_currency is not None and given_currency != currency:
        _invalid("currency", f"account is billed in {currency}, not {given_currency}")
    if amount <= 0:
        _invalid(field, "must be more than zero")
    if amount % minor_step(currency):
        _invalid(field, f"{format_micros(amount)} is not a whole number of {currency} minor "
                 f"units ({minor_digits(currency)} decimals)")


def _check_date(on: dt.date, payment: Payment) -> None:
    if on < payment.received_on:
        _invalid("date", f"{on} is before payment {payment.payment_id} was received "
                 f"({payment.received_on})")


def _invalid(field: str, message: str) -> NoReturn:
    raise InvalidRequest(f"invalid body: $.{field}: {message}",
                         errors=[{"location": "body", "path": f"$.{field}", "message": message}])


def _audit_view(p: Payment) -> dict[str, object]:
    return {"account_id": p.account_id, "amount_micros": p.amount_micros,
            "currency": p.currency, "received_on": p.received_on.isoformat(),
            "method": p.method, "reference": p.reference, "source": p.source,
            "external_id": p.external_id, "refunded_micros": p.refunded_micros,
            "reversed_micros": p.reversed_micros,
            "allocations": [[a.entry_id, a.amount_micros] for a in p.allocations]}
