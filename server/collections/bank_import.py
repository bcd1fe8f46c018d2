"""Importing camt.053 / camt.054 bank files: credits become payments of the invoice their
remittance names, returns reverse the payment they undo, everything else is kept with the
reason for the operator (DESIGN.md §9).

Matching a credit: a valid ISO 11649 RF creditor reference (structured, or written in the
free text) whose body is an invoice number without separators, else an invoice number
written in the remittance text. The payment is allocated to that invoice (what it still
owes); the rest stays unapplied, a credit the account's next invoices consume.

Idempotent: each transaction is keyed by the bank's reference within the statement's
account; a key already imported is counted as a duplicate and nothing else happens. Work is
done in batches, one transaction each, set-based (a bank file of 100,000 entries takes a
few dozen statements per batch, not a few per entry): a batch commits whole or not at all,
and the outcome of every entry (payment, return, or the reason it was not imported) is
stored with it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import asyncpg
import msgspec

from billing_oss.core.money import format_micros
from billing_oss.core.rounding import minor_step
from billing_oss.server.collections import camt, creditor_reference, dunning, payments, repo
from billing_oss.server.collections.camt import Transaction
from billing_oss.server.integrations import events, outbox
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

BATCH = 2000
_RF_IN_TEXT = re.compile(r"\bRF\d{2}(?:\s?[A-Z0-9]{1,4}){1,6}\b", re.IGNORECASE)
_NUMBER_IN_TEXT = re.compile(r"\b[A-Z][A-Z0-9]*-\d{3,}\b")


class EntryProblem(msgspec.Struct, frozen=True, kw_only=True):
    entry_no: int
    key: str | None
    status: str  # unmatched, rejected, ignored
    reason: str


class ImportResult(msgspec.Struct, kw_only=True):
    file: str
    kind: str
    transactions: int = 0
    imported: int = 0  # credits recorded as payments
    returned: int = 0  # returns that reversed a payment
    unmatched: int = 0  # credits no invoice could be found for: kept for the operator
    rejected: int = 0  # unreadable or contradicting the account (currency)
    ignored: int = 0  # debits that are not returns of our payments
    duplicates: int = 0  # imported before: nothing changed
    amount_imported: dict[str, str] = {}  # currency -> total of the payments recorded
    problems: list[EntryProblem] = []


class _Outcome(msgspec.Struct, kw_only=True):
    tx: Transaction
    status: str
    reason: str | None = None
    account_id: str | None = None
    invoice_id: int | None = None
    entry_id: int | None = None
    entry_date: dt.date | None = None
    payment_id: int | None = None


async def import_file(pool: asyncpg.Pool, actor: str, source: str | Path | IO[bytes],
                      file_name: str, *, today: dt.date | None = None,
                      batch_size: int = BATCH) -> ImportResult:
    """Import a camt file (a path or a binary stream). ``DecodeError`` when the file is not
    XML or not camt.053/.054; otherwise every entry gets an outcome."""
    kind, transactions = camt.read(str(source) if isinstance(source, Path) else source)
    result = ImportResult(file=file_name, kind=kind)
    totals: dict[str, int] = {}
    seen: set[tuple[str, str]] = set()
    day = today or dt.datetime.now(dt.UTC).date()
    for batch in _chunks(transactions, batch_size):
        async with pool.acquire() as conn, conn.transaction():
            await _import_batch(conn, actor, file_name, batch, day, result, totals, seen)
    result.amount_imported = {c: format_micros(m) for c, m in sorted(totals.items())}
    return result


def _chunks(items: Iterable[Transaction], size: int) -> Iterator[list[Transaction]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


async def _import_batch(conn: Connection, actor: str, file_name: str,
                        batch: list[Transaction], day: dt.date, result: ImportResult,
                        totals: dict[str, int], seen: set[tuple[str, str]]) -> None:
    result.transactions += len(batch)
    await repo.without_jit(conn)
    keyed = [t for t in batch if t.key is not None]
    await repo.lock_statement_accounts(conn, [t.statement_account for t in keyed])
    known = await repo.known_bank_entries(conn, [t.statement_account for t in keyed],
                                          [t.key for t in keyed if t.key is not None])
    outcomes: list[_Outcome] = []
    for t in batch:
        ident = (t.statement_account, t.key or "")
        if t.key is not None and (ident in known or ident in seen):
            result.duplicates += 1
            continue
        if t.key is not None:
            seen.add(ident)
        if t.problem is not None:
            outcomes.append(_Outcome(tx=t, status="rejected", reason=t.problem))
        elif t.credit:
            outcomes.append(_Outcome(tx=t, status="imported"))
        elif t.return_reason is not None and t.end_to_end_id is not None:
            outcomes.append(_Outcome(tx=t, status="returned"))
        else:
            outcomes.append(_Outcome(tx=t, status="ignored", reason="a debit that is not the "
                                     "return of a payment (no RtrInf with an EndToEndId)"))
    await _match_credits(conn, [o for o in outcomes if o.status == "imported"])
    credits = [o for o in outcomes if o.status == "imported"]
    await repo.lock_accounts(conn, [str(o.account_id) for o in credits])
    await _record_credits(conn, actor, credits, day, totals)
    await dunning.resume_cleared(conn, sorted({str(o.account_id) for o in credits
                                               if o.status == "imported"}), day,
                                 f"bank file {file_name}")
    for o in outcomes:
        if o.status == "returned":
            await _apply_return(conn, actor, o, day)
    await repo.insert_bank_entries(conn, [
        (o.tx.statement_account, o.tx.key, file_name, o.tx.entry_no, o.status, o.reason,
         o.tx.credit, o.tx.amount_micros, o.tx.currency or "XXX", o.tx.booked_on,
         o.account_id, o.payment_id, o.invoice_id, o.tx.remittance[:2000])
        for o in outcomes if o.tx.key is not None])
    for o in outcomes:
        setattr(result, o.status, getattr(result, o.status) + 1)
        if o.reason is not None:
            result.problems.append(EntryProblem(entry_no=o.tx.entry_no, key=o.tx.key,
                                                status=o.status, reason=o.reason))


def _references(t: Transaction) -> tuple[list[str], list[str]]:
    """(RF bodies, invoice numbers) the transaction's remittance information names."""
    bodies, numbers = [], []
    for ref in (*t.creditor_refs, *_RF_IN_TEXT.findall(t.remittance)):
        body = creditor_reference.parse(ref)
        if body is not None:
            bodies.append(body)
        elif not ref.upper().startswith("RF"):
            numbers.append(ref.strip())
    numbers += _NUMBER_IN_TEXT.findall(t.remittance)
    return bodies, numbers


async def _match_credits(conn: Connection, credits: list[_Outcome]) -> None:
    wanted = [_references(o.tx) for o in credits]
    found = await repo.invoices_by_reference(
        conn, sorted({n for _, ns in wanted for n in ns}),
        sorted({b for bs, _ in wanted for b in bs}))
    by_number = {r["number_text"]: r for r in found}
    by_body = {r["body"]: r for r in found}
    for o, (bodies, numbers) in zip(credits, wanted, strict=True):
        hits = [by_body.get(b) for b in bodies] + [by_number.get(n) for n in numbers]
        invoice = next((h for h in hits if h is not None), None)
        if invoice is None:
            named = [f"RF body {b}" for b in bodies] + numbers
            o.status = "unmatched"
            o.reason = (f"RmtInf: {', '.join(named)} names no invoice" if named else
                        "RmtInf: no RF creditor reference or invoice number found")
            continue
        currency = invoice["account_currency"].strip()
        o.account_id, o.invoice_id = invoice["account_id"], invoice["invoice_id"]
        if invoice["entry_id"] is None:
            o.status, o.reason = "unmatched", (f"RmtInf: invoice {invoice['invoice_id']} is "
                                               "a draft, not yet payable")
        elif o.tx.currency != currency:
            o.status, o.reason = "rejected", (
                f"Amt/@Ccy: {o.tx.currency}, but account {o.account_id} (invoice "
                f"{invoice['number_text']}) is billed in {currency}")
        elif o.tx.amount_micros % minor_step(currency):
            o.status, o.reason = "rejected", (
                f"Amt: {format_micros(o.tx.amount_micros)} is not a whole number of "
                f"{currency} minor units")
        else:
            o.entry_id, o.entry_date = invoice["entry_id"], invoice["entry_date"]


async def _record_credits(conn: Connection, actor: str, credits: list[_Outcome],
                          day: dt.date, totals: dict[str, int]) -> None:
    credits = [o for o in credits if o.status == "imported"]
    if not credits:
        return
    ids = await repo.insert_payments(conn, [
        (str(o.account_id), o.tx.amount_micros, o.tx.currency, o.tx.booked_on or day,
         "transfer", o.tx.end_to_end_id, "camt", _external_id(o.tx)) for o in credits])
    left = await repo.open_amounts(conn, [str(o.account_id) for o in credits],
                                   [int(o.entry_id or 0) for o in credits])
    allocations = []
    for o in credits:
        o.payment_id = ids[_external_id(o.tx)]
        entry_id = int(o.entry_id or 0)
        take = min(left[entry_id], o.tx.amount_micros)
        if take > 0:
            received = o.tx.booked_on or day
            allocations.append((str(o.account_id), o.payment_id, entry_id, take,
                                max(received, o.entry_date or received)))
            left[entry_id] -= take
        totals[o.tx.currency] = totals.get(o.tx.currency, 0) + o.tx.amount_micros
    await repo.insert_allocations(conn, allocations)
    allocated = {a[1]: a[3] for a in allocations}
    await audit.record_many(conn, actor, "payment.record", [
        (f"payment:{o.payment_id}", None,
         {"account_id": o.account_id, "amount_micros": o.tx.amount_micros,
          "currency": o.tx.currency, "received_on": (o.tx.booked_on or day).isoformat(),
          "source": "camt", "external_id": _external_id(o.tx), "invoice_id": o.invoice_id,
          "allocated_micros": allocated.get(int(o.payment_id or 0), 0)})
        for o in credits])
    await outbox.emit_many(conn, [
        (events.PaymentReceived(
            payment_id=int(o.payment_id or 0), amount=format_micros(o.tx.amount_micros),
            currency=o.tx.currency, received_on=(o.tx.booked_on or day).isoformat(),
            method="transfer", allocated=format_micros(allocated.get(int(o.payment_id or 0),
                                                                     0))),
         str(o.account_id)) for o in credits])


async def _apply_return(conn: Connection, actor: str, o: _Outcome, day: dt.date) -> None:
    end_to_end = str(o.tx.end_to_end_id)
    payment_id = await repo.payment_by_reference(conn, end_to_end)
    if payment_id is None:
        o.status, o.reason = "unmatched", (f"RtrInf: return {o.tx.return_reason} of "
                                           f"EndToEndId {end_to_end}: no payment has it")
        return
    found = await payments.get(conn, payment_id)
    o.account_id, o.payment_id = found.account_id, payment_id
    if found.reversed_micros:
        o.status, o.reason = "ignored", f"payment {payment_id} is already reversed"
        return
    when = max(o.tx.booked_on or day, found.received_on)
    await payments.reverse_in(conn, actor, payment_id, when, str(o.tx.return_reason))


def _external_id(t: Transaction) -> str:
    return f"{t.statement_account}:{t.key}"


def as_dict(result: ImportResult) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(result)
    return out
