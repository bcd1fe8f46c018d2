"""The decode benchmark stays runnable (smoke run with --quick)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_decode_quick_runs() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "perf" / "bench_decode.py"), "--quick"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "asn1tools" in proc.stdout and "pyasn1" in proc.stdout and "peak RSS" in proc.stdout
    assert "like for like" in proc.stdout and "headline (like for like)" in proc.stdout
