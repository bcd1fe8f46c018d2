"""`billing-oss dunning run [--as-of DATE] [--dry-run]` and `dunning dispute|close`: take
the dunning ladder's steps due (reminders, fees, suspensions, terminations, as outbox
events for notification and provisioning), and pause it for a disputed invoice."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import msgspec

from billing_oss.server.collections import dunning
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "dunning", help="remind, charge fees, suspend and resume accounts that owe")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_ = actions.add_parser("run", help="take every step due")
    run_.add_argument("--as-of", type=_date, default=None, metavar="YYYY-MM-DD",
                      help="the run's date (default: today, UTC)")
    run_.add_argument("--dry-run", action="store_true", help="count, change nothing")
    run_.add_argument("--account", metavar="ID", help="one account only")
    dispute = actions.add_parser("dispute", help="pause dunning for an invoice")
    dispute.add_argument("--invoice", type=int, required=True, metavar="ID")
    dispute.add_argument("--reason", required=True)
    close = actions.add_parser("close", help="close a dispute")
    close.add_argument("dispute_id", type=int, metavar="DISPUTE")
    for sub in (run_, dispute, close):
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)
    parser.set_defaults(handler=run)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    today = dt.datetime.now(dt.UTC).date()

    async def main() -> Any:
        async with database_pool(config) as pool, pool.acquire() as conn:
            if args.action == "run":
                return await dunning.run(conn, cli_actor(), args.as_of or today,
                                         dry_run=args.dry_run, account_id=args.account)
            if args.action == "dispute":
                return {"dispute_id": await dunning.open_dispute(
                    conn, cli_actor(), args.invoice, args.reason, today)}
            await dunning.close_dispute(conn, cli_actor(), args.dispute_id, today)
            return {"closed": args.dispute_id}

    result = asyncio.run(main())
    if args.json or not isinstance(result, dunning.RunResult):
        print(msgspec.json.encode(result).decode())
        return 0
    r = result
    actions = ", ".join(f"{n} {a}" for a, n in sorted(r.by_action.items())) or "nothing"
    print(f"dunning {'dry run' if r.dry_run else 'run'} as of {r.as_of}: {r.steps} steps "
          f"({actions}); fees {', '.join(f'{m} {c}' for c, m in r.fees.items()) or '0'}; "
          f"suspended {len(r.suspended)}, resumed {len(r.resumed)}, "
          f"terminated {len(r.terminated)}", file=sys.stdout)
    return 0
