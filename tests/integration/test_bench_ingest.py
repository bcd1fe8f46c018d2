"""Keep perf/bench_ingest.py runnable: a tiny run prints ours, both raw COPYs (the project's
rows and the lean limit), the ratios and the CPU per record of each side."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_bench_ingest_runs(pg_admin_dsn: str) -> None:
    out = subprocess.run([sys.executable, "perf/bench_ingest.py", "--records", "3000",
                          "--database-url", pg_admin_dsn], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert "records: 3000 (3000 charged)" in out.stdout
    assert "raw asyncpg binary COPY of the same final rows" in out.stdout
    assert "one lean row per record" in out.stdout
    assert "ours / rows COPY:" in out.stdout and "ours / lean limit:" in out.stdout
    for side in ("ours ", "rows COPY ", "lean COPY "):
        line = next(x for x in out.stdout.splitlines()
                    if x.startswith(side) and "CPU per record" in x)
        assert "this process" in line and "PostgreSQL backends" in line, line
    assert "the lean COPY client's" in out.stdout


def test_bench_ingest_prefill_runs(pg_admin_dsn: str) -> None:
    out = subprocess.run([sys.executable, "perf/bench_ingest.py", "--records", "2000",
                          "--prefill", "3000", "--database-url", pg_admin_dsn], cwd=REPO,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(x.startswith("into an empty database: 2,000 records (2,000 charged)")
               for x in lines), out.stdout
    # the prefill's keys follow on from the first file's: none of its records is a duplicate
    assert any(x.startswith("into a database holding 5,000 records: 2,000 records "
                            "(2,000 charged)") for x in lines), out.stdout
    assert sum("full-page images" in x and "hit ratio" in x for x in lines) == 2
    assert any(x.strip().startswith("usage_keys_pkey") for x in lines)
    assert any(x.startswith("rate holding 5,000 / rate when empty:") for x in lines)


def test_bench_ingest_prefill_runs_in_arrival_order(pg_admin_dsn: str) -> None:
    out = subprocess.run([sys.executable, "perf/bench_ingest.py", "--records", "2000",
                          "--prefill", "2000", "--order", "arrival",
                          "--database-url", pg_admin_dsn], cwd=REPO,
                         capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "event times arrival" in lines[0] and "max_wal_size" in lines[0], lines[0]
    # every record of the three files is charged: the times stay in the tariff's peak band
    assert any(x.startswith("into an empty database: 2,000 records (2,000 charged)")
               for x in lines), out.stdout
    assert any(x.startswith("into a database holding 4,000 records: 2,000 records "
                            "(2,000 charged)") for x in lines), out.stdout
