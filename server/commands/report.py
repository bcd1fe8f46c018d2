"""`billing-oss report revenue|usage|top|segments|forecast|mrr|compact|rebuild|anomalies|...`:
reports from the daily charge rollups (MRR from subscriptions), as a table, JSON or CSV,
with an optional plot (.svg or .png); anomaly flags, detected on demand and reviewed by an operator.

    billing-oss report revenue --by zone --period month --from 2026-01-01 --to 2026-04-01
    billing-oss report usage --by account --format csv
    billing-oss report segments --by country --from 2026-02-01 --to 2026-03-01 --plot s.svg
    billing-oss report mrr --from 2026-01-01 --to 2026-04-01
    billing-oss report rebuild --from 2026-03-01 --to 2026-03-08 --level hourly

Dates are UTC days; ``--to`` is excluded. Exit 1 on a bad dimension, date or plot name.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.core.money import format_micros, parse_micros
from billing_oss.server.analytics import anomalies as anomaly_flags
from billing_oss.server.analytics import rebuild as rebuild_levels
from billing_oss.server.analytics import repo, reports
from billing_oss.server.analytics.reports import Report
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "report", help="revenue, usage, top accounts and losing segments from the rollups")
    actions = parser.add_subparsers(dest="action", metavar="REPORT", required=True)
    helps = {"revenue": "money charged by period and dimension",
             "usage": "records and units (seconds, bytes, messages) by period and dimension",
             "top": "the accounts with the most revenue, per currency",
             "segments": "segments whose revenue fell against the previous period, with "
                         "why (accounts, usage per account, price) and against their "
                         "forecast",
             "forecast": "daily revenue forecast (ETS) with 80 % and 95 % intervals and a "
                         "backtest of each series",
             "mrr": "MRR and ARR per month, product and currency from subscriptions; new, "
                    "churned and net accounts; ARPU",
             "collections": "billed, collected and written off per month and currency from "
                            "the receivables ledger; receivables, collected ratio and DSO"}
    for name, text in helps.items():
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--by", action="append", default=[], metavar="DIM",
                         help=f"group by {', '.join(repo.DIMENSIONS)} or attrs.KEY "
                         "(repeat or comma-separate)")
        sub.add_argument("--period", default="month", choices=list(repo.PERIODS))
        sub.add_argument("--from", dest="start", metavar="YYYY-MM-DD",
                         help="first UTC day (default: 90 days before --to)")
        sub.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                         help="the UTC day after the last (default: tomorrow)")
        sub.add_argument("--account", metavar="ID")
        sub.add_argument("--service", choices=sorted(reports.UNITS))
        sub.add_argument("--top", type=int, default=10, metavar="N")
        if name == "segments":
            sub.add_argument("--below-forecast", action="store_true",
                             help="only the segments that also fell below their forecast")
        sub.add_argument("--horizon", type=int, default=14, metavar="DAYS",
                         help="forecast: days ahead (1-90)")
        sub.add_argument("--format", default="table", choices=["table", "json", "csv"])
        sub.add_argument("--plot", metavar="FILE", type=Path, help="also draw it (.svg or .png)")
        add_config_options(sub)
    compact = actions.add_parser(
        "compact", help="fold the rollups' per-batch deltas into one row per key and day")
    compact.add_argument("--from", dest="start", metavar="YYYY-MM-DD", default="2000-01-01")
    compact.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                         help="the UTC day after the last (default: tomorrow)")
    add_config_options(compact)
    rebuild = actions.add_parser(
        "rebuild", help="recompute the rollup levels of a range of days from the charges"
        " (the monthly level: of the whole months holding them), while ingest goes on")
    rebuild.add_argument("--from", dest="start", metavar="YYYY-MM-DD", required=True)
    rebuild.add_argument("--to", dest="end", metavar="YYYY-MM-DD", required=True,
                         help="the UTC day after the last")
    rebuild.add_argument("--level", action="append", choices=list(rebuild_levels.LEVELS),
                         help="daily (with the day, week and account-less levels and the"
                         " days bits), monthly (with the month levels and the months bits)"
                         " or hourly; repeat for several (default: all)")
    add_config_options(rebuild)
    anomalies = actions.add_parser(
        "anomalies", help="list anomaly flags; with --detect, score the days first")
    anomalies.add_argument("--detect", action="store_true",
                           help="score the days --from..--to (default: yesterday) and store "
                           "new flags (outbox event anomaly.flagged)")
    anomalies.add_argument("--from", dest="start", metavar="YYYY-MM-DD")
    anomalies.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                           help="the UTC day after the last (default: today)")
    anomalies.add_argument("--state", choices=list(anomaly_flags.STATES))
    anomalies.add_argument("--account", metavar="ID")
    anomalies.add_argument("--format", default="table", choices=["table", "json", "csv"])
    add_config_options(anomalies)
    review = actions.add_parser("review", help="confirm or dismiss an anomaly flag")
    review.add_argument("flag_id", type=int, metavar="FLAG_ID")
    review.add_argument("state", choices=["confirmed", "dismissed"])
    review.add_argument("--format", default="table", choices=["table", "json", "csv"])
    add_config_options(review)
    parser.set_defaults(handler=run)


def _day(text: str | None, option: str, default: dt.date) -> dt.date:
    if text is None:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{option} {text!r}: not a date (YYYY-MM-DD)") from None


def run(args: argparse.Namespace) -> int:
    if args.action in ("anomalies", "review"):
        return _anomalies(args)
    end = _day(args.end, "--to", dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1))
    if args.action == "compact":
        start = _day(args.start, "--from", end)
        return _compact(args, start, end)
    if args.action == "rebuild":
        return _rebuild(args, _day(args.start, "--from", end), end)
    start = _day(args.start, "--from", end - dt.timedelta(days=90))
    if not 1 <= args.horizon <= 90:
        raise InvalidRequest(f"--horizon {args.horizon}: between 1 and 90 days")
    by = [d.strip() for item in args.by for d in item.split(",") if d.strip()]
    reports.check_dimensions(by)
    if args.plot is not None and args.plot.suffix.lower() not in (".svg", ".png"):
        raise InvalidRequest(f"--plot {args.plot}: the file must end in .svg or .png")
    config = load_config(args)

    async def fetch() -> Report:
        async with database_pool(config) as pool:
            return await reports.build(pool, args.action, by=by, period=args.period,
                                       start=start, end=end, account=args.account,
                                       service=args.service, top=args.top,
                                       horizon=args.horizon,
                                       below_forecast=getattr(args, "below_forecast", False))

    report = asyncio.run(fetch())
    if args.plot is not None:
        from billing_oss.server.analytics import plots  # matplotlib only when asked

        plots.save(report, args.plot)
    _print(report, args.format)
    return 0


def _compact(args: argparse.Namespace, start: dt.date, end: dt.date) -> int:
    config = load_config(args)

    async def act() -> int:
        async with database_pool(config) as pool:
            return await repo.compact(pool, start, end - dt.timedelta(days=1))

    folded = asyncio.run(act())
    print(f"folded {folded} rollup rows ({start} to {end}, end excluded)")
    return 0


def _rebuild(args: argparse.Namespace, start: dt.date, end: dt.date) -> int:
    if end <= start:
        raise InvalidRequest(f"empty range: --to ({end}) must be after --from ({start})")
    config = load_config(args)
    levels = args.level or list(rebuild_levels.LEVELS)

    async def act() -> dict[str, int]:
        async with database_pool(config) as pool:
            return await rebuild_levels.rebuild(pool, start, end - dt.timedelta(days=1),
                                                actor=cli_actor(), levels=levels)

    written = asyncio.run(act())
    print(", ".join(f"{level}: {rows} rows" for level, rows in written.items())
          + f" rebuilt ({start} to {end}, end excluded)")
    return 0


def _anomalies(args: argparse.Namespace) -> int:
    today = dt.datetime.now(dt.UTC).date()
    if args.action == "anomalies":
        end = _day(args.end, "--to", today)
        start = _day(args.start, "--from", end - dt.timedelta(days=1))
        if end <= start:
            raise InvalidRequest(f"empty range: --to ({end}) must be after --from ({start})")
    config = load_config(args)

    async def act() -> list[anomaly_flags.Flag]:
        async with database_pool(config) as pool:
            if args.action == "review":
                return [await anomaly_flags.review(pool, args.flag_id, args.state,
                                                   cli_actor())]
            if args.detect:
                await anomaly_flags.run(pool, first=start, last=end - dt.timedelta(days=1))
            flags, after = [], None
            while True:
                page = await anomaly_flags.find(pool, state=args.state, account=args.account,
                                                after=after, limit=500)
                flags += [f for f in page if args.detect is False
                          or start <= f.period_start.date() < end]
                if len(page) < 500:
                    return flags
                after = page[-1].flag_id

    flags = asyncio.run(act())
    if args.format == "json":
        for flag in flags:
            print(msgspec.json.encode(flag).decode())
        return 0
    header = ["flag_id", "state", "account_id", "service", "metric", "day", "direction",
              "score", "explanation"]
    rows = [[str(f.flag_id), f.state, f.account_id, f.service, f.metric,
             f.period_start.date().isoformat(), f.direction, f"{f.score:+.1f}", f.explanation]
            for f in flags]
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    else:
        for row in rows:
            print("  ".join(row))
        print(f"# {anomaly_flags.METHOD}")
    return 0


def table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """The report as a header and rows of text (table and CSV share them)."""
    if report.report == "forecast":
        header = ["day", *report.by, "currency", "mean", "low80", "high80", "low95", "high95"]
        return header, [[p.day.isoformat(), *(v or "" for v in p.key.values()), p.currency,
                         p.mean, p.low80, p.high80, p.low95, p.high95]
                        for p in report.forecast]
    if report.report == "mrr":
        return _mrr_rows(report)
    if report.report == "collections":
        header = ["month", "currency", "invoiced", "credited", "billed", "collected",
                  "written_off", "receivables", "collected_ratio", "dso"]
        return header, [[c.month.isoformat(), c.currency, c.invoiced, c.credited, c.billed,
                         c.collected, c.written_off, c.receivables, c.collected_ratio or "",
                         c.dso or ""] for c in report.collections]
    if report.report == "segments":
        header = [*report.by, "currency", "revenue", "previous", "delta", "accounts",
                  "previous_accounts", "accounts_effect", "usage_effect", "price_effect",
                  "forecast", "forecast_delta", "below_forecast"]
        return header, [[*(v or "" for v in d.key.values()), d.currency, d.revenue,
                         d.previous, d.delta, str(d.accounts), str(d.previous_accounts),
                         d.accounts_effect, d.usage_effect, d.price_effect, d.forecast or "",
                         d.forecast_delta or "",
                         "" if d.below_forecast is None else str(d.below_forecast).lower()]
                        for d in report.segments]
    header = ["period", *report.by, "currency", "amount", "records", "units", "accounts"]
    return header, [[r.period or "", *(v or "" for v in r.key.values()), r.currency,
                     r.amount, str(r.records), r.units, str(r.accounts)]
                    for r in report.rows]


def _mrr_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Per month and currency: a row per product, then ``(all)`` with the total MRR and the
    accounts' movements and ARPU."""
    header = ["month", "currency", "product", "mrr", "arr", "subscriptions", "accounts", "new",
              "churned", "net", "subscribed", "revenue", "arpu"]
    products: dict[tuple[dt.date, str], list[Any]] = {}
    for m in report.mrr:
        products.setdefault((m.month, m.currency), []).append(m)
    movements = {(a.month, a.currency): a for a in report.accounts}
    rows: list[list[str]] = []
    for month, currency in sorted(set(products) | set(movements)):
        mine = products.get((month, currency), [])
        rows += [[month.isoformat(), currency, m.product, m.mrr, m.arr, str(m.subscriptions),
                  str(m.accounts), "", "", "", "", "", ""] for m in mine]
        total = sum(parse_micros(m.mrr) for m in mine)
        a = movements.get((month, currency))
        rows.append([month.isoformat(), currency, "(all)", format_micros(total),
                     format_micros(12 * total),
                     str(sum(m.subscriptions for m in mine)),
                     *([str(a.closing), str(a.new), str(a.churned), f"{a.net:+d}",
                        str(a.subscribed), a.revenue, a.arpu or ""] if a else [""] * 7)])
    return header, rows


def _print(report: Report, fmt: str) -> None:
    if fmt == "json":
        print(msgspec.json.encode(report).decode())
        return
    header, rows = table_rows(report)
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    numeric = {"mean", "low80", "high80", "low95", "high95", "amount", "records", "units",
               "accounts", "revenue", "previous", "delta", "previous_accounts",
               "accounts_effect", "usage_effect", "price_effect", "mrr", "arr", "forecast",
               "forecast_delta", "invoiced", "credited", "billed", "collected", "written_off",
               "receivables", "collected_ratio", "dso", "subscriptions", "new", "churned", "net",
               "subscribed", "arpu"}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if h in numeric else c.ljust(w)
                         for c, w, h in zip(cells, widths, header, strict=True)).rstrip()

    print(line(header))
    for row in rows:
        print(line(row))
    for b in report.backtests:
        print(f"# backtest {_key(b.key)} {b.currency}: last {b.days} days, WAPE {b.wape} "
              f"(seasonal naive {b.seasonal_naive_wape})")
    print(f"# {report.method}")


def _key(key: dict[str, str | None]) -> str:
    return ", ".join(f"{k}={v}" for k, v in key.items()) or "total"
