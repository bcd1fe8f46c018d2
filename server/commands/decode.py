"""`billing-oss decode --format {3gpp,tap3,csv} FILE`: print the normalised records.

One JSON object per record on stdout (``UsageRecord`` fields); per-record problems on
stderr with their offset; ``--summary`` prints counts and totals instead. Exit 1 when the
file is malformed (the message names the byte offset or line), after printing every
record decoded before the damage.
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

from billing_oss.adapters.formats import FORMATS, open_file
from billing_oss.core.errors import DecodeError


def register(verbs: Any) -> None:
    p = verbs.add_parser("decode", help="decode a usage file and print normalised records")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--source", default="cli", help="source name stamped on records")
    p.add_argument("--summary", action="store_true", help="print counts and totals only")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="format option (e.g. timezone=Europe/Paris, framing=raw)")
    p.add_argument("file", type=Path)
    p.set_defaults(handler=run)


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise DecodeError(f"--option {pair!r}: expected KEY=VALUE")
        out[key] = json.loads(value) if value[:1] in "[{" else value
    return out


def run(args: argparse.Namespace) -> int:
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    kinds: Counter[str] = Counter()
    totals = {"duration_s": 0, "volume_up": 0, "volume_down": 0}
    charge = Decimal(0)
    problems = 0
    error: DecodeError | None = None
    if not args.file.is_file():
        raise DecodeError(f"{args.file}: no such file")
    with open_file(args.format, args.file, source=args.source,
                   options=_options(args.option)) as decoded:
        try:
            for batch in decoded.batches():
                for problem in batch.problems:
                    problems += 1
                    print(f"record {problem.index}: {problem.reason}: {problem.detail}",
                          file=sys.stderr)
                for rec in batch.records:
                    kinds[rec.kind] += 1
                    totals["duration_s"] += rec.duration_s or 0
                    totals["volume_up"] += rec.volume_up or 0
                    totals["volume_down"] += rec.volume_down or 0
                    if rec.charge is not None:
                        charge += Decimal(rec.charge)
                    if not args.summary:
                        out.write(encoder.encode(rec) + b"\n")
        except DecodeError as exc:
            error = exc
        except BrokenPipeError:  # stdout closed early (| head): stop quietly
            sys.stderr.close()
            return 0
        out.flush()
        if args.summary:
            summary = {
                "format": args.format, "file": str(args.file),
                "records": sum(kinds.values()), "problems": problems, "by_kind": dict(kinds),
                **totals, "charge": str(charge),
                "info": msgspec.to_builtins(decoded.info),
            }
            print(json.dumps(summary, indent=2, default=str))
    if error is not None:
        print(f"billing-oss decode: {args.file}: {error.message}", file=sys.stderr)
        return 1
    return 0
