"""`billing-oss catalog load FILE`: validate a catalog (JSON or TOML) and store it.

A catalog holds tariffs and accounts, and what invoicing needs: products, tax rates and
discounts (see ``server.catalog.billing``). Published tariff versions are immutable: loading
the same catalog again changes nothing, and a version whose content changed under the same
effective date is refused; products, tax rate periods and discounts are replaced by the
file's definition. Errors name the JSON path of what is wrong, all of them up to a limit
(exit status 1). The load is
audited (``cli:<user>``). Running pipelines pick the new catalog up at their next batch.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

from billing_oss.server.catalog.problems import LIMIT, catalog_problems
from billing_oss.server.commands.options import add_config_options, cli_actor, load_config
from billing_oss.server.composition import database_pool, read_catalog_file, validate_catalog
from billing_oss.server.store import catalog_repo


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser("catalog", help="manage the catalog")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = actions.add_parser("load", help="validate a catalog file and store it")
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument("--json", action="store_true", help="JSON output for scripts")
    add_config_options(load)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    catalog = read_catalog_file(args.file)
    # Every problem at once (up to a limit), before any database is touched.
    problems = catalog_problems(catalog, validate_catalog)
    if problems:
        for problem in problems:
            print(f"billing-oss catalog: {args.file}: {problem.message}", file=sys.stderr)
        more = " (the first ones; fix them and load again)" if len(problems) >= LIMIT else ""
        print(f"billing-oss catalog: {args.file}: {len(problems)} "
              f"problem{'s' if len(problems) != 1 else ''}{more}; nothing stored",
              file=sys.stderr)
        return 1
    checked = validate_catalog(catalog)
    config = load_config(args)

    async def load() -> catalog_repo.LoadResult:
        async with database_pool(config) as pool:
            return await catalog_repo.load_catalog(pool, catalog, billing=checked.billing,
                                                   actor=cli_actor())

    result = asyncio.run(load())
    if args.json:
        print(msgspec.json.encode(msgspec.structs.asdict(result)).decode())
    else:
        print(f"{args.file}: {result.tariffs} tariffs, {result.versions_added} new versions, "
              f"{result.accounts_added} new accounts, {result.products_changed} products, "
              f"{result.tax_rates_changed} tax rates, {result.discounts_changed} discounts "
              "added or changed")
    return 0
