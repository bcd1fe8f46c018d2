"""Keeps perf/bench_account_usage.py alive: a small run completes and prints each figure
beside its peer."""

import os
import re
import subprocess
import sys

from tests.conftest import REPO


def test_bench_account_usage_small(pg_admin_dsn: str) -> None:
    env = {**os.environ, "BILLING_OSS_TEST_DATABASE_URL": pg_admin_dsn}
    out = subprocess.run([sys.executable, str(REPO / "perf" / "bench_account_usage.py"),
                          "--records", "3000", "--runs", "1"],
                         capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    assert re.search(r"seeded 3,0\d\d records for BUSY", out), out
    assert "/v1/usage's query (no charge)" in out and "plain sum of the charges" in out
    assert re.search(r"current cycle totals .* \(3,0\d\d records\)", out), out
