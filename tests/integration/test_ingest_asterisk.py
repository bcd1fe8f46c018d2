"""Asterisk Master.csv through `billing-oss ingest`: every leg of a call is charged once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from tests.conftest import REPO, VECTORS
from tests.integration.test_ingest_formats import cli

ASTERISK = VECTORS.parent / "asterisk"


def _billed(database_url: str, source: str) -> tuple[int, int]:
    async def query() -> tuple[int, int]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(
                "SELECT count(*) AS n, coalesce(sum(duration_s), 0) AS s FROM usage_records "
                "WHERE source = $1", source)
            return int(row["n"]), int(row["s"])
        finally:
            await conn.close()

    return asyncio.run(query())


def _ingest(path: Path, source: str, database_url: str) -> dict[str, int]:
    out = cli(["ingest", "--format", "csv", "--source", source, "--json", str(path)],
              database_url)
    assert out.returncode == 0, out.stderr
    counts: dict[str, int] = json.loads(out.stdout)["counts"]
    return counts


def test_forked_and_retried_legs_are_all_charged_once(database_url: str,
                                                      tmp_path: Path) -> None:
    out = cli(["catalog", "load", str(REPO / "config/demo-catalog.json")], database_url)
    assert out.returncode == 0, out.stderr

    counts = _ingest(ASTERISK / "master_a13_forked.csv", "pbx13", database_url)
    assert (counts["in"], counts["charged"], counts["duplicates"]) == (9, 9, 0)
    assert _billed(database_url, "pbx13") == (9, 420)

    # the PBX keeps appending to Master.csv: the grown file adds its new line only
    grown = tmp_path / "Master.csv"
    extra = ('"","33611111111","33170000000","from-internal","","SIP/1001-00000040",'
             '"SIP/trunk-00000041","Dial","SIP/trunk/33170000000,60","2026-01-15 12:00:00",'
             '"2026-01-15 12:00:05","2026-01-15 12:00:35",35,30,"ANSWERED","DOCUMENTATION",'
             '"1768478400.40","","","1768478400.40",60\n')
    grown.write_text((ASTERISK / "master_a13_forked.csv").read_text() + extra)
    counts = _ingest(grown, "pbx13", database_url)
    assert (counts["in"], counts["charged"], counts["duplicates"]) == (10, 1, 9)
    assert _billed(database_url, "pbx13") == (10, 450)

    counts = _ingest(ASTERISK / "master_18_forked.csv", "pbx11", database_url)
    assert (counts["in"], counts["charged"], counts["duplicates"]) == (7, 7, 0)
    assert _billed(database_url, "pbx11") == (7, 348)
    again = tmp_path / "Master-copy.csv"  # the same rows under another name: nothing added
    again.write_bytes((ASTERISK / "master_18_forked.csv").read_bytes() + b"\n")
    counts = _ingest(again, "pbx11", database_url)
    assert (counts["charged"], counts["duplicates"]) == (0, 7)
    assert _billed(database_url, "pbx11") == (7, 348)
