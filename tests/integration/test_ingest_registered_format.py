"""A format registered with one entry is ingested end to end: guessed by its name ending,
decoded, rated and stored, its bad line in suspense, with no other edit anywhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_oss.adapters.formats.registry import Format, register, unregister
from billing_oss.server import cli
from tests.conftest import REPO
from tests.unit.test_formats_registry import CALLS, PIPES


@pytest.fixture
def pipes() -> Iterator[Format]:
    register(PIPES)
    try:
        yield PIPES
    finally:
        unregister(PIPES.name)


def test_ingest_takes_a_format_registered_by_one_entry(
        pipes: Format, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BILLING_OSS_CATALOG_LOAD_DEMO", "false")
    db = ["--database-url", database_url]
    assert cli.main(["catalog", "load", str(REPO / "config/demo-catalog.json"), *db]) == 0
    capsys.readouterr()
    path = tmp_path / "calls.pipes"
    path.write_bytes(CALLS)
    assert cli.main(["ingest", "--source", "pbx9", "--json", str(path), *db]) == 3
    result = json.loads(capsys.readouterr().out)
    assert result["sequence_no"] == 41  # from the format's header
    assert result["counts"] == {"in": 3, "charged": 2, "suspense": 1, "duplicates": 0,
                                "filtered": 0, "pending": 0}
