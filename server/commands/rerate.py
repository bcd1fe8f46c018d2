"""`billing-oss rerate --from T --to T [--account A]`: rerate a period under the current
catalog from the shell, with a progress bar (rate, ETA) on a terminal and log lines otherwise.

The job is the same as ``POST /v1/rerate-jobs`` (audited, resumable, correction rows only);
this verb runs it in-process and prints the difference per account. Exit 0 when the job is
done, 3 when some usage could not be rated (left as it was), 1 when the job failed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

import msgspec

from billing_oss.core.errors import ConfigError
from billing_oss.core.money import format_api
from billing_oss.server import rerate
from billing_oss.server.commands.options import add_config_options, load_config, require_catalog
from billing_oss.server.commands.progress import progress
from billing_oss.server.composition import database_pool, make_pipeline

EXIT_OK, EXIT_FAILED, EXIT_PARTIAL = 0, 1, 3


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "rerate", help="rate a period's usage again under the current catalog")
    parser.add_argument("--from", dest="start", required=True, metavar="TIME",
                        help="period start, RFC 3339 (inclusive)")
    parser.add_argument("--to", dest="end", required=True, metavar="TIME",
                        help="period end, RFC 3339 (exclusive)")
    parser.add_argument("--account", help="only this account (default: every account)")
    parser.add_argument("--json", action="store_true", help="JSON output for scripts")
    add_config_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    start, end = _instant(args.start, "--from"), _instant(args.end, "--to")
    if end <= start:
        raise ConfigError("--to must be after --from")
    config = load_config(args)

    async def go() -> rerate.Job:
        async with database_pool(config) as pool:
            await require_catalog(pool)
            job = await rerate.submit(pool, "cli", args.account, start, end)
            pipeline = make_pipeline(config, pool)
            worker = asyncio.create_task(_run_job(pool, pipeline.raters, job.rerate_job_id))
            with progress(f"rerate job {job.rerate_job_id}", "records") as report:
                while not worker.done():
                    now = await rerate.get(pool, job.rerate_job_id)
                    report(now.usage_done, now.usage_total)
                    await asyncio.wait([worker], timeout=0.5)
            await worker
            return await rerate.get(pool, job.rerate_job_id)

    job = asyncio.run(go())
    _print(args, job)
    if job.state != "done":
        return EXIT_FAILED
    return EXIT_PARTIAL if job.usage_failed else EXIT_OK


async def _run_job(pool: Any, raters: Any, job_id: int) -> None:
    """Run queued jobs until ours has finished (a running server may take it instead)."""
    while True:
        ran = await rerate.run_next(pool, raters)
        if (await rerate.get(pool, job_id)).state in ("done", "failed"):
            return
        if ran is None:
            await asyncio.sleep(0.5)


def _instant(text: str, option: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        raise ConfigError(f"{option}: give the offset (e.g. {text}Z)")
    return value.astimezone(dt.UTC)


def _print(args: argparse.Namespace, job: rerate.Job) -> None:
    if args.json:
        print(msgspec.json.encode(job).decode())
        return
    print(f"rerate job {job.rerate_job_id}: {job.state}; usage {job.usage_done} of "
          f"{job.usage_total}, changed {job.usage_changed}, not rated {job.usage_failed}")
    for a in job.accounts:
        print(f"  {a.account_id:<20} {a.currency}  before {format_api(a.before_micros)}  "
              f"after {format_api(a.after_micros)}  "
              f"difference {format_api(a.after_micros - a.before_micros)}")
    if job.error:
        print(f"error: {job.error}", file=sys.stderr)


