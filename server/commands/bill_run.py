"""`billing-oss bill-run --period YYYY-MM`: bill a cycle (drafts), optionally finalise them.

`--dry-run` previews the invoices without writing. Drafts are recomputed by each run until
their grace period (`billing.grace_days` after the cycle's end) is over; `--finalize`
then numbers and freezes the period's drafts whose grace is over (`--force`: all of them).
`--json` prints the result for scripts. A progress bar shows on a terminal.

The run is the same job as ``POST /v1/bill-runs`` (audited, resumable), run here, in this
process, to its end; interrupted (Ctrl-C, a crash), it is resumed by the next server start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.server.billing import bill_runs, periods, views
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.commands.progress import progress
from billing_oss.server.composition import database_pool


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
    # Usage errors first: a wrong period must not start (or migrate) a database.
    try:
        periods.parse_period(args.period)
    except BillingError:
        print(f"billing-oss bill-run: --period must be YYYY-MM (month 01-12), not "
              f"{args.period!r}", file=sys.stderr)
        return 2
    if args.force and not args.finalize:
        print("billing-oss bill-run: --force only goes with --finalize", file=sys.stderr)
        return 2
    config = load_config(args)

    async def act() -> int:
        settings = bill_runs.run_settings(config.billing)
        async with database_pool(config) as pool:
            with progress(f"bill-run {args.period}", "accounts",
                          interactive=None if not args.json else False) as report:
                result = await bill_runs.bill_run(
                    pool, args.period, settings.billing, accounts=args.accounts,
                    dry_run=args.dry_run, finalize=args.finalize, force=args.force,
                    batch_size=settings.batch_size, invoice_series=settings.invoice_series,
                    payment_terms_days=settings.payment_terms_days, progress=report,
                    actor=cli_actor())
        if args.json:
            print(msgspec.json.encode({
                "bill_run_id": result.bill_run_id, "period": result.period,
                "dry_run": result.dry_run, "accounts": result.accounts,
                "invoices": result.invoices, "charges": result.charges,
                "frozen": result.frozen, "invoice_ids": result.invoice_ids,
                "finalized": result.finalized, "in_grace": result.in_grace,
                "previews": [views.draft_view(d) for d in result.previews],
            }).decode())
        else:
            print(summary(result))
        return 0

    try:
        return asyncio.run(act())
    except BillingError as exc:
        print(f"billing-oss bill-run: {exc.message}", file=sys.stderr)
        return exc.exit_status


def summary(result: bill_runs.RunResult) -> str:
    """One sentence: what the run stored, what it left alone, what it finalised."""
    text = (f"{_count(result.invoices, 'invoice')} from {_count(result.charges, 'charge')} "
            f"for {_count(result.accounts, 'account')} in {result.seconds:.2f} s")
    if result.dry_run:
        text += " (dry run, nothing written)"
    if result.frozen:
        # Drafts past their grace period keep their figures; whether they were then
        # finalised is said apart, so the two counts never read as contradicting.
        text += f"; {_count(result.frozen, 'draft')} past the grace period not recomputed"
    if result.finalized:
        text += f"; {_count(len(result.finalized), 'invoice')} finalised"
    return text + _waiting(result)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _waiting(result: bill_runs.RunResult) -> str:
    if not result.in_grace or result.in_grace_until is None:
        return ""
    return (f"; {_count(len(result.in_grace), 'draft')} still in their grace period (until "
            f"{result.in_grace_until:%Y-%m-%d %H:%M} UTC; --force to finalise them now)")
