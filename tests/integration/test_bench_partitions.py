"""Keeps perf/bench_partitions.py alive and measuring what it says: each layout's tables
(the open month's days beside month tables; every month's days under it), every query
timed on each."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "perf" / "bench_partitions.py"
LINE = re.compile(r"^(month|open|day) +2 months +(\d+) tables  (.+?) +planning +[\d.]+ ms"
                  r"  execution +[\d.]+ ms  both p95 +[\d.]+ ms$")


def test_bench_partitions_small(pg_admin_dsn: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--months", "2", "--records", "3000", "--runs", "3",
         "--database-url", pg_admin_dsn],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    found = [LINE.match(line) for line in run.stdout.splitlines()]
    assert all(found) and len(found) == 12, run.stdout
    tables = {m[1]: int(m[2]) for m in found if m}
    assert tables == {"month": 2, "open": 1 + 28, "day": 31 + 28}
    labels = [m[3] for m in found if m]
    assert labels[:4] == labels[4:8] == labels[8:]
