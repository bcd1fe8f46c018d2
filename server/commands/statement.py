"""`billing-oss statement --account A --from DATE --to DATE`: an account's receivables
ledger for a period — opening balance, every entry (invoices, credit notes, payments,
refunds, reversals, fees) with the running balance, closing balance; ``-o x.pdf`` writes
it as a PDF typeset like the invoices."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.money import format_minor
from billing_oss.server.collections import repo, statement_pdf
from billing_oss.server.collections.model import Entry
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "statement", help="an account's ledger entries with the running balance")
    parser.add_argument("--account", required=True, metavar="ID")
    parser.add_argument("--from", dest="start", type=_date, default=dt.date(2000, 1, 1),
                        metavar="YYYY-MM-DD", help="first day (default: the beginning)")
    parser.add_argument("--to", dest="end", type=_date, default=None, metavar="YYYY-MM-DD",
                        help="last day (default: today, UTC)")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.add_argument("-o", "--output", metavar="FILE.pdf",
                        help="write the statement as a PDF (PDF/A-3b) instead")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run(args: argparse.Namespace) -> int:
    end = args.end or dt.datetime.now(dt.UTC).date()
    if end < args.start:
        print("billing-oss statement: --to: before --from", file=sys.stderr)
        return 2
    config = load_config(args)

    async def main() -> tuple[dict[str, int], list[Entry]] | None:
        async with database_pool(config) as pool:
            if await repo.account(pool, args.account) is None:
                return None
            return await repo.statement(pool, args.account, args.start, end)

    found = asyncio.run(main())
    if found is None:
        print(f"billing-oss statement: no account {args.account}", file=sys.stderr)
        return 1
    opening, entries = found
    if args.output:
        pdf = statement_pdf.render(config.billing.seller_name, args.account, args.start, end,
                                   opening, entries)
        try:
            Path(args.output).write_bytes(pdf)
        except OSError as exc:
            print(f"billing-oss statement: -o {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"{args.output}: statement of account {args.account}, {args.start} .. {end}, "
              f"{len(entries)} entries")
        return 0
    if args.json:
        print(msgspec.json.encode({"account_id": args.account, "from": args.start,
                                   "to": end, "opening": opening,
                                   "entries": entries}).decode())
        return 0
    print(f"Statement {args.account}  {args.start} .. {end}")
    for currency, amount in sorted(opening.items()):
        print(f"{'':10}  {'opening balance':<44}{'':>12}  {format_minor(amount, currency):>12}"
              f" {currency}")
    for e in entries:
        print(f"{e.entry_date}  {(e.description or e.kind)[:44]:<44}"
              f"{format_minor(e.amount_micros, e.currency):>12}  "
              f"{format_minor(e.balance_micros, e.currency):>12} {e.currency}")
    return 0
