"""`billing-oss settle ...` as a user runs it: partners from a file, a file generated,
the ledger and the report printed; bad input is one line on stderr with the exit status."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO
from tests.integration.test_cli_ingest import cli


def test_partners_generate_files_report(database_url: str, tmp_path: Path) -> None:
    assert cli(["catalog", "load", "config/demo-catalog.json"], database_url).returncode == 0
    out = cli(["settle", "partners", "load", "config/demo-partners.json"], database_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1 partners, 1 exchange rates loaded"
    out = cli(["settle", "partners", "list", "--json"], database_url)
    listed = json.loads(out.stdout)
    assert (listed["tadig"], listed["sftp"]["password"]) == ("DEUD1", "***")
    out = cli(["settle", "generate", "--partner", "DEUD1", "--from", "2026-01-01",
               "--to", "2026-02-01"], database_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("CDFRAF1DEUD100001: notification, 0 events, total 0.000 SDR")
    out = cli(["settle", "files", "--partner", "DEUD1", "--json"], database_url)
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert (row["name"], row["state"], row["fsn"]) == ("CDFRAF1DEUD100001", "generated", 1)
    out = cli(["settle", "report", "--partner", "DEUD1", "--from", "2020-01-01",
               "--to", "2100-01-01", "--format", "csv"], database_url)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1] == "DEUD1,2020-01-01T00:00:00Z,2100-01-01T00:00:00Z," \
                                         "sent,1,0,0.000,SDR"
    pdf = tmp_path / "report.pdf"
    out = cli(["settle", "report", "--partner", "DEUD1", "--from", "2020-01-01",
               "--to", "2100-01-01", "--format", "pdf", "--output", str(pdf)], database_url)
    assert out.returncode == 0 and pdf.read_bytes()[:5] == b"%PDF-"


def test_bad_input_is_one_line_with_its_status(database_url: str, tmp_path: Path) -> None:
    out = cli(["settle", "generate", "--partner", "NOPE1", "--from", "2026-01-01",
               "--to", "2026-02-01"], database_url)
    assert (out.returncode, out.stderr) == (1, "billing-oss settle: no partner 'NOPE1'\n")
    bad = tmp_path / "partners.json"
    bad.write_text(json.dumps({"partners": [{"tadig": "x"}]}))
    out = cli(["settle", "partners", "load", str(bad)], database_url)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "partners file" in out.stderr and "Traceback" not in out.stderr
    out = cli(["settle", "report", "--partner", "DEUD1", "--from", "2026-01-01",
               "--to", "2026-02-01", "--format", "pdf"], database_url)
    assert out.returncode == 2 and "needs --output" in out.stderr
    rap = REPO / "tests/vectors/libxfsx/rap_mini.ber"
    out = cli(["settle", "receive", str(rap)], database_url)
    assert out.returncode == 1
    assert "Sender 'ABC08' is no partner of ours" in out.stderr
