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


def add_kept_options(parser: argparse.ArgumentParser) -> None:
    """``--keep`` (leave the seeded database) or ``--reuse DB`` (measure one left before),
    and the database; ``parse_kept`` refuses them on the embedded server."""
    kept = parser.add_mutually_exclusive_group()
    kept.add_argument("--keep", action="store_true", help="keep the generated database"
                      " (needs --database-url)")
    kept.add_argument("--reuse", metavar="DB", help="a database generated and kept before")
    add_database_url(parser)


def parse_kept(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments; ``--keep`` or ``--reuse`` without a server that outlives the run is a
    usage error (the embedded server is deleted with it, kept databases and all)."""
    args = parser.parse_args()
    if (args.keep or args.reuse) and not args.database_url:
        parser.error("--keep and --reuse need a server that outlives the run: --database-url"
                     " DSN (or BILLING_OSS_TEST_DATABASE_URL); the embedded one is deleted"
                     " after it")
    return args


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
