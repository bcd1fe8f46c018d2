"""`billing-oss payment mandate|collect`: store an account's SEPA mandate, and write a
pain.008 direct-debit batch of what mandated accounts owe (rules in
``server.collections.direct_debit``). A bad IBAN or BIC is one line naming it, exit 1; a
missing creditor identifier is a configuration error, exit 2."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.core.errors import ConfigError, InvalidRequest
from billing_oss.server.collections import direct_debit
from billing_oss.server.collections.direct_debit import Batch
from billing_oss.server.collections.model import Mandate
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool


def add_actions(actions: Any, date: Any) -> None:
    mandate = actions.add_parser("mandate", help="store an account's SEPA direct-debit mandate")
    mandate.add_argument("--account", required=True, metavar="ID")
    mandate.add_argument("--mandate-id", required=True, metavar="REF",
                         help="the mandate's unique reference")
    mandate.add_argument("--iban", required=True)
    mandate.add_argument("--bic", help="the debtor's bank (optional in SEPA)")
    mandate.add_argument("--signed", type=date, required=True, metavar="YYYY-MM-DD")
    mandate.add_argument("--sequence", choices=direct_debit.SEQUENCE_TYPES, default="FRST",
                         help="sequence type of the next collection (default FRST)")
    collect = actions.add_parser(
        "collect", help="write a SEPA pain.008 batch of mandated accounts' open invoices")
    collect.add_argument("--due-by", type=date, required=True, metavar="YYYY-MM-DD",
                         help="collect invoices due on or before this date")
    collect.add_argument("--collection-date", type=date, metavar="YYYY-MM-DD",
                         help="when the bank debits (default: tomorrow, UTC)")
    collect.add_argument("-o", "--output", required=True, metavar="FILE.xml")
    for sub in (mandate, collect):
        sub.add_argument("--json", action="store_true", help="JSON output for scripts")
        add_config_options(sub)


def run_mandate(args: argparse.Namespace) -> int:
    config = load_config(args)
    given = Mandate(account_id=args.account, mandate_id=args.mandate_id, iban=args.iban,
                    bic=args.bic, signed_on=args.signed, sequence_type=args.sequence)

    async def main() -> Mandate:
        async with database_pool(config) as pool:
            return await direct_debit.put_mandate(pool, cli_actor(), given)

    try:
        stored = asyncio.run(main())
    except InvalidRequest as exc:
        print(f"billing-oss payment: {_option(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(msgspec.json.encode(stored).decode())
    else:
        print(f"mandate {stored.mandate_id}: account {stored.account_id}, IBAN {stored.iban}"
              f"{', BIC ' + stored.bic if stored.bic else ''}, signed {stored.signed_on}, "
              f"next {stored.sequence_type}")
    return 0


def run_collect(args: argparse.Namespace) -> int:
    config = load_config(args)
    creditor = direct_debit.creditor_from(config)
    on = args.collection_date or dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    output = Path(args.output)
    if not output.parent.is_dir():
        raise ConfigError(f"-o {args.output}: no such directory")

    async def main() -> Batch | None:
        async with database_pool(config) as pool:
            return await direct_debit.collect(pool, cli_actor(), creditor, args.due_by, on)

    try:
        batch = asyncio.run(main())
    except InvalidRequest as exc:
        print(f"billing-oss payment: {_option(exc)}", file=sys.stderr)
        return 1
    if batch is None:
        print(f"nothing to collect: no mandated account owes an invoice due by {args.due_by}",
              file=sys.stderr if args.json else sys.stdout)
        if args.json:
            print("null")
        return 0
    output.write_text(batch.document, encoding="utf-8")
    if args.json:
        print(msgspec.json.encode(msgspec.structs.replace(batch, document="")).decode())
    else:
        print(f"{args.output}: SEPA batch {batch.batch_id} ({batch.message_id}), "
              f"{batch.transactions} debit{'s' if batch.transactions != 1 else ''}, "
              f"{batch.total} EUR, collected on "
              f"{batch.collection_date}")
    return 0


def _option(exc: InvalidRequest) -> str:
    if not exc.errors:
        return exc.message
    field = exc.errors[0]["path"].removeprefix("$.")
    option = {"iban": "--iban", "bic": "--bic", "account_id": "--account",
              "sequence_type": "--sequence"}.get(field, field)
    return f"{option}: {exc.errors[0]['message']}"
