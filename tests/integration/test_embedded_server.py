"""The embedded server runs with the settings billing-oss writes for it: read back with SHOW
from a server started as ``serve`` starts it."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from billing_oss.server.store import embedded


@pytest.fixture(scope="module")
def pgdata() -> Iterator[Path]:
    # Not under pytest's tmp dir: the server runs as another user (conftest.pg_admin_dsn).
    root = Path(tempfile.mkdtemp(prefix="billing-oss-test-embedded-"))
    root.chmod(0o755)
    try:
        yield root / "var" / "pgdata"
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def test_a_new_embedded_server_runs_with_our_settings(pgdata: Path) -> None:
    async with embedded.embedded_postgres(pgdata, "billing") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            shown = {name: await conn.fetchval(f"SHOW {name}")
                     for name in (*embedded.SETTINGS, "shared_buffers", "max_wal_size",
                                  "wal_compression", "fsync", "synchronous_commit")}
        finally:
            await conn.close()
    expected = embedded.settings(free_disk=embedded.free_disk_bytes(pgdata))
    assert shown == {**expected, "wal_compression": "off", "fsync": "on",
                     "synchronous_commit": "on"}


def test_benchmarks_embedded_server_has_the_same_settings() -> None:
    spec = importlib.util.spec_from_file_location(
        "embedded_pg", Path(__file__).resolve().parents[2] / "perf" / "embedded_pg.py")
    assert spec is not None and spec.loader is not None
    embedded_pg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embedded_pg)

    async def shown(url: str) -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            return {name: await conn.fetchval(f"SHOW {name}") for name in embedded.SETTINGS}
        finally:
            await conn.close()

    assert embedded_pg.run(shown, None) == embedded.SETTINGS
