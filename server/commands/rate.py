"""`billing-oss rate --catalog FILE [--records FILE|-]`: rate JSON-lines records offline.

Each input line is a normalised record (DESIGN.md §5b; ``source`` may be left out: rating
does not use it, and such a record is rated as ``cli``'s); each output line is either
``{"record_key", "amount", "currency", "zone", "band", "tariff_version"}`` (amount a decimal
string) or ``{"record_key", "error"}`` with a ``Reason`` code. A line that is not a valid
record gives ``{"record_key": null, "error": "MALFORMED", "line": N, "message": ...}``
and rating goes on. Exit status: 0 when every line was charged, 3 when some were not,
1 when none was (and there was at least one line), 2 for a bad catalog or file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from billing_oss.core.errors import CatalogError, ConfigError, Reason
from billing_oss.core.money import format_micros
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog import load_catalog
from billing_oss.server.rating import make_rater

BATCH = 4096
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
DEFAULT_SOURCE = "cli"  # what `decode` stamps on records by default


class RateRecord(UsageRecord, kw_only=True, omit_defaults=True, gc=False):
    """A record to rate: rating does not read ``source``, so one without it is ``cli``'s."""

    source: str = DEFAULT_SOURCE


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "rate", help="rate JSON-lines usage records against a catalog, offline"
    )
    parser.add_argument("--catalog", required=True, type=Path, help="catalog file (JSON or TOML)")
    parser.add_argument(
        "--records", default="-", help="JSON-lines records file, or - for stdin (default)"
    )
    parser.add_argument(
        "--engine",
        choices=("native", "reference"),
        default="native",
        help="rating implementation (the reference is slow; for cross-checking)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        catalog = load_catalog(args.catalog)
    except CatalogError as exc:
        print(f"billing-oss rate: catalog {args.catalog}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    rater = make_rater(catalog, args.engine)
    if args.records == "-":
        return rate_stream(rater, sys.stdin.buffer, sys.stdout.buffer)
    try:
        with open(args.records, "rb") as source:
            return rate_stream(rater, source, sys.stdout.buffer)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.records}: {exc.strerror}") from None


def rate_stream(rater: Rater, source: IO[bytes], sink: IO[bytes]) -> int:
    decoder = msgspec.json.Decoder(RateRecord)
    encoder = msgspec.json.Encoder()
    charged = failed = 0
    for batch in _batches(enumerate(source, start=1)):
        records: list[UsageRecord] = []
        slots: list[dict[str, Any] | None] = []  # None: filled by the rater, in order
        for number, line in batch:
            try:
                records.append(decoder.decode(line))
                slots.append(None)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                slots.append(
                    {
                        "record_key": _key_of(line),
                        "error": Reason.MALFORMED.value,
                        "line": number,
                        "message": str(exc),
                    }
                )
        outcomes = iter(zip(records, rater.rate(records), strict=True))
        out = bytearray()
        for slot in slots:
            line_out = slot if slot is not None else _render(*next(outcomes))
            if "error" in line_out:
                failed += 1
            else:
                charged += 1
            out += encoder.encode(line_out)
            out += b"\n"
        sink.write(out)
    sink.flush()
    if failed == 0:
        return EXIT_OK
    return EXIT_PARTIAL if charged else EXIT_BAD_INPUT


def _batches(lines: Iterable[tuple[int, bytes]]) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for number, line in lines:
        if not line.strip():
            continue
        batch.append((number, line))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _render(record: UsageRecord, outcome: Charge | Failure) -> dict[str, Any]:
    if isinstance(outcome, Charge):
        return {
            "record_key": record.record_key,
            "amount": format_micros(outcome.amount_micros),
            "currency": outcome.currency,
            "zone": outcome.zone,
            "band": outcome.band,
            "tariff_version": outcome.tariff_version,
        }
    return {"record_key": record.record_key, "error": outcome.reason.value}


def _key_of(line: bytes) -> str | None:
    """The record_key of a line that is JSON but not a valid record, if it has one."""
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return None
    key = value.get("record_key") if isinstance(value, dict) else None
    return key if isinstance(key, str) else None
