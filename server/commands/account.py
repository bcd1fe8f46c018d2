"""`billing-oss account show|set`: read an account, and change its invoice settings.

``set --itemised-invoice on`` makes the account's invoice PDFs carry the list of each call
and session they bill; ``off`` (the default) keeps the usage summary only. Changes are the
API's (``PATCH /v1/accounts/{id}``), audited as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import msgspec

from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.store import accounts_repo
from billing_oss.server.store.accounts_repo import Account


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "account", help="read an account; change its invoice settings")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="an account's fields")
    show.add_argument("account_id", metavar="ID")
    change = actions.add_parser("set", help="change an account's invoice settings")
    change.add_argument("account_id", metavar="ID")
    change.add_argument("--itemised-invoice", required=True, choices=("on", "off"),
                        help="on: invoice PDFs list each call and session they bill")
    for sub in (show, change):
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def act() -> Account:
        async with database_pool(config) as pool:
            if args.action == "set":
                return await accounts_repo.update(
                    pool, cli_actor(), args.account_id,
                    {"itemised_invoice": args.itemised_invoice == "on"})
            return await accounts_repo.get(pool, args.account_id)

    account = asyncio.run(act())
    if args.json:
        print(msgspec.json.encode(account).decode())
    else:
        print(f"{account.account_id}  {account.name or '-'}  {account.status}  "
              f"{account.currency}  billing day {account.billing_day} ({account.timezone})  "
              f"itemised invoice {'on' if account.itemised_invoice else 'off'}")
    return 0
