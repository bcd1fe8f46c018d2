"""`billing-oss decode --format FORMAT FILE`: print the normalised records.

One JSON object per record on stdout (``UsageRecord`` fields); per-record problems on
stderr with their byte offset (text formats: line); ``--summary`` prints counts and totals
instead.
Exit status (DESIGN.md §6): 0 only when every record decoded; 3 when some were rejected,
the file broke part-way after records, or it is shorter than its header declares; 1 when
nothing could be read. ``--option KEY=VALUE`` takes the format's typed options
(``--list-options FORMAT`` lists them; a bad one exits 2 naming it). The formats are the
registered ones (``adapters.formats.registry``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.adapters.formats import RecordProblem, open_file
from billing_oss.adapters.formats.options import describe, parse_options, split_pairs
from billing_oss.adapters.formats.registry import get, names
from billing_oss.core.errors import ConfigError, DecodeError

EXIT_OK, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 3


def register(verbs: Any) -> None:
    formats = names()
    p = verbs.add_parser(
        "decode", help="decode a usage file and print normalised records",
        description="Decode a usage file and print one JSON object per record. Exit 0 when "
        "every record decoded, 3 when some were rejected or the file is incomplete or broke "
        "part-way, 1 when nothing could be read, 2 on a bad option.",
        epilog="\n\n".join(describe(f) for f in formats),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=formats)
    p.add_argument("--source", default="cli", help="source name stamped on records")
    p.add_argument("--summary", action="store_true", help="print counts and totals only")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a format option (listed below), e.g. timezone=Europe/Paris, "
                   "check_audit=false")
    p.add_argument("--list-options", metavar="FORMAT", choices=formats,
                   help="list the options of FORMAT and exit")
    p.add_argument("file", type=Path, nargs="?")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.list_options:
        print(describe(args.list_options))
        return EXIT_OK
    if args.format is None or args.file is None:
        raise ConfigError("give --format FORMAT and a FILE (or --list-options FORMAT)")
    options = split_pairs(args.option)
    parse_options(args.format, options)  # a bad option exits 2 before the file is read
    if not args.file.is_file():
        raise DecodeError(f"{args.file}: no such file")
    return _decode(args, options)


class _Tally:
    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.totals = {"duration_s": 0, "volume_up": 0, "volume_down": 0}
        self.charge = Decimal(0)
        self.problems = 0

    @property
    def records(self) -> int:
        return sum(self.kinds.values())


def _decode(args: argparse.Namespace, options: dict[str, str]) -> int:
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    tally = _Tally()
    error: DecodeError | None = None
    try:
        decoded = open_file(args.format, args.file, source=args.source, options=options)
    except DecodeError as exc:  # the header already: nothing read
        print(f"billing-oss decode: {args.file}: {exc.message}", file=sys.stderr)
        return exit_status(0, 0, exc)
    with decoded:
        try:
            for batch in decoded.batches():
                for problem in batch.problems:
                    tally.problems += 1
                    print(_problem_line(problem, args.format), file=sys.stderr)
                for rec in batch.records:
                    tally.kinds[rec.kind] += 1
                    tally.totals["duration_s"] += rec.duration_s or 0
                    tally.totals["volume_up"] += rec.volume_up or 0
                    tally.totals["volume_down"] += rec.volume_down or 0
                    if rec.charge is not None:
                        tally.charge += Decimal(rec.charge)
                    if not args.summary:
                        out.write(encoder.encode(rec) + b"\n")
        except DecodeError as exc:
            error = exc
        except BrokenPipeError:  # stdout closed early (| head): stop quietly
            sys.stderr.close()
            return EXIT_OK
        out.flush()
        if args.summary:
            summary = {
                "format": args.format, "file": str(args.file),
                "records": tally.records, "problems": tally.problems,
                "by_kind": dict(tally.kinds), **tally.totals, "charge": str(tally.charge),
                "info": msgspec.to_builtins(decoded.info),
                "error": error.message if error is not None else None,
            }
            print(json.dumps(summary, indent=2, default=str))
    if error is not None:
        print(f"billing-oss decode: {args.file}: {error.message}", file=sys.stderr)
    return exit_status(tally.records, tally.problems, error)


def exit_status(records: int, problems: int, error: DecodeError | None) -> int:
    """0 every record decoded; 3 some rejected, incomplete or broken part-way; 1 nothing read."""
    if error is not None and error.detail.get("incomplete"):
        return EXIT_PARTIAL
    if error is None and problems == 0:
        return EXIT_OK
    return EXIT_PARTIAL if records else EXIT_BAD_INPUT


def _problem_line(problem: RecordProblem, format: str) -> str:
    where = f"{get(format).located_by} {problem.offset}"
    detail = problem.detail.removeprefix(f"{where}: ")
    return f"{where} (record {problem.index + 1}): {problem.reason}: {detail}"
