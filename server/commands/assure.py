"""`billing-oss assure run|list|show`: revenue-assurance controls (``server.assurance``).

- ``run [--control NAME|FAMILY]... [--as-of TIME]`` runs the controls (all by default), stores
  the results, chains them into the audit log and prints one line per control; exit 1 when
  a control failed, 0 when all passed.
- ``list`` shows the latest runs; ``show RUN`` one run's results with their evidence and the
  query that lists every offender.
- ``controls`` lists the controls and what each checks.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import msgspec

from billing_oss.core.errors import BillingError
from billing_oss.server import assurance
from billing_oss.server.assurance import engine, repo
from billing_oss.server.assurance.controls import ALL
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "assure", help="revenue-assurance controls: run, list, show")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run_p = actions.add_parser("run", help="run the controls; exit 1 if one fails")
    run_p.add_argument("--control", action="append", metavar="NAME",
                       help="a control or a family (repeatable; default: all)")
    run_p.add_argument("--as-of", metavar="TIME", type=_timestamp,
                       help="RFC 3339 time the controls look at (default: now)")
    list_p = actions.add_parser("list", help="the latest runs")
    list_p.add_argument("--limit", type=int, default=20)
    show_p = actions.add_parser("show", help="one run's results and evidence")
    show_p.add_argument("run_id", metavar="RUN", type=int)
    actions.add_parser("controls", help="every control and what it checks")
    for p in (run_p, list_p, show_p):
        add_config_options(p)
        p.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.set_defaults(handler=run)


def _timestamp(text: str) -> dt.datetime:
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def run(args: argparse.Namespace) -> int:
    if args.action == "controls":
        for c in ALL:
            print(f"{c.name} v{c.version}: {c.title}")
        return 0
    config = load_config(args)

    async def main() -> int:
        async with database_pool(config) as pool:
            if args.action == "run":
                ctx = assurance.context(config.assurance, args.as_of, config.ledger)
                done = await engine.run(pool, ctx, controls=args.control, trigger="cli",
                                        actor=cli_actor())
                _print_run(done, args.json, evidence=False)
                return 1 if done.failed else 0
            if args.action == "list":
                for r in await repo.runs(pool, before=None, limit=args.limit):
                    _print_summary(r, args.json)
                return 0
            _print_run(await repo.get(pool, args.run_id), args.json, evidence=True)
            return 0

    try:
        return asyncio.run(main())
    except BillingError as exc:
        print(f"billing-oss assure: {exc}", file=sys.stderr)
        return exc.exit_status


def _print_summary(r: repo.Run, as_json: bool) -> None:
    if as_json:
        print(msgspec.json.encode(msgspec.structs.replace(r, results=[])).decode())
        return
    verdict = "all passed" if not r.failed else f"{r.failed} FAILED"
    print(f"run {r.run_id}  as of {r.as_of:%Y-%m-%dT%H:%M:%SZ}  {r.controls} controls,"
          f" {verdict}  ({r.trigger}, {r.actor})")


def _print_run(r: repo.Run, as_json: bool, *, evidence: bool) -> None:
    if as_json:
        print(msgspec.json.encode(r).decode())
        return
    _print_summary(r, False)
    for res in r.results:
        stake = ", ".join(f"{amount} {cur}" for cur, amount in res.at_stake.items()) or "-"
        unpriced = f" ({res.unpriced} unpriced)" if res.unpriced else ""
        print(f"  {res.status.upper():5} {res.control} v{res.version}: {res.offending}"
              f" offending, at stake {stake}{unpriced}, {res.duration_ms} ms")
        if res.error:
            print(f"        error: {res.error}")
        if evidence and res.status != "pass":
            for e in res.evidence:
                print(f"        {e['object']}: {e['detail']}")
            print(f"        all of them: {' '.join(res.evidence_query.split())}")
