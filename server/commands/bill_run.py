"""`billing-oss bill-run --period YYYY-MM`: bill a cycle (drafts), optionally finalise them.

`--dry-run` previews the invoices without writing. Drafts are recomputed by each run until
their grace period (`billing.grace_days` after the cycle's end) is over; `--finalize`
then numbers and freezes the period's drafts whose grace is over (`--force`: all of them).
`--json` prints the result for scripts. A progress bar shows on a terminal.
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
from server.commands.options import add_config_options, cli_actor, load_config
from server.commands.progress import progress
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
                        help="number and freeze the period's drafts whose grace period is over")
    parser.add_argument("--force", action="store_true",
                        help="with --finalize: also drafts still in their grace period")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    if args.force and not args.finalize:
        print("billing-oss bill-run: --force only goes with --finalize", file=sys.stderr)
        return 2

    async def act() -> int:
        now = dt.datetime.now(dt.UTC)
        actor = cli_actor()
        async with database_pool(config) as pool:
            with progress(f"bill-run {args.period}", "accounts",
                          interactive=None if not args.json else False) as report:
                result = await bill_run(pool, args.period, settings(config),
                                        accounts=args.accounts, dry_run=args.dry_run,
                                        batch_size=config.billing.batch_size, now=now,
                                        progress=report, actor=actor)
            due = documents.Due([], [], None)
            finalised: list[int] = []
            if args.finalize and not args.dry_run:
                async with pool.acquire() as conn:
                    due = await documents.drafts_due(conn, args.period, args.accounts,
                                                     config.billing.grace_days, now,
                                                     force=args.force)
                    if due.due:
                        finalised = await documents.finalise(
                            conn, due.due, config.billing.invoice_series, now.date(),
                            config.billing.payment_terms_days, actor=actor)
        if args.json:
            print(msgspec.json.encode({
                "bill_run_id": result.bill_run_id, "period": result.period,
                "dry_run": result.dry_run, "accounts": result.accounts,
                "invoices": result.invoices, "charges": result.charges,
                "frozen": result.frozen, "invoice_ids": result.invoice_ids,
                "finalized": finalised, "in_grace": due.waiting,
                "previews": [views.draft_view(d) for d in result.previews],
            }).decode())
        else:
            print(f"{result.invoices} invoices from {result.charges} charges for "
                  f"{result.accounts} accounts in {result.seconds:.2f} s"
                  f"{' (dry run, nothing written)' if result.dry_run else ''}"
                  f"{f', {result.frozen} past grace left as they are' if result.frozen else ''}"
                  f"{f', {len(finalised)} finalised' if finalised else ''}"
                  f"{_waiting(due)}")
        return 0

    try:
        return asyncio.run(act())
    except BillingError as exc:
        print(f"billing-oss bill-run: {exc.message}", file=sys.stderr)
        return exc.exit_status


def _waiting(due: documents.Due) -> str:
    if not due.waiting or due.waiting_until is None:
        return ""
    return (f", {len(due.waiting)} drafts still in their grace period (until "
            f"{due.waiting_until:%Y-%m-%d %H:%M} UTC; --force to finalise them now)")
