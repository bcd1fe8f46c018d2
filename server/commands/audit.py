"""`billing-oss audit verify`: recompute the audit log's hash chain and report tampering.

Exit 0 when the chain is intact, 1 when a row was changed or deleted (each problem listed).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import msgspec

from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.store import audit


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser("audit", help="check the audit log")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="recompute the hash chain; exit 1 if tampered")
    add_config_options(verify)
    verify.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def check() -> audit.VerifyResult:
        async with database_pool(config) as pool:
            return await audit.verify(pool)

    result = asyncio.run(check())
    if args.json:
        print(msgspec.json.encode(result).decode())
    elif result.ok:
        print(f"audit log intact: {_count(result.rows, 'row')}, hash chain verified")
    else:
        print(f"audit log TAMPERED: {_count(len(result.problems), 'problem')} in "
              f"{_count(result.rows, 'row')}")
        for problem in result.problems:
            print(f"  row {problem.seq}: {problem.reason}")
    return 0 if result.ok else 1


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
