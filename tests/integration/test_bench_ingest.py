"""Keep perf/bench_ingest.py runnable: a tiny run prints both figures and the ratio."""

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
    assert "raw asyncpg binary COPY" in out.stdout and "ratio:" in out.stdout
