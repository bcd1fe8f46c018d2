"""A Citus variant is held to its file as a migration is: its sha256 is recorded beside the
original's, and a variant changed after the cluster ran it stops the start."""

from __future__ import annotations

import asyncpg
import pytest

from billing_oss.core.errors import StartupError
from billing_oss.server.store import migrate as migrate_module
from billing_oss.server.store.migrate import migrate

pytestmark = pytest.mark.citus


async def recorded(pool: asyncpg.Pool) -> dict[str, str | None]:
    rows = await pool.fetch("SELECT name, variant_sha256 FROM schema_migrations")
    return {r["name"]: r["variant_sha256"] for r in rows}


async def test_a_variant_changed_after_it_ran_is_refused(
        citus_pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch) -> None:
    variants = migrate_module.variant_digests()
    assert variants
    kept = await recorded(citus_pool)
    assert {name: kept[name] for name in variants} == variants
    assert {name for name, digest in kept.items() if digest} == set(variants)
    # a cluster that ran its variants before their sha256 was kept: recorded as they are now
    await citus_pool.execute("UPDATE schema_migrations SET variant_sha256 = NULL")
    assert await migrate(citus_pool) == []
    assert {name: (await recorded(citus_pool))[name] for name in variants} == variants
    name = next(iter(variants))
    monkeypatch.setattr(migrate_module, "variant_digests", lambda: {**variants, name: "0" * 64})
    with pytest.raises(StartupError, match=f"Citus variant of migration {name} was changed"):
        await migrate(citus_pool)
