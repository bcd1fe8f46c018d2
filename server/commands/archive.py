"""`billing-oss archive plan|run|list|verify|restore|tick`: years of data
(``server.retention``).

- ``plan [--as-of TIME]`` lists every month that has partitions: ``archive`` (older than
  ``retention.archive_after_months`` and nothing holds it), ``hold`` (with what holds it:
  draft, unpaid or disputed invoices, open suspense, pending rerates, uninvoiced charges) or
  ``keep`` (within the retention period).
- ``run [--month YYYY-MM] [--dir DIR] [--as-of TIME]`` archives what ``plan`` says may go
  (or that one month: exit 1 when it is held) into ``retention.archive_dir``.
- ``list`` the archives; ``verify [--month YYYY-MM]`` checks each file's sha256 and row count
  against its manifest and the database (exit 1 on a mismatch); ``restore YYYY-MM`` loads
  an archived month back.
- ``tick [--as-of TIME]`` does now what ``serve`` does each ``retention.interval_s``:
  partitions ahead, pseudonymisation, archiving (when ``archive_after_months`` is set).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.config import Config
from billing_oss.server.retention import archive, housekeeping, months


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "archive", help="archive old months of usage and charges; partitions ahead")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    plan_p = actions.add_parser("plan", help="which months would be archived, and why not")
    run_p = actions.add_parser("run", help="export, then drop, the months that may go")
    run_p.add_argument("--month", type=_month, metavar="YYYY-MM", help="only this month")
    run_p.add_argument("--dir", type=Path, metavar="DIR",
                       help="where (default: retention.archive_dir)")
    list_p = actions.add_parser("list", help="the archives made")
    verify_p = actions.add_parser("verify", help="check the archives' sha256 and row counts")
    verify_p.add_argument("--month", type=_month, metavar="YYYY-MM", help="only this month")
    restore_p = actions.add_parser("restore", help="load an archived month back")
    restore_p.add_argument("month", type=_month, metavar="YYYY-MM")
    tick_p = actions.add_parser("tick",
                                help="partitions ahead, pseudonymisation and archiving, now")
    for p in (plan_p, run_p, tick_p):
        p.add_argument("--as-of", metavar="TIME", type=_timestamp,
                       help="RFC 3339 time taken as now (default: now)")
    for p in (plan_p, run_p, list_p, verify_p, restore_p, tick_p):
        add_config_options(p)
        p.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.set_defaults(handler=run)


def _timestamp(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _month(text: str) -> dt.date:
    try:
        return months.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    try:
        return asyncio.run(_main(args, config))
    except BillingError as exc:
        print(f"billing-oss archive {args.action}: {exc}", file=sys.stderr)
        return exc.exit_status


async def _main(args: argparse.Namespace, config: Config) -> int:
    ret = config.retention
    now = getattr(args, "as_of", None) or dt.datetime.now(dt.UTC)
    async with database_pool(config) as pool:
        if args.action == "plan":
            plans = await archive.plan(pool, now, ret.archive_after_months)
            for p in plans:
                about = "~" if p.estimated else ""
                rows = ", ".join(f"{t} {about}{n}" for t, n in p.rows.items())
                _out(args, p, f"{p.month}  {p.action:7}  {rows}  {'; '.join(p.reasons)}")
            return 0
        if args.action == "run":
            made = await archive.run(pool, args.dir or Path(ret.archive_dir), now,
                                     ret.archive_after_months, cli_actor(), only=args.month)
            for a in made:
                _out(args, a, _archive_line(a))
            if not made and not args.json:
                print("nothing to archive (see billing-oss archive plan)")
            return 0
        if args.action == "list":
            for a in await archive.list_archives(pool):
                _out(args, a, _archive_line(a))
            return 0
        if args.action == "verify":
            problems = await archive.verify(pool, args.month)
            for problem in problems:
                _out(args, problem, f"{problem.month}  {problem.file}: {problem.reason}")
            if not problems and not args.json:
                print("every archive verifies")
            return 1 if problems else 0
        if args.action == "restore":
            for a in await archive.restore(pool, args.month, cli_actor()):
                _out(args, a, _archive_line(a))
            return 0
        # Now, whenever the last run was; not beside a process running it at this moment.
        done = await housekeeping.run_if_due(pool, ret, now, cli_actor(), interval_s=0)
        text = "in progress elsewhere" if done is None else (
            f"partitions {', '.join(done.months_ensured)}; {done.pseudonymised} records"
            f" pseudonymised; archived: {', '.join(done.archived) or 'none'}")
        _out(args, done, text)
        return 0


def _archive_line(a: archive.Archive) -> str:
    tables = ", ".join(f"{t.table} {t.rows} rows" for t in a.tables)
    return f"{a.month}  {a.state}  {tables}  {a.directory}"


def _out(args: argparse.Namespace, value: Any, text: str) -> None:
    print(msgspec.json.encode(value).decode() if args.json else text)
