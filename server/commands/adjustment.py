"""`billing-oss adjustment add|list`: book a one-off credit (negative amount) or debit on an
account's next invoice, and see what was booked and which invoice billed it.

The rules are the API's (``server.store.adjustments_repo``): an amount exact in the
currency's minor unit, the account's currency, no closed account; ``--reference`` makes a
retried command book nothing twice. Bookings are audited (``cli:<user>``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec

from billing_oss.core.money import format_micros, parse_micros
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.http.adjustments import AdjustmentIn, view
from billing_oss.server.store import adjustments_repo
from billing_oss.server.store.adjustments_repo import Adjustment, NewAdjustment

PAGE = 500


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "adjustment", help="book credits and debits on an account's next invoice")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="book a credit (negative) or a debit")
    add.add_argument("--account", required=True, metavar="ID")
    add.add_argument("--amount", required=True, metavar="DECIMAL",
                     help="e.g. -5.00 (a credit) or 12.50 (a debit)")
    add.add_argument("--description", required=True, help="printed on the invoice line")
    add.add_argument("--currency", help="the account's currency (the default)")
    add.add_argument("--tax-class", default="standard")
    add.add_argument("--reference", help="your id for this booking: the same one again "
                     "books nothing new")
    listing = actions.add_parser("list", help="an account's adjustments, oldest first")
    listing.add_argument("--account", required=True, metavar="ID")
    for sub in (add, listing):
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    new = None
    if args.action == "add":
        fields = {"amount": args.amount, "description": args.description,
                  "currency": args.currency, "tax_class": args.tax_class,
                  "reference": args.reference}
        try:  # the API's body type: the same limits, the field named on failure
            body = msgspec.convert({k: v for k, v in fields.items() if v is not None},
                                   AdjustmentIn)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).rpartition(" - at `$.")
            option = "--" + where.rstrip("`").replace("_", "-")
            print(f"billing-oss adjustment: {option}: {message}", file=sys.stderr)
            return 1
        new = NewAdjustment(amount_micros=parse_micros(body.amount),
                            description=body.description, currency=body.currency,
                            tax_class=body.tax_class, reference=body.reference)
    config = load_config(args)

    async def act() -> list[tuple[Adjustment, bool]]:
        async with database_pool(config) as pool:
            if new is not None:
                return [await adjustments_repo.add(pool, cli_actor(), args.account, new)]
            rows, after = [], None
            while True:
                found = await adjustments_repo.find(pool, args.account, after, PAGE)
                rows += [(a, False) for a in found[:PAGE]]
                if len(found) <= PAGE:
                    return rows
                after = found[PAGE - 1].adjustment_id

    for adjustment, created in asyncio.run(act()):
        _print(adjustment, created if new is not None else None, args.json)
    return 0


def _print(a: Adjustment, created: bool | None, as_json: bool) -> None:
    if as_json:
        out = msgspec.to_builtins(view(a))
        if created is not None:
            out["created"] = created
        print(msgspec.json.encode(out).decode())
        return
    billed = f"invoice {a.invoice_id}" if a.invoice_id else "not billed yet"
    note = "" if created is None else ("booked" if created else "already booked") + ": "
    print(f"{note}{a.account_id} #{a.adjustment_id}  {format_micros(a.amount_micros)} "
          f"{a.currency}  {a.description}  ({a.tax_class}, {billed}"
          f"{', ref ' + a.reference if a.reference else ''})")
