"""Keeps perf/bench_scale.py alive: a small run prints the one-server and cluster figures,
then 1 and 2 worker processes, with their ratios."""

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.citus


def test_bench_scale_small(pg_admin_dsn: str, citus_admin_dsn: str) -> None:
    env = {**os.environ, "BILLING_OSS_TEST_DATABASE_URL": pg_admin_dsn,
           "BILLING_OSS_CITUS_URL": citus_admin_dsn}
    out = subprocess.run([sys.executable, str(REPO / "perf" / "bench_scale.py"),
                          "--records", "3000", "--runs", "1",
                           "--worker-records", "2000"],
                         capture_output=True, text=True, env=env, timeout=600,
                         check=True).stdout
    one = re.search(r"one PostgreSQL\s+([\d,]+) records/s", out)
    cluster = re.search(r"Citus, coordinator \+ \d+ workers\s+([\d,]+) records/s", out)
    assert one and cluster, out
    assert int(one[1].replace(",", "")) > 0 and int(cluster[1].replace(",", "")) > 0
    assert "cluster / one" in out and "one box" in out
    workers = re.findall(r"serve --workers ([12]): ([\d,]+) records/s", out)
    assert [n for n, _ in workers] == ["1", "2"], out
    assert all(int(rate.replace(",", "")) > 0 for _, rate in workers)
    assert "2 workers / 1 worker" in out
