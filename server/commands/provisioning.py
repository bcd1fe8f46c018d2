"""`billing-oss provisioning send --account ID --action suspend|resume|terminate --reason
TEXT`: an operator's provisioning command. It joins the account's outbox stream, and the
server's publisher (``[provisioning]``) sends it over MQTT in order after any before it."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from billing_oss.core.errors import NotFound
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.integrations import provisioning


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser(
        "provisioning", help="provisioning commands to network elements (MQTT)")
    actions = parser.add_subparsers(dest="action_verb", required=True)
    send = actions.add_parser("send", help="send a command for one account")
    send.add_argument("--account", required=True, metavar="ID")
    send.add_argument("--action", required=True, choices=("suspend", "resume", "terminate"))
    send.add_argument("--reason", required=True)
    add_config_options(send)
    send.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)

    async def main() -> str:
        async with database_pool(config) as pool:
            return await provisioning.send(pool, cli_actor(), args.account, args.action,
                                           args.reason)

    try:
        event_id = asyncio.run(main())
    except NotFound as exc:
        print(f"billing-oss provisioning send: {exc.message}", file=sys.stderr)
        return 1
    prefix = config.provisioning.topic_prefix
    print(f"{event_id}: {args.action} queued for {prefix}/{args.account}/command")
    return 0
