"""`billing-oss invoice pdfs` on a thread a core against the same verb on one thread: a
cycle's finalised, itemised invoices exported to a directory, the CLI run as an operator runs
it, the figure the one its summary line prints (reading, typesetting and writing; not the
interpreter's start).

    python perf/bench_invoice_pdfs.py [--accounts N] [--runs R] [--database-url DSN]

The cycle is bench_billrun.py's (``--quick``: 200 accounts, 100 records each, every account
itemised), billed and finalised once; each run exports it with ``--threads`` one a core and
``--threads 1``, the two taking turns, into fresh directories whose files are compared.
Medians of the runs, with the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg
import bench_billrun  # perf/ is on sys.path: this script's folder
import embedded_pg

from billing_oss.server.billing import issuing
from billing_oss.server.render import threads
from billing_oss.server.store.dsn import with_database

REPO = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(r"exported (\d+) invoice PDFs? to .* in ([\d.]+) s")


async def main(dsn: str, accounts: int, runs: int) -> None:
    admin = await asyncpg.connect(dsn)
    name = f"bench_pdfs_{uuid.uuid4().hex[:8]}"
    try:
        await bench_billrun.seeded_template(admin, dsn, name, accounts, accounts * 100)
        url = with_database(dsn, name)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        assert pool is not None
        _, _, invoice_ids = await bench_billrun.select_then_bill(pool, accounts * 100, accounts)
        async with pool.acquire() as conn:
            await issuing.finalise(conn, invoice_ids, "BENCH", datetime.date(2026, 2, 1), 30,
                                   actor="bench")
            await conn.execute("UPDATE accounts SET itemised_invoice = true")
        await pool.close()
        cores = threads.workers()
        before = bench_billrun.load_average()
        seconds: dict[int, list[float]] = {cores: [], 1: []}
        with tempfile.TemporaryDirectory(prefix="bench_pdfs_") as scratch:
            for run in range(runs):
                written = {}
                for n in seconds:
                    out = Path(scratch) / f"{run}-{n}"
                    out.mkdir()
                    seconds[n].append(export(url, out, n, len(invoice_ids)))
                    written[n] = {p.name: p.read_bytes() for p in out.iterdir()}
                assert written[cores] == written[1], "the threads changed the files"
        after = bench_billrun.load_average()
        count = len(invoice_ids)
        par, one = (count / statistics.median(seconds[n]) for n in (cores, 1))
        print(f"invoice pdfs, {count} itemised invoices, median of {runs} runs taking turns; "
              f"{before} before, {after} after")
        print(f"{f'--threads {cores} (a core each)':<34}{par:>8.1f} PDFs/s  "
              f"({par / one:.2f}x of one thread; runs "
              f"{', '.join(f'{count / s:.1f}' for s in seconds[cores])})")
        print(f"{'--threads 1':<34}{one:>8.1f} PDFs/s  (runs "
              f"{', '.join(f'{count / s:.1f}' for s in seconds[1])})")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def export(url: str, out: Path, n_threads: int, expected: int) -> float:
    """The seconds the verb's summary line reports for the export into ``out``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-m", "billing_oss", "invoice", "pdfs",
                           "--period", "2026-01", "--output-dir", str(out),
                           "--threads", str(n_threads), "--database-url", url],
                          capture_output=True, text=True, env=env, check=False)
    found = SUMMARY.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"invoice pdfs failed ({done.returncode}): {done.stderr.strip()}")
    assert int(found[1]) == expected, done.stdout
    return float(found[2])


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200, help="invoices (200)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (median)")
    embedded_pg.add_database_url(parser)
    args = parser.parse_args()
    embedded_pg.run(lambda url: main(url, args.accounts, args.runs), args.database_url)


if __name__ == "__main__":
    cli()
