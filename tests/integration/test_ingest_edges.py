"""`billing-oss ingest` at the file edges: RAP files kept aside, damaged TAP3 headers."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg

from tests.conftest import REPO, VECTORS
from tests.generators.tap3_files import tap3_file
from tests.integration.test_ingest_formats import cli
from tests.unit.test_formats_tap3_edges import MOC


def _files(database_url: str) -> list[tuple[str, str | None]]:
    async def query() -> list[tuple[str, str | None]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT name, error FROM source_files ORDER BY name")
            return [(r["name"], r["error"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(query())


def test_rap_and_damaged_tap3_files(database_url: str, tmp_path: Path) -> None:
    out = cli(["catalog", "load", str(REPO / "config/demo-catalog.json")], database_url)
    assert out.returncode == 0, out.stderr

    rap = tmp_path / "RCBBBBBAAAAA00001.rap"
    shutil.copy(VECTORS / "rap_mini.ber", rap)
    out = cli(["ingest", "--source", "roaming", str(rap)], database_url)
    assert out.returncode == 0, out.stderr
    assert "RAP file: handled by settlement (ReturnBatch); kept, not ingested" in out.stderr
    assert rap.exists() and _files(database_url) == []

    odd = tmp_path / "CDAAAAABBBBB0000x"
    odd.write_bytes(tap3_file([MOC]).replace(b"00001", "0000\u00b3".encode("latin-1"), 1))
    out = cli(["ingest", "--format", "tap3", "--source", "roaming", str(odd)], database_url)
    assert "Traceback" not in out.stderr
    assert out.returncode == 0, out.stderr
    assert [name for name, _ in _files(database_url)] == [odd.name]

    concatenated = VECTORS.parent / "tap3" / "CDAAAAABBBBB00001_00002.tap"
    out = cli(["ingest", "--format", "tap3", "--source", "roaming2", str(concatenated)],
              database_url)
    assert out.returncode == 3, out.stderr
    assert "a second TransferBatch (FileSequenceNumber 00002) not decoded" in out.stderr
    (error,) = [e for name, e in _files(database_url) if name == concatenated.name]
    assert error is not None and "at offset 553" in error
