"""Keep perf/bench_api.py alive: its --quick run completes and prints every figure."""

import asyncio
import sys

from tests.conftest import REPO


async def test_bench_api_quick(pg_admin_dsn: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "perf" / "bench_api.py"), "--quick", "--seconds", "1",
        "--database-url", pg_admin_dsn,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=REPO)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=180)
    text = out.decode()
    assert process.returncode == 0, text
    for figure in ("ours: GET /v1/accounts/{id}", "peer: GET /healthz", "peer: asyncpg",
                   "ratio ours / healthz ceiling", "req/s", "cold, 2,000 accts",
                   "warm, 2,000 accts", "one account", "median of 3 runs"):
        assert figure in text, text
    ours = [line for line in text.splitlines() if line.startswith("ours:")]
    assert len(ours) == 3 and all("errors 0" in line for line in ours), text
