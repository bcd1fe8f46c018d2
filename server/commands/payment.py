"""`billing-oss payment add|list|show|allocate|refund|import|mandate|collect`: record what
customers paid, allocate it to their invoices, pay money back or undo a payment that bounced,
import camt.053 / camt.054 bank files, and collect by SEPA direct debit.

The rules are the API's (``server.collections.payments``); bad input is one line on stderr
naming the option, exit 1. Changes are audited as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from billing_oss.core.errors import DecodeError, InvalidRequest
from billing_oss.core.money import parse_micros
from billing_oss.server.collections import bank_import, payments, repo, write_offs
from billing_oss.server.collections.bank_import import ImportResult
from billing_oss.server.collections.model import AUTO, NONE, NewPayment, Payment, Target
from billing_oss.server.commands import direct_debit
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.http.collections import payment_view

PAGE = 500


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "payment", help="record, allocate, refund and reverse customer payments")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="record a payment and allocate it")
    add.add_argument("--account", required=True, metavar="ID")
    add.add_argument("--amount", required=True, metavar="DECIMAL", help="e.g. 120.50")
    add.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD",
                     help="when it was received (default: today)")
    add.add_argument("--method", default="transfer", help="transfer, card, cash, cheque...")
    add.add_argument("--currency", help="the account's currency (the default)")
    add.add_argument("--reference", help="the payer's reference")
    add.add_argument("--external-id", help="your id for it: the same one again records "
                     "nothing new")
    _targets(add)
    add.add_argument("--no-allocate", action="store_true",
                     help="leave it unapplied (a credit balance)")
    listing = actions.add_parser("list", help="payments, oldest first")
    listing.add_argument("--account", metavar="ID")
    show = actions.add_parser("show", help="one payment and its allocations")
    show.add_argument("payment_id", type=int, metavar="PAYMENT")
    allocate = actions.add_parser("allocate", help="allocate what a payment has left")
    allocate.add_argument("payment_id", type=int, metavar="PAYMENT")
    _targets(allocate)
    refund = actions.add_parser("refund", help="pay (part of) a payment back, or reverse it")
    refund.add_argument("payment_id", type=int, metavar="PAYMENT")
    refund.add_argument("--amount", metavar="DECIMAL", help="how much to pay back "
                        "(required unless --reversal)")
    refund.add_argument("--reversal", action="store_true",
                        help="the payment bounced or was returned: undo it whole")
    refund.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD")
    refund.add_argument("--reason", default="refund", help="why (a return code: AC04, MD06...)")
    woff = actions.add_parser("write-off", help="write off what an invoice still owes")
    woff.add_argument("--invoice", type=int, required=True, metavar="ID")
    woff.add_argument("--reason", required=True)
    woff.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD")
    add_config_options(woff)
    direct_debit.add_actions(actions, _date)
    bank = actions.add_parser("import", help="import a camt.053 / camt.054 bank file, or a "
                                  "pain.002 status report (rejected direct debits)")
    bank.add_argument("file", metavar="FILE")
    for sub in (add, listing, show, allocate, refund, bank):
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)
    parser.set_defaults(handler=run)


def _targets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--invoice", action="append", default=[], metavar="ID[:AMOUNT]",
                        help="allocate to this invoice (what it owes, or AMOUNT); repeat for "
                        "several; none: oldest first")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run(args: argparse.Namespace) -> int:
    if args.action == "import":
        return _import(args)
    if args.action == "write-off":
        return _write_off(args)
    if args.action == "mandate":
        return direct_debit.run_mandate(args)
    if args.action == "collect":
        return direct_debit.run_collect(args)
    try:
        act = _action(args)
    except (ValueError, InvalidRequest) as exc:
        print(f"billing-oss payment: {exc}", file=sys.stderr)
        return 1
    config = load_config(args)

    async def main() -> list[tuple[Payment, bool | None]]:
        async with database_pool(config) as pool:
            return await act(pool)

    try:
        results = asyncio.run(main())
    except InvalidRequest as exc:
        print(f"billing-oss payment: {_option(exc)}", file=sys.stderr)
        return 1
    for stored, created in results:
        _print(stored, created, args.json)
    return 0


Act = Callable[[asyncpg.Pool], Awaitable[list[tuple[Payment, bool | None]]]]


def _action(args: argparse.Namespace) -> Act:
    today = dt.datetime.now(dt.UTC).date()
    actor = cli_actor()
    if args.action == "add":
        new = NewPayment(account_id=args.account, amount_micros=_amount(args.amount),
                         received_on=args.date or today, method=args.method,
                         currency=args.currency, reference=args.reference,
                         external_id=args.external_id,
                         allocate=NONE if args.no_allocate else AUTO,
                         targets=_parse_targets(args.invoice))

        async def add(pool: asyncpg.Pool) -> list[tuple[Payment, bool | None]]:
            stored, created = await payments.record(pool, actor, new)
            return [(stored, created)]
        return add
    if args.action == "list":
        async def listing(pool: asyncpg.Pool) -> list[tuple[Payment, bool | None]]:
            out: list[tuple[Payment, bool | None]] = []
            after = None
            while True:
                found = await repo.payments(pool, args.account, after, PAGE)
                out += [(p, None) for p in found[:PAGE]]
                if len(found) <= PAGE:
                    return out
                after = found[PAGE - 1].payment_id
        return listing
    if args.action == "show":
        async def show(pool: asyncpg.Pool) -> list[tuple[Payment, bool | None]]:
            return [(await payments.get(pool, args.payment_id), None)]
        return show
    if args.action == "allocate":
        targets = _parse_targets(args.invoice)

        async def allocate(pool: asyncpg.Pool) -> list[tuple[Payment, bool | None]]:
            return [(await payments.allocate(pool, actor, args.payment_id, targets), None)]
        return allocate
    on = args.date or today
    if args.reversal:
        async def reverse(pool: asyncpg.Pool) -> list[tuple[Payment, bool | None]]:
            return [(await payments.reverse(pool, actor, args.payment_id, on, args.reason),
                     None)]
        return reverse
    if args.amount is None:
        raise ValueError("refund: --amount is required (or --reversal)")
    amount = _amount(args.amount)

    async def refund(pool: asyncpg.Pool) -> list[tuple[Payment, bool | None]]:
        return [(await payments.refund(pool, actor, args.payment_id, amount, on, args.reason),
                 None)]
    return refund


def _write_off(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def main() -> int:
        async with database_pool(config) as pool:
            return await write_offs.write_off(pool, cli_actor(), args.invoice,
                                              args.date or dt.datetime.now(dt.UTC).date(),
                                              args.reason)

    print(f"written off: invoice {args.invoice} (ledger entry {asyncio.run(main())})")
    return 0


def _import(args: argparse.Namespace) -> int:
    """Exit 0 when every transaction was imported (or had been), 3 when some were left
    unmatched or rejected (listed on stderr), 1 when the file is not a camt file."""
    path = Path(args.file)
    if not path.is_file():
        print(f"billing-oss payment: {args.file}: no such file", file=sys.stderr)
        return 1
    config = load_config(args)

    async def main() -> ImportResult:
        async with database_pool(config) as pool:
            return await bank_import.import_file(pool, cli_actor(), path, path.name)

    try:
        result = asyncio.run(main())
    except DecodeError as exc:
        print(f"billing-oss payment: {args.file}: {exc.message}", file=sys.stderr)
        return 1
    for p in result.problems:
        print(f"billing-oss payment: {args.file}: entry {p.entry_no} ({p.key or 'no ref'}): "
              f"{p.status}: {p.reason}", file=sys.stderr)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        print(f"{result.file} ({result.kind}): {result.transactions} transactions, "
              f"{result.imported} imported, {result.returned} returned, {result.unmatched} "
              f"unmatched, {result.rejected} rejected, {result.ignored} ignored, "
              f"{result.duplicates} duplicates; paid "
              + (", ".join(f"{m} {c}" for c, m in result.amount_imported.items()) or "0"))
    return 3 if result.unmatched or result.rejected else 0


def _amount(text: str, option: str = "--amount") -> int:
    try:
        return parse_micros(text)
    except ValueError:
        raise ValueError(f"{option}: not a decimal amount with at most 6 decimals: "
                         f"{text!r}") from None


def _parse_targets(given: list[str]) -> tuple[Target, ...]:
    out = []
    for text in given:
        invoice, _, amount = text.partition(":")
        if not invoice.isdigit():
            raise ValueError(f"--invoice: not an invoice id: {text!r}")
        out.append(Target(int(invoice), _amount(amount, "--invoice") if amount else None))
    return tuple(out)


def _option(exc: InvalidRequest) -> str:
    """The API's message with the body field named as the command's option."""
    if not exc.errors:
        return exc.message
    path = exc.errors[0]["path"].removeprefix("$.")
    option = {"amount": "--amount", "currency": "--currency", "date": "--date"}.get(
        path, "--invoice" if path.startswith("allocations") else path)
    return f"{option}: {exc.errors[0]['message']}"


def _print(p: Payment, created: bool | None, as_json: bool) -> None:
    view = payment_view(p)
    if as_json:
        out = msgspec.to_builtins(view)
        if created is not None:
            out["created"] = created
        print(msgspec.json.encode(out).decode())
        return
    note = "" if created is None else ("recorded" if created else "already recorded") + ": "
    allocated = ", ".join(f"invoice {a.invoice_id} {a.amount}" if a.invoice_id else
                          f"{a.kind} #{a.entry_id} {a.amount}" for a in view.allocations)
    print(f"{note}payment {p.payment_id}  {p.account_id}  {view.amount} {p.currency}  "
          f"{p.received_on}  {p.method}  allocated {view.allocated}"
          f"{' (' + allocated + ')' if allocated else ''}  unapplied {view.unapplied}"
          + (f"  refunded {view.refunded}" if p.refunded_micros else "")
          + (f"  reversed {view.reversed}" if p.reversed_micros else ""))
