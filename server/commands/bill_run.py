"""`billing-oss bill-run --period YYYY-MM`: bill a cycle (drafts), optionally finalise them.

`--dry-run` previews the invoices without writing; `--finalize` numbers and freezes the
drafts the run produced; `--json` prints the result for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import msgspec

from server.billing import documents, views
from server.billing.runs import bill_run
from server.commands.options import add_config_options, load_config
from server.errors import BillingError
from server.http.invoices import settings
from server.service import database_pool


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "bill-run", help="turn a cycle's charges into invoices")
    parser.add_argument("--period", required=True, help="cycle YYYY-MM")
    parser.add_argument("--account", action="append", dest="accounts",
                        help="only this account (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="preview; write nothing")
    parser.add_argument("--finalize", action="store_true",
                        help="number and freeze the drafts of this run")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    def progress(done: int, total: int) -> None:
        print(f"bill-run {args.period}: {done}/{total} accounts", file=sys.stderr)

    async def act() -> int:
        async with database_pool(config) as pool:
            result = await bill_run(pool, args.period, settings(config), accounts=args.accounts,
                                    dry_run=args.dry_run, batch_size=config.billing.batch_size,
                                    progress=progress)
            finalised: list[int] = []
            if args.finalize and result.invoice_ids:
                async with pool.acquire() as conn:
                    finalised = await documents.finalise(
                        conn, result.invoice_ids, config.billing.invoice_series,
                        dt.date.today(), config.billing.payment_terms_days)
        if args.json:
            print(msgspec.json.encode({
                "bill_run_id": result.bill_run_id, "period": result.period,
                "dry_run": result.dry_run, "accounts": result.accounts,
                "invoices": result.invoices, "charges": result.charges,
                "invoice_ids": result.invoice_ids, "finalized": finalised,
                "previews": [views.draft_view(d) for d in result.previews],
            }).decode())
        else:
            print(f"{result.invoices} invoices from {result.charges} charges for "
                  f"{result.accounts} accounts in {result.seconds:.2f} s"
                  f"{' (dry run, nothing written)' if result.dry_run else ''}"
                  f"{f', {len(finalised)} finalised' if finalised else ''}")
        return 0

    try:
        return asyncio.run(act())
    except BillingError as exc:
        print(f"billing-oss bill-run: {exc.message}", file=sys.stderr)
        return exc.exit_status
