"""`ingest --reprocess`: a file read with the wrong format, all of it in suspense, is read
again with the right one; its old suspense rows are discarded, the change is audited, and a
file that charged anything is refused."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from billing_oss.server.cli import main
from billing_oss.server.commands import options
from tests.conftest import REPO

DEMO = REPO / "config" / "demo"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI run in this process points the root logger at this test's captured stderr;
    later tests must not inherit a handler on a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def ingest(capsys: pytest.CaptureFixture[str], url: str,
           *args: str) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    status = main(["ingest", "--json", "--database-url", url, *args])
    captured = capsys.readouterr()
    out = json.loads(captured.out) if captured.out.strip() else {}
    return status, out, captured.err


def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """A query from this synchronous test (the CLI runs its own event loop)."""
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()
    return asyncio.run(go())


def test_a_file_read_with_the_wrong_format_is_read_again(
        database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["catalog", "load", str(REPO / "config" / "demo-catalog.json"),
                 "--database-url", database_url]) == 0
    cdrs = tmp_path / "pbx.csv"
    shutil.copy(DEMO / "asterisk-2026-03.csv", cdrs)

    status, wrong, _ = ingest(capsys, database_url, "--source", "pbx", "--format", "jsonl",
                              str(cdrs))
    assert status == 3 and wrong["counts"]["charged"] == 0
    assert wrong["counts"]["suspense"] == 6
    # the right format alone is not enough: the content is known, nothing changes
    status, again, _ = ingest(capsys, database_url, "--source", "pbx", "--format", "csv",
                              str(cdrs))
    assert again["replay"] is True and again["counts"] == wrong["counts"]

    status, right, _ = ingest(capsys, database_url, "--source", "pbx", "--format", "csv",
                              "--reprocess", str(cdrs))
    assert status == 0, right
    assert right["counts"] == {"in": 5, "charged": 5, "suspense": 0, "duplicates": 0,
                               "filtered": 0, "pending": 0}
    assert right["source_file_id"] == wrong["source_file_id"]
    states = fetch(database_url, "SELECT state, resolution FROM suspense "
                   "WHERE source_file_id = $1", wrong["source_file_id"])
    assert len(states) == 6 and {r["state"] for r in states} == {"discarded"}
    assert all("reprocessed as csv" in r["resolution"] for r in states)
    trail = fetch(database_url, "SELECT actor, before, after FROM audit_log "
                  "WHERE action = 'source_file.reprocess'")
    assert len(trail) == 1 and trail[0]["actor"].startswith("cli:")
    before, after = json.loads(trail[0]["before"]), json.loads(trail[0]["after"])
    assert (before["format"], before["count_suspense"]) == ("jsonl", 6)
    assert (after["format"], after["suspense_discarded"]) == ("csv", 6)
    audit = main(["audit", "verify", "--database-url", database_url])
    assert audit == 0

    # now it charged: a second reprocess would charge twice, and is refused in one line
    status, _, err = ingest(capsys, database_url, "--source", "pbx", "--format", "csv",
                            "--reprocess", str(cdrs))
    assert status == 1
    assert "only a file whose records all went to suspense can be reprocessed" in err
    assert len(err.strip().splitlines()) == 1
    assert fetch(database_url, "SELECT count(*) FROM charges")[0][0] == 5


def test_reprocess_of_a_new_file_is_a_plain_ingest(
        database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "load", str(REPO / "config" / "demo-catalog.json"),
                 "--database-url", database_url]) == 0
    status, out, _ = ingest(capsys, database_url, "--source", "feed", "--reprocess",
                            str(DEMO / "usage-2026-03.jsonl"))
    assert status == 0 and out["counts"]["charged"] == 7


def test_a_suspense_retry_from_the_shell_is_audited(
        database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["catalog", "load", str(REPO / "config" / "demo-catalog.json"),
                 "--database-url", database_url]) == 0
    stray = tmp_path / "stray.jsonl"
    stray.write_text('{"record_key": "stray-1", "source": "shell", "kind": "voice", '
                     '"event_time": "2026-03-02T10:00:00Z", "calling": "33699999999", '
                     '"called": "33145678901", "duration_s": 60}\n')
    status, out, _ = ingest(capsys, database_url, "--source", "shell", str(stray))
    assert status == 3 and out["counts"]["suspense"] == 1
    (suspense_id,) = fetch(database_url, "SELECT suspense_id FROM suspense "
                           "WHERE record_key = 'stray-1'")[0]
    assert main(["suspense", "retry", "--id", str(suspense_id),
                 "--database-url", database_url]) == 3  # still no such account
    trail = fetch(database_url, "SELECT actor, action FROM audit_log WHERE entity = $1",
                  f"suspense:{suspense_id}")
    assert [(r["actor"], r["action"]) for r in trail] == [
        (options.cli_actor(), "suspense.retry.suspense")]
