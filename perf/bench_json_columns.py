"""CPU of a delivery commit's CPU stage: JSON records by column against the object path.

    python perf/bench_json_columns.py [--messages 10] [--per 100] [--runs 15]

A commit of ``--messages`` decoded JSON messages of ``--per`` voice records each (the
records of ``bench_adapters``), prepared the way ``deliveries.commit`` prepares it
(``deliveries._parts``: by column where it can, validation, rating, rows, rollups and COPY
payloads) beside the object path alone (``deliveries._prepare``, the peer), in the same
process, best of ``--runs`` by process CPU time. Three commits: every record chargeable,
one message with a record of no account, and every message with one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest

from billing_oss.adapters import intake
from billing_oss.core.contract import Delivery
from billing_oss.server.catalog.loader import catalog_from_dict
from billing_oss.server.pipeline import deliveries
from billing_oss.server.rating import NativeRater

UNKNOWN = "49999"  # an identifier of no account


def body(message: int, per: int, refused: bool) -> bytes:
    records = [{"record_key": f"t-{message}-{j}", "kind": "voice",
                "event_time": "2026-03-02T10:00:00Z", "calling": "33610000001",
                "called": "33612345678", "duration_s": 95} for j in range(per)]
    if refused:
        records[per // 2]["calling"] = UNKNOWN
    return msgspec.json.encode({"records": records})


async def commit_of(messages: int, per: int, refused: set[int]) -> list[Delivery]:
    return [await intake.to_delivery(None, body(i, per, i in refused), source="bench",
                                     position=f"m{i}", where="bench")
            for i in range(messages)]


def best(run: Callable[[], object], runs: int) -> float:
    run()
    out = float("inf")
    for _ in range(runs):
        began = time.process_time()
        run()
        out = min(out, time.process_time() - began)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--per", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    rater = NativeRater(catalog_from_dict(bench_ingest.catalog()))
    n = args.messages * args.per
    ids = list(range(n))
    print(f"commit of {args.messages} x {args.per} records, best of {args.runs}, load "
          f"{os.getloadavg()[0]:.1f}; µs of CPU per record")
    for label, refused in (("every record chargeable", set()),
                           ("one message with a record of no account", {args.messages // 2}),
                           ("every message with one", set(range(args.messages)))):
        commit = asyncio.run(commit_of(args.messages, args.per, refused))
        ours = best(lambda: deliveries._parts(commit, rater, ids), args.runs)  # noqa: B023
        peer = best(lambda: deliveries._prepare(commit, rater, ids), args.runs)  # noqa: B023
        print(f"{label:<42} ours {ours / n * 1e6:6.2f}   object path {peer / n * 1e6:6.2f}"
              f"   ours {ours / peer:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
