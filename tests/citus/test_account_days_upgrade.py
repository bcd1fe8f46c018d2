"""Migration 1540 on a Citus cluster that an earlier release migrated and placed, its
``charge_rollups`` distributed already: the original's backfill (GROUPING SETS over the
distributed table) is refused there, so the coordinator runs its variant
(``migrations/citus/``), recorded under the original's sha256. The days it forms from the
compacted rollups are the rows the original forms on one plain PostgreSQL from the same rows,
every grouping set, NULL keys and a tariff included."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing_oss.server.store import migrate as migrate_module
from tests.migrations_before import migrate_before

pytestmark = pytest.mark.citus
COLUMNS = ("account_id, day, service, zone, currency, tariff_version_id, amount_micros,"
           " records, units, compacted, reversals, reversed_micros")
ROWS = [
    ("A1", "2026-02-01", "voice", "national", "EUR", "v1", True),
    ("A1", "2026-02-02", "voice", "roaming", "EUR", "v1", True),
    ("A1", "2026-02-02", "sms", None, "EUR", None, True),
    ("A1", "2026-12-31", "data", "national", "EUR", "v2", True),
    ("A2", "2027-01-01", "voice", "national", "USD", "v2", True),
    ("A2", "2026-03-04", None, None, "USD", None, True),
    ("A3", "2026-03-05", "voice", "national", "EUR", "v1", False),  # a delta: not backfilled
]
DAYS = ("SELECT account_id, year, grouping, service, zone, tariff_version_id, tariff_id,"
        " currency, days::text FROM charge_account_days ORDER BY 1, 2, 3, 4, 5, 6, 7, 8")


async def _days_after_1540(url: str) -> list[tuple[object, ...]]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        await migrate_before(pool, "1540")
    finally:
        await pool.close()
    # Sessions opened after the migration, as test_aging_kept explains.
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4,
                                     server_settings={"timezone": "UTC"})
    try:
        await pool.execute("INSERT INTO tariffs (tariff_id, currency) VALUES ('T', 'EUR')")
        versions = {}
        for name, month in (("v1", 1), ("v2", 6)):
            versions[name] = await pool.fetchval(
                "INSERT INTO tariff_versions (tariff_id, effective_from, definition, sha256)"
                " VALUES ('T', $1, '{}', $2) RETURNING tariff_version_id",
                dt.datetime(2026, month, 1, tzinfo=dt.UTC), name)
        for account, day, service, zone, currency, version, compacted in ROWS:
            await pool.execute(
                f"INSERT INTO charge_rollups ({COLUMNS}) VALUES"
                " ($1, $2, $3, $4, $5, $6, 1000, 1, 60, $7, 0, 0)",
                account, dt.date.fromisoformat(day), service, zone, currency,
                versions[version] if version else None, compacted)
        assert "1540_charge_account_days" in await migrate_module.migrate(pool)
        return [tuple(r) for r in await pool.fetch(DAYS)]
    finally:
        await pool.close()


async def test_1540_upgrades_a_placed_cluster_as_one_postgresql(
        citus_url: str, plain_url: str) -> None:
    on_citus = await _days_after_1540(citus_url)
    assert on_citus == await _days_after_1540(plain_url)
    # A1 2026: 1 + 3 services + 3 zones + 3 versions + 2 tariffs + 4 + 3 + 3 pairs; A2's
    # two years, one row each: 8 sets each; the delta is not a compacted day
    assert len(on_citus) == 22 + 8 + 8
    assert {r[2] for r in on_citus} == {"", "service", "zone", "tariff_version", "tariff",
                                        "service,zone", "service,tariff_version",
                                        "service,tariff"}
    conn = await asyncpg.connect(citus_url)
    try:
        assert await conn.fetchval(
            "SELECT sha256 FROM schema_migrations WHERE name = '1540_charge_account_days'") \
            == next(d for n, d, _ in migrate_module.available()
                    if n == "1540_charge_account_days")
    finally:
        await conn.close()
