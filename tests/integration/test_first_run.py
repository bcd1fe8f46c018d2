"""What a new user meets first: audited demo load and keys, where the embedded database is
found, a foreign database left alone, quiet verbs at a terminal, plain wording."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from billing_oss.core.errors import ConfigError
from billing_oss.server import config as config_module
from billing_oss.server.billing.bill_runs import RunResult
from billing_oss.server.cli import main
from billing_oss.server.commands import audit as audit_command
from billing_oss.server.commands import options
from billing_oss.server.commands.bill_run import summary
from billing_oss.server.composition import DEMO_ACTOR, database_pool, load_demo_catalog
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.embedded import DEFAULT_DATA_DIR, find_data_dir
from billing_oss.server.store.migrate import refuse_foreign


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI run in this process points the root logger at this test's captured stderr;
    later tests must not inherit a handler on a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


async def _audit_rows(pool: asyncpg.Pool, action: str) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT actor, action, entity FROM audit_log WHERE action = $1",
                            action)


async def test_the_demo_catalog_load_at_start_is_audited(pool: asyncpg.Pool) -> None:
    config = config_module.load(env={})
    await load_demo_catalog(config, pool)
    rows = await _audit_rows(pool, "catalog.load")
    assert [(r["actor"], r["entity"]) for r in rows] == [(DEMO_ACTOR, "catalog")]
    # each product, tax rate and discount it brought is in the log too
    products = await pool.fetchval("SELECT count(*) FROM audit_log WHERE actor = $1 "
                                   "AND entity LIKE 'product:%'", DEMO_ACTOR)
    assert products == 3


def test_api_keys_made_from_the_shell_are_audited(database_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api-key", "create", "--role", "operator", "--name", "ops",
                 "--database-url", database_url, "--json"]) == 0
    key_id = json.loads(capsys.readouterr().out)["key"]["key_id"]
    assert main(["api-key", "revoke", key_id, "--database-url", database_url]) == 0
    assert main(["api-key", "revoke", key_id, "--database-url", database_url]) == 1
    assert f"no active key {key_id}" in capsys.readouterr().err

    async def trail() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT actor, action, entity FROM audit_log "
                                    "WHERE entity = $1 ORDER BY seq", f"api_key:{key_id}")
        finally:
            await conn.close()
        return [(r["actor"], r["action"], r["entity"]) for r in rows]

    actor = options.cli_actor()
    assert asyncio.run(trail()) == [(actor, "api_key.create", f"api_key:{key_id}"),
                                    (actor, "api_key.revoke", f"api_key:{key_id}")]


def test_audit_verify_says_1_row(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--database-url", database_url]) == 0
    found = re.search(r"intact: (\d+) (rows?), hash chain verified", capsys.readouterr().out)
    assert found is not None
    assert found[2] == ("row" if found[1] == "1" else "rows")
    assert (audit_command._count(1, "row"), audit_command._count(2, "row")) == ("1 row", "2 rows")


def test_data_dir_is_the_nearest_one_holding_a_database(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "var" / "pgdata").mkdir(parents=True)
    (project / "var" / "pgdata" / "PG_VERSION").write_text("18\n")
    deep = project / "docs" / "notes"
    deep.mkdir(parents=True)
    assert find_data_dir(DEFAULT_DATA_DIR, deep) == (project / "var" / "pgdata", True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert find_data_dir(DEFAULT_DATA_DIR, elsewhere) == (elsewhere / "var" / "pgdata", False)
    # a configured directory is taken as it is, relative to where the verb runs
    assert find_data_dir("data/pg", deep) == (deep / "data" / "pg", False)


def test_a_new_embedded_database_is_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("BILLING_OSS_"):
            monkeypatch.delenv(name)
    config = options.load_config(argparse.Namespace(verb="files"))
    assert config.database.data_dir == str(tmp_path.resolve() / "var" / "pgdata")
    assert f"upward: creating a new database in {tmp_path.resolve() / 'var' / 'pgdata'}" in (
        capsys.readouterr().err)


@pytest.fixture
async def foreign_database(pg_admin_dsn: str) -> AsyncIterator[str]:
    name = f"t_foreign_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = with_database(pg_admin_dsn, name)
        conn = await asyncpg.connect(dsn)
        await conn.execute("CREATE TABLE crm_customers (id int PRIMARY KEY)")
        await conn.close()
        yield dsn
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_a_database_holding_other_tables_is_not_migrated(foreign_database: str) -> None:
    async def no(_: str) -> bool:
        return False

    async def yes(_: str) -> bool:
        return True

    pool = await asyncpg.create_pool(foreign_database, min_size=1, max_size=2)
    try:
        with pytest.raises(ConfigError, match="holds 1 tables and no billing-oss schema"):
            await refuse_foreign(pool, init=False, confirm=no)
        await refuse_foreign(pool, init=False, confirm=yes)  # the terminal said yes
        await refuse_foreign(pool, init=True, confirm=no)
    finally:
        await pool.close()
    config = config_module.load(env={}, overrides={"database.url": foreign_database})
    with pytest.raises(ConfigError, match="pass --init"):
        async with database_pool(config):
            pass
    config = config_module.load(env={}, overrides={"database.url": foreign_database,
                                                   "database.init": True})
    async with database_pool(config) as migrated:
        assert await migrated.fetchval("SELECT count(*) FROM schema_migrations") > 0
    async with database_pool(config_module.load(
            env={}, overrides={"database.url": foreign_database})):
        pass  # ours now: no --init needed again


async def test_an_extensions_own_tables_are_not_foreign(pg_admin_dsn: str) -> None:
    """Citus, columnar and the like bring tables of their own into an empty database."""
    name = f"t_ext_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        pool = await asyncpg.create_pool(with_database(pg_admin_dsn, name), min_size=1,
                                         max_size=2)
        try:
            try:
                await pool.execute("CREATE EXTENSION pg_stat_statements")
            except asyncpg.PostgresError:
                pytest.skip("no extension with tables of its own in this PostgreSQL")

            async def no(_: str) -> bool:
                return False

            await refuse_foreign(pool, init=False, confirm=no)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def test_verbs_are_quiet_at_a_terminal_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    config = config_module.load(env={})
    monkeypatch.delenv("BILLING_OSS_LOG_LEVEL", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    quiet = options._log_level(argparse.Namespace(verb="ingest", log_level=None), config)
    asked = options._log_level(argparse.Namespace(verb="ingest", log_level="info"), config)
    server = options._log_level(argparse.Namespace(verb="serve", log_level=None), config)
    assert (quiet, asked, server) == ("warning", "info", "info")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)  # a pipe, a log file: as set
    assert options._log_level(argparse.Namespace(verb="ingest", log_level=None),
                              config) == "info"


def test_finalize_summary_does_not_contradict_itself() -> None:
    result = RunResult(bill_run_id=7, period="2026-03", dry_run=False, accounts=4,
                       invoices=4, charges=1, seconds=0.5, frozen=4, finalized=[1, 2, 3, 4])
    text = summary(result)
    assert "left as they are" not in text
    assert text.startswith("4 invoices from 1 charge for 4 accounts")
    assert "4 drafts past the grace period not recomputed; 4 invoices finalised" in text
    one = RunResult(bill_run_id=8, period="2026-03", dry_run=False, accounts=1, invoices=1,
                    charges=3, seconds=0.1, finalized=[9])
    assert summary(one).startswith("1 invoice from 3 charges for 1 account")
