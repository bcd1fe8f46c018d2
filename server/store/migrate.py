"""Versioned SQL migrations, applied at start in name order, each once, each in a transaction.

Files live in ``server/store/migrations/NNNN_name.sql``. Applied ones are recorded in
``schema_migrations`` with their sha256; a recorded migration whose file changed since is
refused rather than silently diverging. An advisory lock lets several processes start at once.
On a Citus coordinator the tables are then distributed (``server/store/citus.py``), and a file
of ``migrations/citus/`` stands in for the migration of its name: a landed migration is never
edited, so where one holds a statement Citus refuses on tables an earlier release distributed,
its variant makes the same tables, recorded under the original's sha256, the variant's own
beside it (``variant_sha256``) so that a variant changed after a cluster ran it is refused too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from billing_oss.core.errors import ConfigError, StartupError
from billing_oss.server.store import citus
from billing_oss.server.store.pool import Connection

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
CITUS_VARIANTS_DIR = MIGRATIONS_DIR / "citus"
_LOCK_KEY = 0x62696C6C  # "bill": serialises concurrent migrators

log = logging.getLogger(__name__)


def available(on_citus: bool = False) -> list[tuple[str, str, str]]:
    """(name, sha256, sql) for every migration file, in order; ``on_citus``: the sql of its
    Citus variant where it has one, the sha256 still the migration's own."""
    out = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        sql = path.read_text()
        digest = hashlib.sha256(sql.encode()).hexdigest()
        variant = CITUS_VARIANTS_DIR / path.name
        if on_citus and variant.exists():
            sql = variant.read_text()
        out.append((path.stem, digest, sql))
    return out


def variant_digests() -> dict[str, str]:
    """sha256 of each Citus variant, by the name of the migration it stands in for."""
    return {path.stem: hashlib.sha256(path.read_text().encode()).hexdigest()
            for path in sorted(CITUS_VARIANTS_DIR.glob("*.sql"))}


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply pending migrations; return the names applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       name text PRIMARY KEY,
                       sha256 text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            await conn.execute("ALTER TABLE schema_migrations"
                               " ADD COLUMN IF NOT EXISTS variant_sha256 text")
            on_citus = await citus.is_citus(conn)
            if on_citus:
                # Triggers on distributed tables touch only their own account's rows, which
                # live on the same shard (server/store/citus.py).
                await conn.execute("SET citus.enable_unsafe_triggers = on")
            rows = await conn.fetch("SELECT name, sha256, variant_sha256 FROM schema_migrations")
            done = {row["name"]: (row["sha256"], row["variant_sha256"]) for row in rows}
            variants = variant_digests() if on_citus else {}
            for name, digest, sql in available(on_citus):
                if name in done:
                    await _check_applied(conn, name, (digest, variants.get(name)), done[name])
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (name, sha256, variant_sha256)"
                        " VALUES ($1, $2, $3)", name, digest, variants.get(name),
                    )
                applied_now.append(name)
                log.info("migration applied", extra={"fields": {"migration": name}})
            if on_citus:
                await citus.place_tables(conn)
                await conn.execute("RESET citus.enable_unsafe_triggers")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _check_applied(conn: Connection, name: str,
                         files: tuple[str, str | None], recorded: tuple[str, str | None]) -> None:
    """Refuse an applied migration whose file, or whose Citus variant, changed since. A
    variant applied before its sha256 was kept is recorded as it is now (the file the
    cluster has been running since then)."""
    (digest, variant), (was, variant_was) = files, recorded
    if was != digest:
        raise StartupError(f"migration {name} was changed after it was applied; "
                           "write a new migration instead")
    if variant is None or variant == variant_was:
        return
    if variant_was is not None:
        raise StartupError(f"the Citus variant of migration {name} was changed after it was "
                           "applied; write a new migration instead")
    await conn.execute("UPDATE schema_migrations SET variant_sha256 = $2 WHERE name = $1",
                       name, variant)


async def refuse_foreign(pool: asyncpg.Pool, *, init: bool,
                         confirm: Callable[[str], Awaitable[bool]]) -> None:
    """Refuse to migrate a database that holds other tables and no billing-oss schema
    (a wrong URL, someone else's database) unless ``init`` allows it or ``confirm`` (a
    prompt at a terminal) says yes. An empty database, or one of ours, passes."""
    row = await pool.fetchrow(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AS ours, current_database() AS db,"
        " (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN"
        "  ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
        # An extension's own tables (Citus metadata, columnar) are not someone's data.
        "  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
        "  AND d.objid = c.oid AND d.deptype = 'e')) AS tables")
    assert row is not None
    if row["ours"] or row["tables"] == 0 or init:
        return
    question = (f"database {row['db']} holds {row['tables']} tables and no billing-oss schema")
    if await confirm(f"{question}; create billing-oss's tables in it? [y/N] "):
        return
    raise ConfigError(f"{question}: not touching it; check the URL, or pass --init "
                      "(database.init) to create billing-oss's tables there")


async def ask_at_terminal(question: str) -> bool:
    """A yes/no prompt when a person is at the terminal; no one there means no."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False

    def ask() -> bool:
        print(question, end="", file=sys.stderr, flush=True)
        return sys.stdin.readline().strip().lower() in ("y", "yes")

    return await asyncio.to_thread(ask)
