"""`billing-oss ingest FILE...`: push files through the full pipeline into the database.

For each file it prints the reconciliation (in = charged + suspense + duplicates + filtered
+ pending) and the total charged per currency; a file ingested before is recognised by its
content and changes nothing, unless ``--reprocess`` reopens it (only a file none of whose
records was charged: read with the wrong format, say). Exit status: 0 all charged (or
duplicates/filtered/pending), 1 a file could not be read or decoded at all, 3 partial
(records in suspense, or a file malformed part-way).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from billing_oss.adapters.formats.registry import get as get_format
from billing_oss.adapters.formats.registry import guess, names
from billing_oss.core.contract import FileOutcome
from billing_oss.server.commands.options import (
    add_config_options,
    cli_actor,
    load_config,
    require_catalog,
)
from billing_oss.server.commands.progress import progress
from billing_oss.server.composition import database_pool, make_pipeline
from billing_oss.server.pipeline.files import file_sha256
from billing_oss.server.pipeline.retry import RETRY_MESSAGE, with_retries
from billing_oss.server.store import files_repo, reprocess_repo

EXIT_OK, EXIT_BAD_INPUT, EXIT_PARTIAL = 0, 1, 3


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "ingest", help="push usage files through the pipeline into the database",
        description="Decode, validate, dedupe, rate and store usage files exactly once, "
        "then print each file's reconciliation.")
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path)
    parser.add_argument("--format", choices=sorted(names()),
                        help="file format (default: from the file name and its first bytes)")
    parser.add_argument("--source", default="file",
                        help="source name records are deduplicated under (default: file)")
    parser.add_argument("--sequence", type=int, help="the file's sequence number (one file)")
    parser.add_argument("--reprocess", action="store_true",
                        help="ingest again a file ingested before whose records all went to "
                        "suspense (e.g. read with the wrong --format): its open suspense "
                        "records are discarded, and the whole is audited")
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    formats = [args.format or guess(path) for path in args.files]
    return asyncio.run(_ingest_all(args, config, formats))


async def _ingest_all(args: argparse.Namespace, config: Any, formats: list[str]) -> int:
    with _retries_summarised() as retries:
        status = await _ingest_files(args, config, formats)
    if retries.count:
        print(f"billing-oss ingest: the database connection failed {retries.count} time"
              f"{'s' if retries.count > 1 else ''}; each time the work was retried",
              file=sys.stderr)
    return status


async def _ingest_files(args: argparse.Namespace, config: Any, formats: list[str]) -> int:
    asyncio.get_running_loop().set_exception_handler(_quiet_lost_connections)
    status = EXIT_OK
    async with database_pool(config) as pool:
        await require_catalog(pool)
        pipeline = make_pipeline(config, pool)
        for path, fmt in zip(args.files, formats, strict=True):
            if not path.is_file():
                print(f"billing-oss ingest: {path}: no such file", file=sys.stderr)
                status = max(status, EXIT_BAD_INPUT)
                continue
            not_usage = get_format(fmt).not_usage
            if not_usage is not None and (why := not_usage(path)) is not None:
                print(f"billing-oss ingest: {path}: {why}; kept, not ingested", file=sys.stderr)
                continue
            if args.reprocess:
                sha, _ = await file_sha256(path)
                await reprocess_repo.reopen(pool, source=args.source, sha256=sha, fmt=fmt,
                                            actor=cli_actor())
            with progress(str(path), "records") as report:
                outcome = await pipeline.ingest_file(
                    path, source=args.source, format=fmt, sequence_no=args.sequence,
                    progress=report)
            error = await with_retries(
                functools.partial(files_repo.error_of, pool, outcome.source_file_id),
                attempts=config.pipeline.write_attempts,
                backoff_s=config.pipeline.retry_backoff_s, what=str(path))
            _report(args, outcome, error)
            status = max(status, _status(outcome, error))
    return status


class _RetryCounter(logging.Filter):
    """Counts the pipeline's retry warnings instead of printing each: a run that survived
    lost connections says so in one line at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == RETRY_MESSAGE:
            self.count += 1
            return False
        return True


@contextlib.contextmanager
def _retries_summarised() -> Iterator[_RetryCounter]:
    counter = _RetryCounter()
    loggers = [logging.getLogger(name) for name in _RETRYING_LOGGERS]
    for logger in loggers:
        logger.addFilter(counter)
    try:
        yield counter
    finally:
        for logger in loggers:
            logger.removeFilter(counter)


_RETRYING_LOGGERS = ("billing_oss.server.pipeline.files", "billing_oss.server.pipeline.retry")


def _quiet_lost_connections(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncpg leaves a future holding "connection lost" behind when the server drops a
    connection mid-query; the query itself failed and was retried, so that echo is no news."""
    exc = context.get("exception")
    if isinstance(exc, ConnectionError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return
    loop.default_exception_handler(context)


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
    note = "  (already ingested: nothing changed" if outcome.replay else ""
    if outcome.replay:
        stuck = c.charged == c.duplicates == c.filtered == c.pending == 0 and c.suspense
        note += ("; if it was read with the wrong format, --reprocess --format F reads it "
                 "again)" if stuck else ")")
    print(f"{outcome.name}: in {c.in_}  charged {c.charged}  suspense {c.suspense}  "
          f"duplicates {c.duplicates}  filtered {c.filtered}  pending {c.pending}  "
          f"total {totals}{note}", flush=True)
    if error:
        print(f"{outcome.name}: malformed: {error}", file=sys.stderr)
