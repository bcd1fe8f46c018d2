"""Lost database connections during `billing-oss ingest`: the ingest's PostgreSQL backends
are terminated (``pg_terminate_backend``) five times in a row mid-run; the run completes by
itself, says so in one line on stderr, and the database equals a clean run's."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from tests.conftest import REPO
from tests.integration.test_pipeline_crash import make_files, snapshot
from tests.integration.test_pipeline_crash import two_databases as two_databases

APP = "ingest-under-fire"
KILLS = 5


def ingest(dsn: str, files: list[Path], config: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_OSS_")}
    return subprocess.Popen(
        [sys.executable, "-m", "billing_oss", "ingest", *map(str, files), "--source", "msc1",
         "--config", str(config), "--database-url", dsn, "--log-level", "warning"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def _backends(admin: asyncpg.Connection) -> tuple[list[int], bool]:
    """The ingest's backends, and whether one of them is inside a transaction now."""
    rows = await admin.fetch("SELECT pid, state FROM pg_stat_activity"
                             " WHERE application_name = $1", APP)
    busy = any(r["state"] in ("active", "idle in transaction") for r in rows)
    return [r["pid"] for r in rows], busy


async def _committed(admin: asyncpg.Connection) -> int:
    return int(await admin.fetchval(
        "SELECT coalesce(sum(committed_records), 0) FROM source_files"))


async def test_five_lost_connections_in_a_row_and_the_ingest_completes_exactly(
        two_databases: tuple[str, str], tmp_path: Path) -> None:
    files = make_files(tmp_path, random.Random(20261203))
    config = tmp_path / "small-batches.toml"
    config.write_text("[pipeline]\nbatch_size = 100\n")  # many batches: many points to fail at
    clean_dsn, faulted_dsn = two_databases
    clean = ingest(clean_dsn, files, config)
    clean_out, clean_err = clean.communicate(timeout=300)

    joiner = "&" if "?" in faulted_dsn else "?"  # an embedded server's DSN has a query
    run = ingest(f"{faulted_dsn}{joiner}application_name={APP}", files, config)
    admin = await asyncpg.connect(faulted_dsn)
    kills, killed = 0, set[int]()
    try:
        deadline = time.monotonic() + 120
        while kills < KILLS and run.poll() is None and time.monotonic() < deadline:
            pids, busy = await _backends(admin)
            pids = [p for p in pids if p not in killed]
            # the first kill once some batches are in; each next one as soon as it reconnected
            # and is at work again
            if not pids or not busy or (kills == 0 and await _committed(admin) == 0):
                await asyncio.sleep(0.01)
                continue
            await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid",
                                pids)
            killed.update(pids)
            kills += 1
        still_running = run.poll() is None
        out, err = run.communicate(timeout=300)
        committed = await _committed(admin)
    finally:
        await admin.close()
    assert kills == KILLS and still_running, f"the run ended after {kills} kills"
    assert run.returncode == clean.returncode, err
    assert "Traceback" not in err
    extra = [line for line in err.splitlines() if line not in clean_err.splitlines()]
    assert len(extra) <= 1, err
    assert extra and "database connection failed" in extra[0], err
    assert out == clean_out
    assert committed > 0
    clean_rows, faulted_rows = await snapshot(clean_dsn), await snapshot(faulted_dsn)
    for table in clean_rows:
        assert faulted_rows[table] == clean_rows[table], table
