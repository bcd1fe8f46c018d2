"""Keeps perf/bench_rate.py alive: its smoke run must finish, find both raters equal, and rate
a new account without recompiling the stored tariff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "perf" / "bench_rate.py"


def test_bench_rate_quick_run(pg_admin_dsn: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--database-url", pg_admin_dsn],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "kernel / reference" in run.stdout and "load 100,000 prefixes" in run.stdout
    assert "native / reference" in run.stdout and "headline (like for like)" in run.stdout
    assert "new account, 100,000 prefixes stored in PostgreSQL: charged" in run.stdout
    assert "(0 recompiles) vs. the full compile" in run.stdout
