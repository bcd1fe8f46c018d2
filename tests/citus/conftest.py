"""A database of its own on a Citus cluster per test (``tests/citus/cluster.py``), beside one
on plain PostgreSQL; both dropped afterwards.

The coordinator is ``BILLING_OSS_CITUS_URL`` (``./run.sh citus`` starts a one-box cluster and
sets it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate
from tests.citus.cluster import create_citus_database, drop_citus_database


@pytest.fixture(scope="session")
def citus_admin_dsn() -> str:
    dsn = os.environ.get("BILLING_OSS_CITUS_URL")
    if not dsn:
        pytest.fail("BILLING_OSS_CITUS_URL is not set: run these tests with ./run.sh citus, or "
                    "set it to a Citus coordinator's DSN (see the README's Scale-out section)")
    return dsn


@pytest.fixture
async def citus_url(citus_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh Citus database (coordinator DSN), not migrated yet."""
    name = f"c_{uuid.uuid4().hex[:12]}"
    dsn = await create_citus_database(citus_admin_dsn, name)
    try:
        yield dsn
    finally:
        await drop_citus_database(citus_admin_dsn, name)


@pytest.fixture
async def plain_url(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database on one plain PostgreSQL, the reference run."""
    name = f"p_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(pg_admin_dsn, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def citus_pool(citus_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated Citus database."""
    pool = await asyncpg.create_pool(citus_url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    assert pool is not None
    await migrate(pool)
    try:
        yield pool
    finally:
        await pool.close()
