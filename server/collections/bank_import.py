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

import asyncio
import contextlib
import datetime as dt
import itertools
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
    payment_id: int | None = None


References = tuple[list[str], list[str]]  # (RF bodies, invoice numbers) of a credit


class _Batch(msgspec.Struct, kw_only=True):
    """A batch as read from the file: its transactions and what each credit's remittance
    names (None for the others)."""
    transactions: list[Transaction]
    references: list[References | None]


class _Found(msgspec.Struct, kw_only=True):
    """The invoices a batch's credits name, looked up before its transaction (by number
    and by RF body), and which numbers and bodies were looked up."""
    numbers: set[str]
    bodies: set[str]
    by_number: dict[str, asyncpg.Record]
    by_body: dict[str, asyncpg.Record]


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
    # A pipeline of three: the file is read a batch ahead in a thread of its own (always
    # the same one: the parser stays on its thread); the invoices the next batch names are
    # looked up on a second connection; and this batch is written, so that reading and
    # matching overlap the writing that bounds an import.
    loop = asyncio.get_running_loop()
    batches = _batches(transactions, batch_size)
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="camt-read")

    async def read_and_find() -> tuple[_Batch, _Found] | None:
        batch = await loop.run_in_executor(reader, next, batches, None)
        return None if batch is None else (batch, await _find_invoices(pool, batch))

    ahead = asyncio.create_task(read_and_find())
    try:
        while (current := await ahead) is not None:
            ahead = asyncio.create_task(read_and_find())
            async with pool.acquire() as conn, conn.transaction():
                await _import_batch(conn, actor, file_name, *current, day, result, totals,
                                    seen)
    finally:
        # A batch failed: what was read and looked up ahead is dropped.
        ahead.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ahead
        reader.shutdown(wait=False)
    result.amount_imported = {c: format_micros(m) for c, m in sorted(totals.items())}
    return result


def _batches(items: Iterable[Transaction], size: int) -> Iterator[_Batch]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield _Batch(transactions=chunk, references=[
            _references(t) if t.credit and t.problem is None else None for t in chunk])


async def _find_invoices(pool: asyncpg.Pool, batch: _Batch) -> _Found:
    """The invoices the batch's credits name, but for entries imported before (read without
    the statement's lock: the batch checks again under it, and looks up what is missing)."""
    keyed = [t for t in batch.transactions if t.key is not None]
    async with pool.acquire() as conn, conn.transaction():
        await repo.without_jit(conn)
        known = await repo.known_bank_entries(conn, [t.statement_account for t in keyed],
                                              [t.key for t in keyed if t.key is not None])
        wanted = [r for t, r in zip(batch.transactions, batch.references, strict=True)
                  if r is not None and (t.statement_account, t.key or "") not in known]
        return await _lookup(conn, {b for bs, _ in wanted for b in bs},
                             {n for _, ns in wanted for n in ns})


async def _lookup(conn: Connection, bodies: set[str], numbers: set[str]) -> _Found:
    rows = await repo.invoices_by_reference(conn, sorted(numbers), sorted(bodies)) \
        if bodies or numbers else []
    return _Found(numbers=numbers, bodies=bodies,
                  by_number={r["number_text"]: r for r in rows},
                  by_body={r["body"]: r for r in rows})


async def _import_batch(conn: Connection, actor: str, file_name: str, batch: _Batch,
                        found: _Found, day: dt.date, result: ImportResult,
                        totals: dict[str, int], seen: set[tuple[str, str]]) -> None:
    result.transactions += len(batch.transactions)
    await repo.without_jit(conn)
    keyed = [t for t in batch.transactions if t.key is not None]
    await repo.lock_statement_accounts(conn, [t.statement_account for t in keyed])
    known = await repo.known_bank_entries(conn, [t.statement_account for t in keyed],
                                          [t.key for t in keyed if t.key is not None])
    outcomes: list[_Outcome] = []
    wanted: list[References] = []
    for t, refs in zip(batch.transactions, batch.references, strict=True):
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
            wanted.append(refs or ([], []))
        elif t.return_reason is not None and t.end_to_end_id is not None:
            outcomes.append(_Outcome(tx=t, status="returned"))
        else:
            outcomes.append(_Outcome(tx=t, status="ignored", reason="a debit that is not the "
                                     "return of a payment (no RtrInf with an EndToEndId)"))
    await _match_credits(conn, [o for o in outcomes if o.status == "imported"], wanted,
                         found)
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


async def _match_credits(conn: Connection, credits: list[_Outcome],
                         wanted: list[References], found: _Found) -> None:
    bodies = {b for bs, _ in wanted for b in bs}
    numbers = {n for _, ns in wanted for n in ns}
    if not (bodies <= found.bodies and numbers <= found.numbers):
        # Named by entries the look-up ahead took for imported: asked now.
        more = await _lookup(conn, bodies - found.bodies, numbers - found.numbers)
        found.by_body.update(more.by_body)
        found.by_number.update(more.by_number)
    for o, (bodies_named, numbers_named) in zip(credits, wanted, strict=True):
        hits = [found.by_body.get(b) for b in bodies_named] + [
            found.by_number.get(n) for n in numbers_named]
        invoice = next((h for h in hits if h is not None), None)
        if invoice is None:
            named = [f"RF body {b}" for b in bodies_named] + numbers_named
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
            o.entry_id = invoice["entry_id"]


async def _record_credits(conn: Connection, actor: str, credits: list[_Outcome],
                          day: dt.date, totals: dict[str, int]) -> None:
    credits = [o for o in credits if o.status == "imported"]
    if not credits:
        return
    ids = await repo.payment_ids(conn, len(credits))
    items = await repo.open_amounts(conn, [str(o.account_id) for o in credits],
                                    [int(o.entry_id or 0) for o in credits])
    left = {entry_id: i.open_micros for entry_id, i in items.items()}
    allocations = []
    for o, payment_id in zip(credits, ids, strict=True):
        o.payment_id = payment_id
        entry_id = int(o.entry_id or 0)
        take = min(left[entry_id], o.tx.amount_micros)
        if take > 0:
            received = o.tx.booked_on or day
            allocations.append((str(o.account_id), o.payment_id, entry_id, take,
                                max(received, items[entry_id].since)))
            left[entry_id] -= take
        totals[o.tx.currency] = totals.get(o.tx.currency, 0) + o.tx.amount_micros
    await repo.insert_payments(conn, ids, [
        (str(o.account_id), o.tx.amount_micros, o.tx.currency, o.tx.booked_on or day,
         "transfer", o.tx.end_to_end_id, "camt", _external_id(o.tx)) for o in credits],
        allocations, items)
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
