"""`billing-oss files list [--gaps | --alarms]`: the received-file ledger, its gaps, its alarms.

``--gaps`` lists the sequence numbers missing now (the same query as ``GET /v1/files/gaps``:
a gap a later file filled is gone). ``--alarms`` lists the alarms raised as files arrived:
``gap`` (numbers skipped then), ``repeat`` (content received again under another name) and
``reused`` (a number received again with different content).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import msgspec

from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.store import files_repo


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser("files", help="received files")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list received files (newest last)")
    listing.add_argument("--source", help="only this source")
    shown = listing.add_mutually_exclusive_group()
    shown.add_argument("--gaps", action="store_true",
                       help="list the sequence numbers missing now, per source, instead")
    shown.add_argument("--alarms", action="store_true",
                       help="list the sequence alarms raised (gaps, repeats, reused numbers)")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_config_options(listing)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def act() -> int:
        async with database_pool(config) as pool:
            lines = await render(pool, source=args.source, gaps=args.gaps, alarms=args.alarms,
                                 as_json=args.json, limit=args.limit)
        empty = "no gaps" if args.gaps else "no alarms" if args.alarms else "no files"
        print("\n".join(lines) if lines else empty)
        return 0

    return asyncio.run(act())


async def render(pool: asyncpg.Pool, *, source: str | None, gaps: bool = False,
                 alarms: bool = False, as_json: bool = False, limit: int = 1000) -> list[str]:
    if gaps:
        missing = await files_repo.gaps(pool, source=source, limit=limit)
        if as_json:
            return [msgspec.json.encode(g).decode() for g in missing]
        return [f"{g.source:<12} {g.partner or '-':<8} "
                f"{_missing_run(g.first_missing, g.last_missing)}  (between files "
                f"{g.after_file_id} and {g.before_file_id})" for g in missing]
    if alarms:
        rows = await files_repo.alarm_rows(pool, source=source, limit=limit)
        text = [f"{r['raised_at']:%Y-%m-%d %H:%M:%S}  {r['source']:<12} {r['kind']:<7} "
                f"{r['name']}  {_missing(r) or r['detail']}" for r in rows]
    else:
        rows = await files_repo.file_rows(pool, source=source, limit=limit)
        text = [f"{r['source_file_id']:>8}  {r['source']:<12} {r['name']:<32} "
                f"seq {r['sequence_no'] if r['sequence_no'] is not None else '-':<8} "
                f"{r['state']:<7} in {r['count_in']} charged {r['count_charged']} "
                f"suspense {r['count_suspense']} dup {r['count_duplicates']}" for r in rows]
    if as_json:
        return [msgspec.json.encode({k: _plain(v) for k, v in dict(r).items()}).decode()
                for r in rows]
    return text


def _missing(row: asyncpg.Record) -> str:
    if row["first_missing"] is None:
        return ""
    return _missing_run(row["first_missing"], row["last_missing"])


def _missing_run(first: int, last: int) -> str:
    return f"missing {first}" if first == last else f"missing {first}..{last}"


def _plain(value: object) -> object:
    return value.isoformat() if hasattr(value, "isoformat") else value
