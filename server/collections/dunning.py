"""Dunning (DESIGN.md §9): a ladder of steps per account class — e.g. day 3 a reminder,
day 10 a fee, day 20 suspend, day 60 terminate and hand over — taken for each overdue
invoice at most once, never for an invoice that is paid or disputed.

A run (``run``, daily or on demand, as of any date: the test clock) takes every step due,
in one transaction, set-based: the steps are rows of ``dunning_events`` (their primary key
makes a step once per invoice), fees are ledger items, and each step is an outbox event
(``dunning.step``, and ``account.suspend`` / ``account.terminate`` for provisioning).
A suspension is lifted (``account.resume``) as soon as the invoices that caused it owe
nothing — in the transaction of the payment that clears them (``resume_cleared``), and by
every run for whatever else cleared them (credit notes, write-offs, disputes).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import asyncpg
import msgspec

from billing_oss.core.errors import InvalidRequest, NotFound
from billing_oss.core.money import format_micros, parse_micros
from billing_oss.core.rounding import minor_step
from billing_oss.server.collections import repo
from billing_oss.server.integrations import events, outbox
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

Action = Literal["reminder", "fee", "suspend", "terminate"]


class Step(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    day: int  # days past due
    action: Action
    fee: str | None = None  # decimal string, the fee's amount (action fee only)


class RunResult(msgspec.Struct, kw_only=True):
    as_of: dt.date
    dry_run: bool
    steps: int = 0
    by_action: dict[str, int] = {}
    fees: dict[str, str] = {}  # currency -> total fees charged
    suspended: list[str] = []
    resumed: list[str] = []
    terminated: list[str] = []


def check_ladder(steps: list[Step]) -> list[Step]:
    """Days strictly increasing from 1; a fee step names a positive amount, others none."""
    def bad(i: int, field: str, message: str) -> InvalidRequest:
        return InvalidRequest(f"invalid body: $.steps[{i}].{field}: {message}", errors=[
            {"location": "body", "path": f"$.steps[{i}].{field}", "message": message}])
    last = 0
    for i, s in enumerate(steps):
        if s.day <= last:
            raise bad(i, "day", "days past due must increase, from 1")
        last = s.day
        if s.action == "fee":
            try:
                if s.fee is None or parse_micros(s.fee) <= 0:
                    raise ValueError
            except ValueError:
                raise bad(i, "fee", "a fee step names a positive decimal amount") from None
        elif s.fee is not None:
            raise bad(i, "fee", f"only a fee step has one, not {s.action}")
    return steps


async def put_ladder(conn: Connection, actor: str, klass: str, steps: list[Step]) -> None:
    check_ladder(steps)
    async with conn.transaction():
        encoded = msgspec.json.encode(steps).decode()
        before = await repo.put_ladder(conn, klass, encoded)
        await audit.record(conn, actor, "dunning.ladder", f"dunning_ladder:{klass}",
                           None if before is None else msgspec.json.decode(before),
                           msgspec.json.decode(encoded))


async def ladders(db: repo.Db) -> dict[str, list[Step]]:
    return {k: msgspec.json.decode(v, type=list[Step]) for k, v in (await repo.ladders(db))
            .items()}


async def run(conn: Connection, actor: str, as_of: dt.date, *, dry_run: bool = False,
              account_id: str | None = None) -> RunResult:
    """Take every step due as of ``as_of`` (one account's, or everyone's)."""
    result = RunResult(as_of=as_of, dry_run=dry_run)
    async with conn.transaction():
        await repo.lock_dunning(conn)
        if not dry_run:
            result.resumed = await resume_cleared(conn, None if account_id is None
                                                  else [account_id], as_of, "dunning run")
        due = await repo.due_steps(conn, as_of, account_id)
        result.steps = len(due)
        for r in due:
            result.by_action[r["action"]] = result.by_action.get(r["action"], 0) + 1
        fees = [r for r in due if r["action"] == "fee"]
        fee_totals: dict[str, int] = {}
        for r in fees:
            amount = _fee(r["fee"], r["currency"].strip())
            fee_totals[r["currency"].strip()] = fee_totals.get(r["currency"].strip(), 0) + amount
        result.fees = {c: format_micros(m) for c, m in sorted(fee_totals.items())}
        suspending = sorted({r["account_id"] for r in due if r["action"] == "suspend"})
        already = await repo.suspended(conn, suspending)
        result.suspended = [a for a in suspending if a not in already]
        result.terminated = sorted({r["account_id"] for r in due
                                    if r["action"] == "terminate"})
        if dry_run or not due:
            return result
        await _take(conn, actor, as_of, due, result)
    return result


async def _take(conn: Connection, actor: str, as_of: dt.date, due: list[asyncpg.Record],
                result: RunResult) -> None:
    rows: list[dict[str, Any]] = [dict(r) for r in due]
    fee_rows = [r for r in rows if r["action"] == "fee"]
    fee_ids = await repo.insert_fees(conn, [
        (r["account_id"], r["currency"].strip(), _fee(r["fee"], r["currency"].strip()), as_of,
         f"Reminder fee, invoice {r['invoice_id']}") for r in fee_rows])
    for r, fee_id in zip(fee_rows, fee_ids, strict=True):
        r["fee_entry_id"] = fee_id
    await repo.insert_dunning_events(conn, [
        (r["account_id"], r["entry_id"], r["step_no"], r["action"], r["invoice_id"], as_of,
         r["days"], r["open"], r.get("fee_entry_id")) for r in rows])
    await repo.suspend(conn, result.suspended, as_of)
    await audit.record_many(conn, actor, "dunning.fee", [
        (f"ledger_entry:{r['account_id']}/{r['fee_entry_id']}", None,
         {"account_id": r["account_id"], "invoice_id": r["invoice_id"], "kind": "fee",
          "amount_micros": _fee(r["fee"], r["currency"].strip()),
          "currency": r["currency"].strip(), "on": as_of.isoformat()}) for r in fee_rows])
    emitted: list[tuple[events.DomainEvent, str]] = [
        (events.DunningStep(invoice_id=r["invoice_id"], step=r["step_no"], action=r["action"],
                            days_past_due=r["days"], open=format_micros(r["open"]),
                            currency=r["currency"].strip(),
                            fee=format_micros(_fee(r["fee"], r["currency"].strip()))
                            if r["action"] == "fee" else None), r["account_id"])
        for r in rows]
    behind: dict[tuple[str, str], set[int]] = {}  # (account, action) -> its invoices
    for r in rows:
        if r["action"] in ("suspend", "terminate"):
            behind.setdefault((r["account_id"], r["action"]), set()).add(r["invoice_id"])
    for action, accounts, make in (
            ("suspend", result.suspended, events.AccountSuspend),
            ("terminate", result.terminated, events.AccountTerminate)):
        for account in accounts:
            invoices = sorted(behind[(account, action)])
            emitted.append((make(reason=f"dunning: overdue invoices {invoices}",
                                 invoice_ids=invoices), account))
    # per account, in the order the steps were taken
    emitted.sort(key=lambda e: e[1])
    await outbox.emit_many(conn, emitted)


async def resume_cleared(conn: Connection, accounts: list[str] | None, on: dt.date,
                         why: str) -> list[str]:
    """Lift the suspensions of those accounts (None: every suspended one) whose suspending
    invoices owe nothing now, with an ``account.resume`` event each."""
    if accounts is None:
        accounts = await repo.suspended_accounts(conn)
    candidates = sorted(await repo.suspended(conn, accounts))
    if not candidates:
        return []
    cleared = sorted(set(candidates) - await repo.still_owing_for_suspension(conn, candidates))
    if cleared:
        await repo.lift(conn, cleared, on, why)
        await outbox.emit_many(conn, [(events.AccountResume(reason=why), a) for a in cleared])
    return cleared


async def open_dispute(conn: Connection, actor: str, invoice_id: int, reason: str,
                       on: dt.date) -> int:
    """Pause dunning for one invoice (the account's other invoices are dunned as before)."""
    async with conn.transaction():
        owner = await repo.invoice_account(conn, invoice_id)
        item = None if owner is None else await repo.invoice_item(
            conn, owner["account_id"], invoice_id)
        if owner is None or item is None:
            raise NotFound(f"no finalised invoice {invoice_id}")
        await repo.lock(conn, owner["account_id"])
        dispute_id = await repo.open_dispute(conn, owner["account_id"], item["entry_id"],
                                             invoice_id, reason, on)
        if dispute_id is None:
            raise InvalidRequest(f"invalid body: $.invoice_id: invoice {invoice_id} is "
                                 "already disputed", errors=[{
                                     "location": "body", "path": "$.invoice_id",
                                     "message": "already disputed"}])
        await audit.record(conn, actor, "dispute.open", f"dispute:{dispute_id}", None,
                           {"invoice_id": invoice_id, "reason": reason, "on": on.isoformat()})
        await resume_cleared(conn, [owner["account_id"]], on, f"invoice {invoice_id} disputed")
    return dispute_id


async def close_dispute(conn: Connection, actor: str, dispute_id: int, on: dt.date) -> None:
    async with conn.transaction():
        row = await repo.close_dispute(conn, dispute_id, on)
        if row is None:
            raise NotFound(f"no open dispute {dispute_id}")
        await audit.record(conn, actor, "dispute.close", f"dispute:{dispute_id}", None,
                           {"closed_on": on.isoformat()})


def _fee(text: str | None, currency: str) -> int:
    """A ladder's fee in micro-units, rounded down to the currency's minor unit."""
    amount = parse_micros(text or "0")
    return amount - amount % minor_step(currency)
