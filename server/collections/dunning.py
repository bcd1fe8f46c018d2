"""Dunning (DESIGN.md §9): a ladder of steps per account class — e.g. day 3 a reminder,
day 10 a fee, day 20 suspend, day 60 terminate and hand over — taken for each overdue
invoice at most once, never for an invoice that is paid or disputed.

A run (``run``, daily or on demand, as of any date: the test clock) takes every step due,
in one transaction, set-based: one query stages the due steps in a temporary table, and
statements write them from there — the steps as rows of ``dunning_events`` (their primary
key makes a step once per invoice), fees as ledger items with their audit entries — so
only the events, rendered here, make a round trip. Each step is an outbox event
(``dunning.step``, and ``account.suspend`` / ``account.terminate`` for provisioning).
A suspension is lifted (``account.resume``) as soon as the invoices that caused it owe
nothing — in the transaction of the payment that clears them (``resume_cleared``), and by
every run for whatever else cleared them (credit notes, write-offs, disputes).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Literal

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
        await repo.tune_for_ledger_scans(conn)
        if not dry_run:
            result.resumed = await resume_cleared(conn, None if account_id is None
                                                  else [account_id], as_of, "dunning run")
        # The steps stay in the database (a temporary table) and are written from there;
        # only their events, rendered here, make the round trip.
        await repo.stage_due_steps(conn, as_of, account_id)
        await repo.price_due_fees(conn, [(r["fee"], r["currency"], _fee(r["fee"], r["currency"]))
                                         for r in await repo.due_fee_kinds(conn)])
        totals, result.suspended, result.terminated = await repo.due_summary(conn)
        fee_totals: dict[str, int] = {}
        for r in totals:
            result.steps += r["steps"]
            result.by_action[r["action"]] = result.by_action.get(r["action"], 0) + r["steps"]
            if r["action"] == "fee":
                fee_totals[r["currency"]] = fee_totals.get(r["currency"], 0) + r["fees"]
        result.fees = {c: format_micros(m) for c, m in sorted(fee_totals.items())}
        if dry_run or not result.steps:
            return result
        await repo.take_due_steps(conn, as_of, result.suspended)
        await audit.record_rows(conn, actor, "dunning.fee", repo.DUE_FEE_AUDIT, as_of)
        await outbox.emit_many(conn, await _events(conn, result))
    return result


async def _events(conn: Connection, result: RunResult) -> list[tuple[events.DomainEvent, str]]:
    """The staged steps' events, and each newly suspended or terminated account's, per
    account in the order the steps were taken."""
    money = functools.cache(format_micros)  # amounts repeat: render each once

    emitted: list[tuple[events.DomainEvent, str]] = []
    behind: dict[tuple[str, str], list[int]] = {}  # (account, action) -> its invoices
    for account, invoice, step_no, action, days, open_, currency, fee in (
            await repo.due_steps_for_events(conn)):
        emitted.append((events.DunningStep(
            invoice_id=invoice, step=step_no, action=action, days_past_due=days,
            open=money(open_), currency=currency, fee=None if fee is None else money(fee)),
            account))
        if action in ("suspend", "terminate"):
            behind.setdefault((account, action), []).append(invoice)
    for action, accounts, make in (
            ("suspend", result.suspended, events.AccountSuspend),
            ("terminate", result.terminated, events.AccountTerminate)):
        for account in accounts:
            invoices = sorted(set(behind[(account, action)]))
            emitted.append((make(reason=f"dunning: overdue invoices {invoices}",
                                 invoice_ids=invoices), account))
    emitted.sort(key=lambda e: e[1])  # stable: each account's steps keep their order
    return emitted


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
