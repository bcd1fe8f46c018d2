"""Keeps perf/bench_rate.py alive: its smoke run must finish and find both raters equal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "perf" / "bench_rate.py"


def test_bench_rate_quick_run() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "kernel / reference" in run.stdout and "load 100,000 prefixes" in run.stdout
    assert "native / reference" in run.stdout and "headline (like for like)" in run.stdout
