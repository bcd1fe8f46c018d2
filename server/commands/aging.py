"""`billing-oss aging [--as-of DATE] [--account ID] [--buckets 0,30,60,90]`: what customers
owe by days past due as of a date, from the receivables ledger; the total per currency is
the ledger's balance as of that date."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.collections import aging
from billing_oss.server.collections.model import DEFAULT_BUCKETS, AgingRow, bucket_labels
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.http.collections import aging_line, parse_buckets


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "aging", help="receivables by days past due as of a date")
    parser.add_argument("--as-of", metavar="YYYY-MM-DD", help="default: today (UTC)")
    parser.add_argument("--account", metavar="ID", help="one account only")
    parser.add_argument("--buckets", metavar="DAYS,...", default=None,
                        help="upper bounds in days past due (default 0,30,60,90)")
    parser.add_argument("--by-account", action="store_true", help="one line per account")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else \
            dt.datetime.now(dt.UTC).date()
        bounds = parse_buckets(args.buckets) if args.buckets else DEFAULT_BUCKETS
        aging.check_bounds(bounds)
    except (ValueError, InvalidRequest) as exc:
        print(f"billing-oss aging: {'--as-of' if args.as_of else '--buckets'}: {exc}",
              file=sys.stderr)
        return 2
    config = load_config(args)

    async def main() -> list[AgingRow]:
        async with database_pool(config) as pool:
            return await aging.aging(pool, as_of, bounds=bounds, account_id=args.account,
                                     per_account=args.by_account)

    rows = asyncio.run(main())
    labels = bucket_labels(bounds)
    if args.json:
        for r in rows:
            out = msgspec.to_builtins(aging_line(r, labels))
            out["as_of"] = as_of.isoformat()
            print(msgspec.json.encode(out).decode())
        return 0
    head = ["account" if args.by_account else "as of", "currency", *labels, "credit", "total"]
    print("  ".join(f"{h:>12}" for h in head))
    for r in rows:
        line = aging_line(r, labels)
        cells = [r.account_id if args.by_account else as_of.isoformat(), r.currency,
                 *line.buckets.values(), line.credit, line.total]
        print("  ".join(f"{c!s:>12}" for c in cells))
    return 0
