"""Options and set-up shared by every verb that touches the database."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

import asyncpg
import msgspec

from billing_oss.core.errors import ConfigError
from billing_oss.server import config as config_module
from billing_oss.server import logs
from billing_oss.server.store import catalog_repo, dsn
from billing_oss.server.store.embedded import DEFAULT_DATA_DIR, find_data_dir

# Verbs whose log lines are their output: the server narrates its life, others answer.
NARRATING_VERBS = frozenset({"serve"})


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--database-url", metavar="DSN",
                        help="PostgreSQL DSN instead of the embedded server "
                        "(database.url, env BILLING_OSS_DATABASE_URL)")
    parser.add_argument("--init", action="store_true",
                        help="create billing-oss's tables even in a database that holds "
                        "other tables")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="log lines on stderr (default at a terminal: warnings only, "
                        "except for serve)")


def load_config(args: argparse.Namespace) -> config_module.Config:
    """The merged configuration (flags win), with logging configured from it, the database
    URL checked and the embedded server's data directory found."""
    overrides = {
        "database.url": getattr(args, "database_url", None),
        "database.init": True if getattr(args, "init", False) else None,
        "log.level": getattr(args, "log_level", None),
        "http.host": getattr(args, "host", None),
        "http.port": getattr(args, "port", None),
    }
    config = config_module.load(getattr(args, "config", None), overrides=overrides)
    logs.configure(_log_level(args, config), config.log.format)
    if config.database.url:
        dsn.check(config.database.url)
        return config
    data_dir, exists = find_data_dir(config.database.data_dir)
    # A worker's database is its supervisor's (``workers.supervised``), never one found here.
    if not exists and getattr(args, "worker_index", None) is None:
        where = ("database.data_dir" if config.database.data_dir != DEFAULT_DATA_DIR
                 else f"no database found from {os.getcwd()} upward")
        print(f"billing-oss: {where}: creating a new database in {data_dir}", file=sys.stderr)
    database = msgspec.structs.replace(config.database, data_dir=str(data_dir))
    return msgspec.structs.replace(config, database=database)


def _log_level(args: argparse.Namespace, config: config_module.Config) -> str:
    """At a terminal a verb's answer is what the user reads: its info lines (the embedded
    server starting, migrations) would bury it. Asked for (flag or environment), they show."""
    asked = getattr(args, "log_level", None) or os.environ.get("BILLING_OSS_LOG_LEVEL")
    if asked or getattr(args, "verb", None) in NARRATING_VERBS or not sys.stderr.isatty():
        return config.log.level
    return "warning" if config.log.level in ("debug", "info") else config.log.level


async def require_catalog(pool: asyncpg.Pool) -> None:
    """Rating needs tariffs: say so, rather than fail inside the rater, when there are none."""
    if not await catalog_repo.has_tariffs(pool):
        raise ConfigError("this database holds no catalog to rate with; load one first: "
                          "billing-oss catalog load FILE (the demo: config/demo-catalog.json)")


def cli_actor() -> str:
    """How the audit log names a change made from the shell: ``cli:<user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"
