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
    lines = out.stdout.splitlines()
    peers = [x for x in lines if x.startswith("raw asyncpg binary COPY, 2 connections")]
    assert [("the project's rows" in x, "lean row, one unique key" in x) for x in peers] == [
        (True, False), (False, True)], peers
    assert all("ours / this:" in x and "PostgreSQL backends" in x for x in peers), peers
    # ours, then each peer: this process, its backends and the rest of the machine
    cpu = [x for x in lines if x.strip().startswith("CPU per record:")]
    assert len(cpu) == 3 and all("this process" in x and "PostgreSQL backends" in x
                                 for x in cpu), cpu
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
