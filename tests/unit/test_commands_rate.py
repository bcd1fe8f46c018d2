"""`billing-oss rate`: JSON lines in, one JSON line out per input line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from billing_oss.server.catalog import catalog_from_dict
from billing_oss.server.commands.rate import rate_stream
from billing_oss.server.rating import NativeRater, ReferenceRater
from tests.unit.test_rating import BASE

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo-catalog.json"
CALL = {
    "record_key": "a",
    "source": "s",
    "kind": "voice",
    "event_time": "2026-01-15T10:20:30Z",
    "duration_s": 61,
    "calling": "33611111111",
    "called": "33612345678",
}


@pytest.mark.parametrize("factory", [ReferenceRater, NativeRater], ids=["reference", "native"])
def test_rates_lines_and_reports_bad_ones_by_line(factory: type) -> None:
    lines = [
        json.dumps(CALL),
        "{not json",
        json.dumps({"record_key": "b", "kind": "voice"}),
        "",
        json.dumps({**CALL, "record_key": "c", "calling": "0"}),
        json.dumps({**CALL, "record_key": "d", "called": "44"}),
    ]
    sink = io.BytesIO()
    status = rate_stream(
        factory(catalog_from_dict(BASE)), io.BytesIO("\n".join(lines).encode()), sink
    )
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert out[0] == {
        "record_key": "a",
        "amount": "0.3017",
        "currency": "EUR",
        "zone": "national",
        "band": "peak",
        "tariff_version": "retail@2026-01-01T00:00:00Z",
    }
    assert out[1]["error"] == "MALFORMED" and out[1]["line"] == 2
    assert out[1]["record_key"] is None
    assert out[2]["error"] == "MALFORMED" and out[2]["line"] == 3
    assert out[2]["record_key"] == "b" and "event_time" in out[2]["message"]
    assert out[3] == {"record_key": "c", "error": "UNKNOWN_ACCOUNT"}
    assert out[4] == {"record_key": "d", "error": "NO_ZONE"}
    assert status == 3


def test_cli_reads_a_file_and_reports_catalog_errors(tmp_path: Path) -> None:
    records = tmp_path / "in.jsonl"
    records.write_text(json.dumps(CALL) + "\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "billing_oss.server.cli",
            "rate",
            "--catalog",
            str(DEMO),
            "--records",
            str(records),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["amount"] == "0.3017"
    bad = tmp_path / "bad.json"
    version = {"effective_from": "2026-01-01T00:00:00Z", "timezone": "UTC", "rates": [
        {"kind": "voice", "zone": "nowhere", "band": "*",
         "steps": [{"from": 0, "price": "0.01", "unit": 60, "increment": 1}]}]}
    bad.write_text(json.dumps({"currency": "EUR", "tariffs": [{"id": "x", "versions": [version]}]}))
    run = subprocess.run(
        [sys.executable, "-m", "billing_oss", "rate", "--catalog", str(bad), "--records", "-"],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "tariffs[0].versions[0].rates[0].zone" in run.stderr


@pytest.mark.parametrize("factory", [ReferenceRater, NativeRater], ids=["reference", "native"])
def test_a_record_without_source_is_rated_as_clis(factory: type) -> None:
    lines = [json.dumps({k: v for k, v in CALL.items() if k != "source"}),
             json.dumps({**CALL, "record_key": "with-source"})]
    sink = io.BytesIO()
    status = rate_stream(
        factory(catalog_from_dict(BASE)), io.BytesIO("\n".join(lines).encode()), sink
    )
    out = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [o.get("amount") for o in out] == ["0.3017", "0.3017"]
    assert status == 0
