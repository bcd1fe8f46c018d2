"""`billing-oss suspense list|retry`: see what could not be charged, and charge it once the
catalog is fixed. Rows are never deleted; a retried row records what it became, and each
retry is audited (``cli:<user>``) as the API's are."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import msgspec

from billing_oss.core.errors import Reason
from billing_oss.server.commands.options import (
    add_config_options,
    cli_actor,
    load_config,
    require_catalog,
)
from billing_oss.server.composition import database_pool, make_pipeline
from billing_oss.server.store import suspense_repo


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "suspense", help="list or retry records that could not be charged")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list suspense records (open ones by default)")
    listing.add_argument("--state", choices=["open", "retried", "discarded", "all"],
                         default="open")
    listing.add_argument("--after", type=int, default=0, metavar="ID",
                         help="cursor: list rows after this suspense id")
    retry = actions.add_parser("retry", help="validate and rate open records again")
    retry.add_argument("--id", type=int, action="append", dest="ids", metavar="ID",
                       help="only this suspense id (repeatable)")
    for sub in (listing, retry):
        sub.add_argument("--reason", choices=[r.value for r in Reason])
        sub.add_argument("--limit", type=int, default=100)
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def act() -> int:
        async with database_pool(config) as pool:
            if args.action == "list":
                async with pool.acquire() as conn:
                    rows = await suspense_repo.list_rows(
                        conn, state=None if args.state == "all" else args.state,
                        reason=args.reason, after=args.after, limit=args.limit)
                _print_rows(args, rows)
                return 0
            await require_catalog(pool)
            before = await _open_rows(pool, args.ids, args.reason, args.limit)
            report = await make_pipeline(config, pool).retry_suspense(
                ids=args.ids, reason=args.reason, limit=args.limit)
            # Audited as over HTTP, row by row, once the retry has committed.
            for r in report.results:
                after = await suspense_repo.get(pool, r.suspense_id)
                await suspense_repo.record_retry(pool, cli_actor(), before.get(
                    r.suspense_id, after), after, r.status)
            if args.json:
                print(msgspec.json.encode(report).decode())
            else:
                for r in report.results:
                    what = (f"charged {r.amount} {r.currency}" if r.status == "charged"
                            else f"{r.status} {r.reason or ''} {r.detail or ''}".rstrip())
                    print(f"{r.suspense_id}  {r.record_key or '-'}  {what}")
                print(f"retried {report.retried}: charged {report.charged}, "
                      f"duplicates {report.duplicates}, still open {report.still_open}")
            return 0 if report.still_open == 0 else 3

    return asyncio.run(act())


def _print_rows(args: argparse.Namespace, rows: list[suspense_repo.SuspenseRow]) -> None:
    if args.json:
        for row in rows:
            print(msgspec.json.encode(row).decode())
        return
    for row in rows:
        print(f"{row.suspense_id}  {row.state:<8} {row.reason:<18} {row.source}  "
              f"{row.record_key or '-'}  {row.source_position or '-'}  {row.detail}")
    if not rows:
        print("no suspense records")


async def _open_rows(pool: Any, ids: list[int] | None, reason: str | None,
                     limit: int) -> dict[int, suspense_repo.SuspenseDetail]:
    """The rows a retry is about to take, as they are before it (for the audit log)."""
    found = await suspense_repo.open_retryable_ids(pool, ids, reason, limit)
    return {suspense_id: await suspense_repo.get(pool, suspense_id) for suspense_id in found}
