import asyncpg
import pytest

from billing_oss.core.errors import StartupError
from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.citus import BY_ACCOUNT, BY_OWN_KEY, REFERENCE
from billing_oss.server.store.migrate import migrate
from tests.citus.test_triggers import TRIGGERS, unallowed


async def test_all_migrations_applied_once(pool: asyncpg.Pool) -> None:
    names = [name for name, _, _ in migrate_module.available()]
    rows = await pool.fetch("SELECT name FROM schema_migrations ORDER BY name")
    recorded = [r["name"] for r in rows]
    assert recorded == names
    assert await migrate(pool) == []  # idempotent
    # no Citus variant runs on one PostgreSQL, so none is recorded
    assert await pool.fetchval("SELECT count(*) FROM schema_migrations"
                               " WHERE variant_sha256 IS NOT NULL") == 0


def test_each_citus_variant_stands_in_for_a_migration() -> None:
    """A variant runs in place of the migration of its name, under that one's sha256: one
    whose name matches none would never run."""
    names = {name for name, _, _ in migrate_module.available()}
    variants = sorted(migrate_module.CITUS_VARIANTS_DIR.glob("*.sql"))
    assert variants and {v.stem for v in variants} <= names
    on_citus = {name: sql for name, _, sql in migrate_module.available(on_citus=True)}
    assert all(on_citus[v.stem] == v.read_text() for v in variants)
    assert [d for _, d, _ in migrate_module.available(on_citus=True)] == \
        [d for _, d, _ in migrate_module.available()]


async def test_core_tables_exist(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch(
        "SELECT relname FROM pg_class"
        " WHERE relkind IN ('r', 'p') AND relnamespace = 'public'::regnamespace")
    tables = {r["relname"] for r in rows}
    assert {"accounts", "account_identifiers", "tariffs", "tariff_versions", "subscriptions",
            "usage_records", "usage_keys", "charges", "suspense", "source_files",
            "source_offsets"} <= tables


async def test_tables_citus_distributes_carry_only_row_guards(pool: asyncpg.Pool) -> None:
    """The same rule as on Citus (tests/citus/test_triggers.py), on one PostgreSQL: the
    tables a coordinator distributes have no trigger that does work or reads another table."""
    found = {(r[0], r[1], r[2]) for r in await pool.fetch(TRIGGERS)}
    tables = {*BY_ACCOUNT, *(t for t, _ in BY_OWN_KEY), *REFERENCE}
    assert unallowed(found, tables) == set()


async def test_changed_migration_is_refused(pool: asyncpg.Pool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrate_module.available()
    tampered = [(real[0][0], "0" * 64, real[0][2]), *real[1:]]
    monkeypatch.setattr(migrate_module, "available", lambda on_citus=False: tampered)
    with pytest.raises(StartupError, match="changed after it was applied"):
        await migrate(pool)


async def test_month_partitions_are_created_on_demand(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for _ in range(2):  # the second call finds it and does nothing
            await conn.execute("SELECT ensure_month_partition('usage_records', '2026-02-17')")
        await conn.execute(
            "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key, kind)"
            " VALUES ('A1', 1, '2026-02-28T23:59:59Z', 's', 'k', 'voice')")
        where = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM usage_records WHERE usage_id = 1")
        assert where == "usage_records_2026_02"
        with pytest.raises(asyncpg.exceptions.CheckViolationError, match="no partition"):
            await conn.execute(
                "INSERT INTO usage_records (account_id, usage_id, event_time, source, record_key,"
                " kind) VALUES ('A1', 2, '2026-03-01T00:00:00Z', 's', 'k2', 'voice')")
