"""The settlement benchmark stays runnable (smoke run with --quick)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_settlement_quick_runs() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "perf" / "bench_settlement.py"),
                           "--quick", "--runs", "1"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    for peer in ("native (tap3enc)", "asn1tools", "pyasn1", "peak RSS"):
        assert peer in proc.stdout
