"""`billing-oss ingest FILE...`: push files through the full pipeline into the database.

For each file it prints the reconciliation (in = charged + suspense + duplicates + filtered
+ pending) and the total charged per currency; a file ingested before is recognised by its
content and changes nothing. Exit status: 0 all charged (or duplicates/filtered/pending),
1 a file could not be read or decoded at all, 3 partial (records in suspense, or a file
malformed part-way).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.adapters.formats.tap3 import rap_kind
from billing_oss.core.contract import FileOutcome
from billing_oss.core.errors import BillingError
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.commands.progress import progress
from billing_oss.server.composition import database_pool, decoders, make_pipeline

# File name endings → format, when --format is not given. BER files (.ber and the like) may be
# TAP3 or 3GPP: their first octet tells (TAP3 DataInterChange is [APPLICATION 1] or
# [APPLICATION 2]: 0x61 TransferBatch, 0x62 Notification).
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".ber": "3gpp",
                  ".cdr": "3gpp", ".asn": "3gpp", ".dat": "3gpp", ".tap": "tap3", ".rap": "tap3"}
TAP3_FIRST_OCTETS = (0x61, 0x62)
EXIT_OK, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 3


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "ingest", help="push usage files through the pipeline into the database",
        description="Decode, validate, dedupe, rate and store usage files exactly once, "
        "then print each file's reconciliation.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path)
    parser.add_argument("--format", choices=sorted({*decoders(), *SUFFIX_FORMATS.values()}),
                        help="file format (default: from the file name)")
    parser.add_argument("--source", default="file",
                        help="source name records are deduplicated under (default: file)")
    parser.add_argument("--sequence", type=int, help="the file's sequence number (one file)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    formats = [args.format or _guess_format(path) for path in args.files]
    return asyncio.run(_ingest_all(args, config, formats))


def _guess_format(path: Path) -> str:
    """By name ending; BER files and unknown endings by their first octet."""
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt not in (None, "3gpp"):
        return fmt
    try:
        with path.open("rb") as f:
            head = f.read(1)
    except OSError:
        head = b""
    if head and head[0] in TAP3_FIRST_OCTETS:
        return "tap3"
    if fmt is None and head[:1] == b"{":
        return "jsonl"
    if fmt is None:
        raise BillingError(f"{path}: cannot tell the format from the name; give --format")
    return fmt


async def _ingest_all(args: argparse.Namespace, config: Any, formats: list[str]) -> int:
    status = EXIT_OK
    async with database_pool(config) as pool:
        pipeline = make_pipeline(config, pool)
        for path, fmt in zip(args.files, formats, strict=True):
            if not path.is_file():
                print(f"billing-oss ingest: {path}: no such file", file=sys.stderr)
                status = max(status, EXIT_BAD_INPUT)
                continue
            if fmt == "tap3" and (rap := rap_kind(path)) is not None:
                print(f"billing-oss ingest: {path}: RAP file: handled by settlement ({rap}); "
                      "kept, not ingested", file=sys.stderr)
                continue
            with progress(str(path), "records") as report:
                outcome = await pipeline.ingest_file(
                    path, source=args.source, format=fmt, sequence_no=args.sequence,
                    progress=report)
            error = await pool.fetchval("SELECT error FROM source_files WHERE "
                                        "source_file_id = $1", outcome.source_file_id)
            _report(args, outcome, error)
            status = max(status, _status(outcome, error))
    return status


def _status(outcome: FileOutcome, error: str | None) -> int:
    if error is not None and outcome.counts.in_ - 1 == 0:
        return EXIT_BAD_INPUT  # nothing in the file could be decoded
    if error is not None or outcome.counts.suspense:
        return EXIT_PARTIAL
    return EXIT_OK


def _report(args: argparse.Namespace, outcome: FileOutcome, error: str | None) -> None:
    if args.json:
        data = msgspec.to_builtins(outcome)
        data["error"] = error
        print(msgspec.json.encode(data).decode(), flush=True)
        return
    c = outcome.counts
    totals = "  ".join(f"{cur} {amount}" for cur, amount in outcome.totals.items()) or "-"
    note = "  (already ingested: nothing changed)" if outcome.replay else ""
    print(f"{outcome.name}: in {c.in_}  charged {c.charged}  suspense {c.suspense}  "
          f"duplicates {c.duplicates}  filtered {c.filtered}  pending {c.pending}  "
          f"total {totals}{note}", flush=True)
    if error:
        print(f"{outcome.name}: malformed: {error}", file=sys.stderr)
