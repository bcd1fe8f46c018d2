"""Keeps perf/bench_collections.py alive: its --quick run completes and its aging total
equals the ledger's SELECT sum(), and it times a first and a daily dunning run."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_bench_collections_quick(pg_admin_dsn: str) -> None:
    env = {**os.environ, "BILLING_OSS_TEST_DATABASE_URL": pg_admin_dsn}
    out = subprocess.run([sys.executable, str(REPO / "perf" / "bench_collections.py"),
                          "--quick", "--repeat", "1"], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout
    assert "totals equal: True" in out and "first dunning run, 2,000 accounts" in out, out
    assert "daily dunning run, as of" in out, out
