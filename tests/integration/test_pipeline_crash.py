"""Crash safety: SIGKILL the ingesting process at random points, restart it until it finishes,
and the database equals a clean run's — same charges, same suspense, nothing doubled or lost."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest

from billing_oss.core.records import UsageRecord
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.store import catalog_repo
from billing_oss.server.store.dsn import with_database
from billing_oss.server.store.migrate import migrate
from tests.conftest import REPO

BATCH = 150
CALLERS = ["33611111111", "33611111111", "33611111111", "33699999999"]  # last: no account


def make_files(directory: Path, rng: random.Random) -> list[Path]:
    paths = []
    for n in range(4):
        path = directory / f"crash-{n}.jsonl"
        with path.open("wb") as f:
            for i in range(2500):
                key = f"k{rng.randrange(9000)}"  # collisions: duplicates across files
                called = "99912" if i % 97 == 0 else "33612345678"
                record = UsageRecord(record_key=key, source="msc1", kind="voice",
                                     event_time=f"2026-0{1 + i % 3}-1{i % 10}T10:00:00Z",
                                     duration_s=rng.randrange(1, 3600), calling=rng.choice(CALLERS),
                                     called=called)
                f.write(msgspec.json.encode(record) + b"\n")
                if i % 500 == 0:
                    f.write(b"{not json\n")
                if i % 300 == 0:  # partial records, parts spread over files
                    group = f"g{i}"
                    part = UsageRecord(
                        record_key=f"{group}-{n}", source="msc1", kind="voice",
                        event_time="2026-02-01T00:00:00Z", duration_s=10,
                        calling="33611111111", called="33612345678", partial_seq=n + 1,
                        attrs={"charging_id": group, "partial_last": n == 2})
                    f.write(msgspec.json.encode(part) + b"\n")
        paths.append(path)
    return paths


async def fresh_database(admin_dsn: str) -> tuple[str, str]:
    name = f"t_crash_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = with_database(admin_dsn, name)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await migrate(pool)
        await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    finally:
        await pool.close()
    return name, dsn


@pytest.fixture
async def two_databases(pg_admin_dsn: str) -> AsyncIterator[tuple[str, str]]:
    clean, crashed = await fresh_database(pg_admin_dsn), await fresh_database(pg_admin_dsn)
    yield clean[1], crashed[1]
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        for name, _ in (clean, crashed):
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def worker(dsn: str, files: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.ingest_worker", dsn, str(BATCH),
                             *map(str, files)], cwd=REPO, stdout=subprocess.PIPE, text=True)


async def interrupted_file(dsn: str) -> bool:
    """Whether the kill left a file half done (some batches committed, not finished)."""
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(
            "SELECT count(*) FROM source_files WHERE state = 'claimed' AND committed_records > 0"))
    finally:
        await conn.close()


async def snapshot(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        queries = {
            "usage": "SELECT source, record_key, account_id, event_time, duration_s, calling "
                     "FROM usage_records ORDER BY 1, 2",
            "charges": "SELECT u.record_key, c.amount_micros, c.currency, c.kind FROM charges c "
                       "JOIN usage_records u USING (account_id, usage_id) ORDER BY 1",
            "suspense": "SELECT source, record_key, reason, detail, source_position, raw "
                        "FROM suspense ORDER BY source_position",
            "files": "SELECT name, sha256, state, committed_records, count_in, count_charged, "
                     "count_suspense, count_duplicates, count_pending, totals::text "
                     "FROM source_files ORDER BY name",
            "keys": "SELECT source, record_key, account_id FROM usage_keys ORDER BY 1, 2",
            "partials": "SELECT source, group_key, partial_seq, state FROM partial_records "
                        "ORDER BY 1, 2, 3",
        }
        return {name: [tuple(r) for r in await conn.fetch(q)] for name, q in queries.items()}
    finally:
        await conn.close()


async def test_sigkill_at_random_points_equals_a_clean_run(
    two_databases: tuple[str, str], tmp_path: Path
) -> None:
    rng = random.Random(20260201)
    files = make_files(tmp_path, rng)
    clean_dsn, crash_dsn = two_databases
    clean_run = worker(clean_dsn, files)
    assert clean_run.stdout is not None
    assert clean_run.stdout.readline().strip() == "ready"
    started = time.monotonic()
    assert clean_run.wait(timeout=120) == 0
    # Kill points scale with this machine's speed: each run gets at most a quarter of a clean
    # run's work time, so a fast machine still sees several kills, most of them mid-file.
    work_time = time.monotonic() - started

    kills, mid_file = 0, 0
    for _ in range(60):
        proc = worker(crash_dsn, files)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        await asyncio.sleep(rng.uniform(0.05, 0.25) * work_time)
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        mid_file += await interrupted_file(crash_dsn)
    else:
        assert worker(crash_dsn, files).wait(timeout=120) == 0
    assert kills >= 3 and mid_file >= 2, f"only {kills} kills, {mid_file} in mid-file"

    clean, crashed = await snapshot(clean_dsn), await snapshot(crash_dsn)
    assert len(clean["usage"]) > 3000 and len(clean["suspense"]) > 50
    assert any(row[3] == "merged" for row in clean["partials"])
    for table in clean:
        assert crashed[table] == clean[table], table
