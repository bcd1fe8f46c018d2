"""`billing-oss ledger export --from DATE --to DATE --format csv|json|fec [-o PATH]`: the
period's journal entries from the receivables ledger, balanced, on the chart of accounts of
the ``[ledger]`` configuration. ``-o`` names a file, or a directory where the FEC takes its
legal name ``<SIREN>FEC<YYYYMMDD>.txt``; without it the export goes to stdout. The period
is streamed a chunk of entries at a time, in bounded memory, the same bytes as built whole.
The totals (entries, debit, credit) go to stderr.

`billing-oss ledger rebuild [--kept journal|aging]`: the state the ledger's writers keep (the
journal's days, the aging from today on) formed anew from the ledger, audited; what repairs
what ``ledger.journal_days`` finds wrong."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.collections import kept_rebuild
from billing_oss.server.commands import output
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.config import Config, LedgerConfig
from billing_oss.server.ledger import export


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
    rb = actions.add_parser("rebuild", help="form the kept journal days and aging anew from"
                            " the ledger")
    rb.add_argument("--kept", action="append", choices=kept_rebuild.PARTS,
                    help="only this part (repeatable; default: all)")
    add_config_options(rb)
    rb.set_defaults(handler=run_rebuild)


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

    separator = "|" if args.separator == "pipe" else "\t"
    path = None
    if args.output:
        path = Path(args.output)
        path = path / name if path.is_dir() else path
    try:
        totals = asyncio.run(_export(config, chart, args, separator, path))
    except _OutputError as exc:
        print(f"billing-oss ledger export: -o {args.output}: {exc}", file=sys.stderr)
        return 2
    if path is not None:
        print(path)
    print(f"{totals.entries} entries {args.start} .. {args.end} in {chart.currency}: debit "
          f"{export.amount(totals.debit_micros, chart.currency)}, credit "
          f"{export.amount(totals.credit_micros, chart.currency)}"
          + (f"; other currencies not exported: {', '.join(totals.other_currencies)}"
             if totals.other_currencies else ""), file=sys.stderr)
    return 0


async def _export(config: Config, chart: LedgerConfig, args: argparse.Namespace,
                  separator: str, path: Path | None) -> export.Totals:
    """The period streamed a chunk at a time (``export.write``) in one snapshot, to stdout
    or to ``path`` whole or not at all (``output.whole_file``): a failed export never leaves
    a short file under the export's name."""
    async with database_pool(config) as pool, pool.acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True):
        if path is None:
            sys.stdout.flush()
            totals = await export.write(conn, chart, args.start, args.end, args.format,
                                        sys.stdout.buffer.write, separator)
            sys.stdout.flush()
            return totals
        try:
            with output.whole_file(path) as out:
                totals = await export.write(conn, chart, args.start, args.end, args.format,
                                            out.write, separator)
        except OSError as exc:
            raise _OutputError(exc.strerror or str(exc)) from exc
        return totals


def run_rebuild(args: argparse.Namespace) -> int:
    config = load_config(args)
    parts = args.kept or list(kept_rebuild.PARTS)

    async def act() -> dict[str, int]:
        async with database_pool(config) as pool:
            return await kept_rebuild.rebuild(pool, parts, actor=cli_actor())

    kept = asyncio.run(act())
    print(", ".join(f"{part}: {rows} rows" for part, rows in kept.items()) + " rebuilt")
    return 0


class _OutputError(Exception):
    """The output file could not be written (a usage error: exit 2)."""
