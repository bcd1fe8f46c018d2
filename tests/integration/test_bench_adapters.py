"""Keep perf/bench_adapters.py runnable: a small run prints every figure beside its peer."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_bench_adapters_quick(pg_admin_dsn: str) -> None:
    out = subprocess.run([sys.executable, "perf/bench_adapters.py", "--quick",
                          "--database-url", pg_admin_dsn], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for label in ("pipeline file ingest, jsonl", "pipeline file ingest, 32.297",
                  "SFTP 32.297 files", "HTTP 1,000-record batches", "MQTT 100-record messages"):
        assert any(line.startswith(label) and "records/s" in line for line in lines), out.stdout
    assert sum("x jsonl file ingest" in line or "x 32.297 file ingest" in line
               for line in lines) == 3, out.stdout
    assert any("publish -> committed: p50" in line and "p99" in line for line in lines)
