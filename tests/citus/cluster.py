"""Databases spanning a Citus cluster, for the ``citus`` tests and ``perf/bench_scale.py``.

Citus does not create databases on its workers, so this does what
``../shared/citus/cluster.sh`` does for ``postgres``: the same database on every worker with
the extension, then the coordinator's own with its nodes registered.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg

from billing_oss.server.store.dsn import with_database


def _node_dsn(coordinator: str, host: str, port: int, database: str) -> str:
    parts = urlsplit(coordinator)
    user = f"{parts.username}@" if parts.username else ""
    if parts.password:
        user = f"{parts.username}:{parts.password}@"
    return f"postgresql://{user}{host}:{port}/{database}"


async def create_citus_database(admin_dsn: str, name: str) -> str:
    """A new database ``name`` spanning the cluster ``admin_dsn`` belongs to; its DSN."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        nodes = await admin.fetch(
            "SELECT nodename, nodeport, groupid FROM pg_dist_node WHERE noderole = 'primary'"
            " AND isactive ORDER BY groupid")
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    workers = [(n["nodename"], n["nodeport"]) for n in nodes if n["groupid"] != 0]
    coordinator = next(((n["nodename"], n["nodeport"]) for n in nodes if n["groupid"] == 0),
                       None)
    for host, port in workers:
        conn = await asyncpg.connect(_node_dsn(admin_dsn, host, port, "postgres"))
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(_node_dsn(admin_dsn, host, port, name))
        try:
            await conn.execute("CREATE EXTENSION citus")
        finally:
            await conn.close()
    dsn = with_database(admin_dsn, name)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE EXTENSION citus")
        if coordinator is None:
            parts = urlsplit(admin_dsn)
            coordinator = (parts.hostname or "127.0.0.1", parts.port or 5432)
        await conn.execute("SELECT citus_set_coordinator_host($1, $2)", *coordinator)
        for host, port in workers:
            await conn.execute("SELECT citus_add_node($1, $2)", host, port)
    finally:
        await conn.close()
    return dsn


async def drop_citus_database(admin_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        nodes = await admin.fetch(
            "SELECT nodename, nodeport FROM pg_dist_node WHERE groupid <> 0")
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    for node in nodes:
        conn = await asyncpg.connect(
            _node_dsn(admin_dsn, node["nodename"], node["nodeport"], "postgres"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
