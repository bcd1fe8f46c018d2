"""`billing-oss api-key create|list|revoke`: manage API keys from the shell.

The first admin key has to come from here; later ones can come from the API.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import msgspec

from billing_oss.core.errors import Conflict, InvalidValue, NotFound
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.store import api_keys


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser("api-key", help="manage API keys")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a key; the token is printed once")
    create.add_argument("--role", required=True, choices=api_keys.ROLES)
    create.add_argument("--name", default="", help="who or what the key is for")
    create.add_argument("--source", help="ingest keys: source name their usage is recorded under")
    create.add_argument("--account", help="customer keys: the one account the key sees")
    actions.add_parser("list", help="list keys (never their tokens)")
    revoke = actions.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id")
    for sub in (create, actions.choices["list"], revoke):
        add_config_options(sub)
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def act() -> int:
        async with database_pool(config) as pool:
            if args.action == "create":
                try:
                    new = await api_keys.create_audited(pool, cli_actor(), args.role, args.name,
                                                        args.source, account_id=args.account)
                except InvalidValue as exc:
                    print(f"billing-oss api-key: {exc.message}", file=sys.stderr)
                    return 1
                _print(args, new, f"{new.token}\n(key {new.key.key_id}, role {new.key.role}: "
                       "store the token now, it is not shown again)")
            elif args.action == "list":
                keys = await api_keys.list_keys(pool)
                _print(args, keys, "\n".join(
                    f"{k.key_id}  {k.role:<8} {k.name or '-':<20} "
                    f"{'account ' + k.account_id + '  ' if k.account_id else ''}"
                    f"{'revoked ' + (k.revoked_at or '') if k.revoked_at else 'active'}"
                    for k in keys) or "no keys")
            else:
                try:
                    await api_keys.revoke_audited(pool, cli_actor(), args.key_id)
                except (NotFound, Conflict):
                    print(f"billing-oss api-key: no active key {args.key_id}", file=sys.stderr)
                    return 1
                _print(args, {"revoked": args.key_id}, f"revoked {args.key_id}")
        return 0

    return asyncio.run(act())


def _print(args: argparse.Namespace, data: object, text: str) -> None:
    print(msgspec.json.encode(data).decode() if args.json else text)
