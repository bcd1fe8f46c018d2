"""`billing-oss simulate --catalog CANDIDATE.json --from YYYY-MM --to YYYY-MM`: price the
periods' real usage under a candidate catalog and compare with the catalog in force.

    billing-oss simulate --catalog new-prices.json --from 2026-03 --to 2026-03
    billing-oss simulate --catalog c.json --from 2026-01 --to 2026-03 --segment country=DE \
        --by country --format json --plot change.svg
    billing-oss simulate --preview A1 [--from 2026-03] [--catalog c.json] [--pdf a1.pdf]

``--from``/``--to`` are billing periods (each account's cycle of that month), both
included. Nothing is written but the simulation's own result row. Exit 0 when the
candidate rates every record the catalog in force rates, 3 when it leaves coverage gaps,
1 on a bad candidate or request.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.billing.model import InvoiceDraft, Settings
from billing_oss.server.billing.views import draft_view
from billing_oss.server.commands.options import (
    add_config_options,
    cli_actor,
    load_config,
    require_catalog,
)
from billing_oss.server.commands.progress import progress
from billing_oss.server.composition import database_pool
from billing_oss.server.simulation import candidate as candidates
from billing_oss.server.simulation import engine, preview, service, text

EXIT_OK, EXIT_GAPS = 0, 3


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "simulate", help="price real usage under a candidate catalog, against the current one")
    parser.add_argument("--catalog", type=Path, metavar="CANDIDATE.json",
                        help="candidate catalog: changes laid over the catalog in force "
                        "(required but with --preview)")
    parser.add_argument("--from", dest="start", metavar="YYYY-MM",
                        help="first billing period (--preview: default the current one)")
    parser.add_argument("--to", dest="end", metavar="YYYY-MM",
                        help="last billing period, included (default: --from)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--accounts", metavar="ID,...", help="only these accounts")
    scope.add_argument("--segment", action="append", default=[], metavar="KEY=VALUE",
                       help="only accounts whose attribute KEY is VALUE (repeatable)")
    parser.add_argument("--by", action="append", default=[], metavar="ATTR",
                        help="also break the change down by this account attribute")
    parser.add_argument("--shock", default="20", metavar="PERCENT",
                        help="bill shock: a net increase above this (default 20)")
    parser.add_argument("--top", type=int, default=10, metavar="N")
    parser.add_argument("--format", default="table", choices=["table", "json", "csv"])
    parser.add_argument("--plot", type=Path, metavar="FILE.svg",
                        help="histogram of the per-account change")
    parser.add_argument("--preview", metavar="ACCOUNT",
                        help="print this account's invoice of --from (JSON) instead")
    parser.add_argument("--pdf", type=Path, metavar="FILE",
                        help="also write the report as a PDF (with --preview: the invoice, "
                        "marked PREVIEW)")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def _candidate(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"--catalog {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"--catalog {path}: not JSON: {exc}") from None
    candidates.check(document)
    return document  # type: ignore[no-any-return]


def request_of(args: argparse.Namespace) -> engine.Request:
    if args.catalog is None or args.start is None:
        raise InvalidRequest("simulate needs --catalog and --from (or --preview ACCOUNT)")
    document = _candidate(args.catalog)
    segment = {}
    for item in args.segment:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"--segment {item!r}: KEY=VALUE")
        segment[key] = value
    try:
        shock = Decimal(args.shock)
    except InvalidOperation:
        raise InvalidRequest(f"--shock {args.shock!r}: a percentage") from None
    if args.plot is not None and args.plot.suffix.lower() not in (".svg", ".png"):
        raise InvalidRequest(f"--plot {args.plot}: the file must end in .svg or .png")
    return engine.Request(
        candidate=document, period_from=args.start, period_to=args.end or args.start,
        accounts=[a for a in args.accounts.split(",") if a] if args.accounts else None,
        segment=segment or None, by=args.by, shock_percent=shock, top=args.top)


def run(args: argparse.Namespace) -> int:
    if args.preview is not None:
        return _preview(args)
    request = request_of(args)
    engine.periods_between(request.period_from, request.period_to)
    config = load_config(args)
    settings = _settings(config)

    async def go() -> dict[str, Any]:
        async with database_pool(config) as pool:
            await require_catalog(pool)
            with progress("simulation", "records") as report:
                _, _, result = await service.run(pool, request, settings, cli_actor(),
                                                 lambda n: report(n, None))
            return result

    result = asyncio.run(go())
    if args.plot is not None or args.pdf is not None:
        from billing_oss.server.simulation import plot  # matplotlib only when asked

        if args.plot is not None:
            plot.save(result, args.plot)
        if args.pdf is not None:
            plot.save_pdf(result, text.table(result), args.pdf)
    if args.format == "json":
        sys.stdout.buffer.write(service.encode(result) + b"\n")
    elif args.format == "csv":
        sys.stdout.write(text.csv_rows(result))
    else:
        sys.stdout.write(text.table(result))
    return EXIT_GAPS if result["coverage"]["candidate_gaps"] else EXIT_OK


def _settings(config: Any) -> Settings:
    return Settings(seller=config.billing.seller(), rounding=config.billing.rounding)


def _preview(args: argparse.Namespace) -> int:
    """One account's invoice of one cycle, as JSON (and a PDF marked PREVIEW)."""
    period = args.start or dt.datetime.now(dt.UTC).strftime("%Y-%m")
    engine.periods_between(period, period)
    document = _candidate(args.catalog) if args.catalog is not None else None
    config = load_config(args)

    async def go() -> list[InvoiceDraft]:
        async with database_pool(config) as pool, pool.acquire() as conn:
            return await preview.drafts(conn, args.preview, period, document,
                                        _settings(config))

    drafts = asyncio.run(go())
    if not drafts:
        raise InvalidRequest(f"account {args.preview} has nothing to invoice for {period}")
    if args.pdf is not None:
        args.pdf.write_bytes(preview.pdf(drafts[0]))
    views = [msgspec.to_builtins(draft_view(d)) for d in drafts]
    sys.stdout.buffer.write(msgspec.json.encode(views[0] if len(views) == 1 else views) + b"\n")
    return EXIT_OK
