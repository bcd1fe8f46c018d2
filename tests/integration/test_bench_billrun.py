"""Keeps perf/bench_billrun.py alive: its --quick run completes and meets its own checks."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_bench_billrun_quick(pg_admin_dsn: str) -> None:
    env = {**os.environ, "BILLING_OSS_TEST_DATABASE_URL": pg_admin_dsn}
    out = subprocess.run([sys.executable, str(REPO / "perf" / "bench_billrun.py"), "--quick"],
                         capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    assert "bill run (computed + stored)" in out and "PDF/A-3" in out
    assert "the same, itemised" in out and "100 records listed each" in out
