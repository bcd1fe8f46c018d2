"""CSV CDR benchmark: the Asterisk Master.csv decoder against a bare stdlib reader.

    python perf/bench_csv.py             # 200 k lines of each layout, 5 runs each
    python perf/bench_csv.py --quick     # 20 k lines, 3 runs

Lines come from the vendored fixtures (``tests/vectors/asterisk``), repeated with distinct
linkedid/sequence. Ours is ``adapters.formats.csvcdr`` end to end (layout by column count,
keys, UTC event time, ``UsageRecord``s). The peer is the floor of any Python CSV CDR reader:
``csv.reader`` plus ``datetime.strptime`` of one timestamp per line, nothing else. Both run
the same number of times on the same bytes; medians are reported.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from billing_oss.adapters.formats.csvcdr import csv_from_bytes  # noqa: E402

FIXTURES = REPO / "tests" / "vectors" / "asterisk"


def lines(name: str, n: int) -> bytes:
    rows = list(csv.reader(io.StringIO((FIXTURES / name).read_text())))
    out = io.StringIO()
    writer = csv.writer(out)
    for i in range(n):
        row = list(rows[i % len(rows)])
        if len(row) == 21:
            row[19], row[20] = f"{row[19]}.{i // len(rows)}", str(i)
        else:
            row[16] = f"{row[16]}.{i}"
        writer.writerow(row)
    return out.getvalue().encode()


def ours(data: bytes) -> int:
    with csv_from_bytes(data, source="bench") as decoded:
        return sum(len(b.records) for b in decoded.batches())


def peer(data: bytes) -> int:
    n = 0
    for row in csv.reader(io.StringIO(data.decode())):
        dt.datetime.strptime(row[10] or row[9], "%Y-%m-%d %H:%M:%S")
        n += 1
    return n


def rate(fn: Callable[[bytes], int], data: bytes, runs: int) -> float:
    rates = []
    for _ in range(runs):
        t = time.perf_counter()
        count = fn(data)
        rates.append(count / (time.perf_counter() - t))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    args = parser.parse_args(argv)
    n, runs = (20_000, 3) if args.quick else (200_000, 5)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; {n:,} lines, median of {runs} runs")
    for name, label in (("master_18_forked.csv", "18 columns"),
                        ("master_a13_forked.csv", "21 columns (Asterisk 12+)")):
        data = lines(name, n)
        assert ours(data) == n
        a, b = rate(ours, data, runs), rate(peer, data, runs)
        print(f"  {label}: ours {a:,.0f} lines/s, csv.reader + strptime {b:,.0f} lines/s "
              f"(ours / peer = {a / b:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
