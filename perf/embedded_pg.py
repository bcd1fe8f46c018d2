"""The PostgreSQL a benchmark runs on: ``--database-url`` (default
``BILLING_OSS_TEST_DATABASE_URL``) when given, else a throwaway embedded server, as the
README's commands use."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate

T = TypeVar("T")


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"),
                        help="a server to measure on (default: an embedded one)")


def run(main: Callable[[str], Coroutine[Any, Any, T]], database_url: str | None) -> T:
    """``main(url)`` on ``database_url``, or on an embedded server deleted afterwards, with
    the settings ``serve`` gives its own (``server.store.embedded``): a benchmark measures
    what a user's server would do."""
    if database_url:
        return asyncio.run(main(database_url))
    from billing_oss.server.store.embedded import start_server

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            return asyncio.run(main(server.get_uri()))
        finally:
            server.cleanup()


@asynccontextmanager
async def scratch_pool(dsn: str, prefix: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated database ``<prefix>_<hex>`` of the server at ``dsn``,
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await asyncpg.create_pool(with_database(dsn, name))
        assert pool is not None
        try:
            await migrate(pool)
            yield pool
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
