"""`billing-oss ledger export --from DATE --to DATE --format csv|json|fec [-o PATH]`: the
period's journal entries from the receivables ledger, balanced, on the chart of accounts of
the ``[ledger]`` configuration. ``-o`` names a file, or a directory where the FEC takes its
legal name ``<SIREN>FEC<YYYYMMDD>.txt``; without it the export goes to stdout. The totals
(entries, debit, credit) go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.ledger import export
from billing_oss.server.ledger.journal import Journal


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "ledger", help="general-ledger exports (journal entries, FEC)")
    actions = parser.add_subparsers(dest="action", required=True)
    ex = actions.add_parser("export", help="a period's journal as CSV, JSON or FEC")
    ex.add_argument("--from", dest="start", type=_date, required=True, metavar="YYYY-MM-DD",
                    help="first day")
    ex.add_argument("--to", dest="end", type=_date, required=True, metavar="YYYY-MM-DD",
                    help="last day (the FEC's closing date)")
    ex.add_argument("--format", choices=export.FORMATS, default="csv")
    ex.add_argument("--separator", choices=("pipe", "tab"), default="pipe",
                    help="FEC field separator (default pipe)")
    ex.add_argument("--siren", help="the company's SIREN for the FEC name (ledger.siren)")
    ex.add_argument("-o", "--output", metavar="PATH", help="a file, or a directory")
    add_config_options(ex)
    ex.set_defaults(handler=run)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def run(args: argparse.Namespace) -> int:
    if args.end < args.start:
        print("billing-oss ledger export: --to: before --from", file=sys.stderr)
        return 2
    config = load_config(args)
    chart = config.ledger
    if args.siren:
        chart = msgspec.structs.replace(chart, siren=args.siren)
    try:
        name = (export.fec_name(chart.siren, args.end) if args.format == "fec"
                else f"journal-{args.start}-{args.end}.{args.format}")
    except InvalidRequest as exc:
        print(f"billing-oss ledger export: {exc.message} (or --siren)", file=sys.stderr)
        return 2

    async def main() -> Journal:
        async with database_pool(config) as pool:
            return await export.journal(pool, chart, args.start, args.end)

    j = asyncio.run(main())
    body = (export.to_fec(j, "|" if args.separator == "pipe" else "\t")
            if args.format == "fec" else export.to_json(j) + b"\n"
            if args.format == "json" else export.to_csv(j).encode())
    if args.output:
        path = Path(args.output)
        path = path / name if path.is_dir() else path
        try:
            path.write_bytes(body)
        except OSError as exc:
            print(f"billing-oss ledger export: -o {args.output}: {exc.strerror}",
                  file=sys.stderr)
            return 2
        print(path)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
    print(f"{len(j.entries)} entries {args.start} .. {args.end} in {j.currency}: debit "
          f"{export.amount(j.debit_micros, j.currency)}, credit "
          f"{export.amount(j.credit_micros, j.currency)}"
          + (f"; other currencies not exported: {', '.join(j.other_currencies)}"
             if j.other_currencies else ""), file=sys.stderr)
    return 0
