"""Options and set-up shared by every verb that touches the database."""

from __future__ import annotations

import argparse
import getpass
import os

from billing_oss.server import config as config_module
from billing_oss.server import logs


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--database-url", metavar="DSN",
                        help="PostgreSQL DSN instead of the embedded server "
                        "(database.url, env BILLING_OSS_DATABASE_URL)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def load_config(args: argparse.Namespace) -> config_module.Config:
    """The merged configuration (flags win), with logging configured from it."""
    overrides = {
        "database.url": getattr(args, "database_url", None),
        "log.level": getattr(args, "log_level", None),
        "http.host": getattr(args, "host", None),
        "http.port": getattr(args, "port", None),
    }
    config = config_module.load(getattr(args, "config", None), overrides=overrides)
    logs.configure(config.log.level, config.log.format)
    return config


def cli_actor() -> str:
    """How the audit log names a change made from the shell: ``cli:<user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = f"uid{os.getuid()}"
    return f"cli:{user}"
