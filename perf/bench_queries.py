"""Operator queries at scale: every list and total the API offers, at page 1 and page 50
(following the cursors), p50 and p99 of the server round trip, with ``10 M × scale`` usage
records and charges over the last 60 days and ``100 k × scale`` accounts, beside a
primary-key read through the API (``GET /v1/invoices/{id}``) in the same run. Target at
scale 1: every list and total ≤ 50 ms p99 at any depth.

    python perf/bench_queries.py [--scale 0.01] [--requests 100] [--keep | --reuse DB]
                                 [--database-url DSN] [--only WORD,WORD]

Data are generated as ``perf/bench_console.py`` generates them (``perf/seeded.py``), and the
charge rollups compacted as ``serve`` compacts them on its clock. The
server is ``billing-oss serve`` in its own process; an admin key requests each query
``--requests`` times one after the other after three warm-ups, the per-account ones picking
a new account each time. Page 50 is reached once by following 49 cursors (that walk is
printed too), then its URL is requested like page 1. A list shorter than 50 pages shows
its last page's depth. The time is from sending the request to the last byte, over loopback.
A query or page whose samples pass ``BUDGET_S`` stops there once it has ``MIN_SAMPLES``
(its row says how many it took: p99 of so few is their maximum), so that a whole-period
export taking seconds a time does not hold the run for an hour; the primary-key peer always
takes ``--requests``. ``--only`` measures the queries whose name holds one of the words
(and the peer; the earlier totals query only with the totals over whole days, the exports
only with ``journal``), to measure again what a change touched on a kept database.
The ledger journal's CSV and FEC of the whole period are then
streamed ``EXPORT_RUNS`` times each: time to the first byte, to the last, and the server's
peak resident memory (VmHWM) before and after them. The totals across accounts over whole
days are also timed as the earlier query read them (Σ of every account's daily rollup rows,
straight on the database),
``EARLIER_RUNS`` times after one warm-up (~20 s a time at scale 1): our figure beside it is
a ratio from the same run. The ledger journal's totals (read from the days kept at posting,
migration 1543) are timed beside the earlier way too: the builder over every entry of the
period by chunks (``export.totals_built``, in one snapshot on the database), ``BUILT_RUNS``
times after one warm-up, its totals checked equal to ours to the micro-unit, and the plan of
our read printed with its buffers (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg
from seeded import (  # perf/ on sys.path
    DAYS,
    cli,
    compact,
    percentile,
    seeded_database,
    serving,
)

from billing_oss.server.collections import journal_days_repo
from billing_oss.server.config import LedgerConfig
from billing_oss.server.ledger import export
from billing_oss.server.store import api_keys, traffic_repo

TARGET_P99_MS = 50.0
DEPTH = 50
BUDGET_S = 60.0  # per query and page, past the warm-ups
MIN_SAMPLES = 5
EARLIER_RUNS = 5
BUILT_RUNS = 3
EXPORT_RUNS = 3
SIREN = "552100554"  # any 9 digits: the FEC's name needs one
# The earlier form of totals across accounts over whole days: every account's rollup rows.
EARLIER_TOTALS = (
    "SELECT rtrim(currency), sum(records + reversals), sum(reversals),"
    " sum(amount_micros::numeric - reversed_micros), sum(reversed_micros::numeric)"
    " FROM charge_rollups WHERE day >= $1 AND day < $2 GROUP BY 1")
# The earlier read of the partial end days of a period from 12:34 to 12:34 across accounts:
# their charges, from 12:34 to midnight and from midnight to 12:34 (the hourly level of
# migration 1512 leaves only the minutes outside whole hours to the charges).
EARLIER_PARTIAL = " UNION ALL ".join(
    "(SELECT rtrim(currency), count(*) FILTER (WHERE kind = 'charge'),"
    " count(*) FILTER (WHERE kind = 'reversal'),"
    " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'charge'), 0),"
    " coalesce(sum(amount_micros::numeric) FILTER (WHERE kind = 'reversal'), 0)"
    f" FROM charges WHERE event_time >= {a} AND event_time < {b} GROUP BY 1)"
    for a, b in (("$1::date + time '12:34'", "$1::date + 1"),
                 ("$2::date", "$2::date + time '12:34'")))


def queries(accounts: int, first_day: str, last_day: str) -> dict[str, Callable[[], str]]:
    """Query name → a function giving its path (a new account each time where it names
    one). Lists take ``&cursor=`` after their query."""
    def account() -> str:
        return f"B{random.randint(1, accounts):06d}"

    def fixed(path: str) -> Callable[[], str]:
        return lambda: path

    return {
        "usage, all accounts": fixed("/v1/usage?limit=50"),
        "usage, all, kind=voice": fixed("/v1/usage?kind=voice&limit=50"),
        f"usage, all, from {first_day}": fixed(f"/v1/usage?from={first_day}T00:00:00Z"),
        "usage, one account": lambda: f"/v1/usage?account_id={account()}",
        "account usage (customer view)": lambda: f"/v1/accounts/{account()}/usage",
        "charges, all accounts": fixed("/v1/charges?limit=50"),
        "charges, all, kind=reversal": fixed("/v1/charges?kind=reversal"),
        "charges, one account": lambda: f"/v1/charges?account_id={account()}",
        "charge totals, all accounts": fixed("/v1/charges/totals"),
        f"totals, all, days {first_day}..{last_day}": fixed(
            f"/v1/charges/totals?from={first_day}T00:00:00Z&to={last_day}T00:00:00Z"),
        "totals, all, from 12:34 to 12:34": fixed(
            f"/v1/charges/totals?from={first_day}T12:34:00Z&to={last_day}T12:34:00Z"),
        "charge totals, one account": lambda: f"/v1/charges/totals?account_id={account()}",
        "suspense": fixed("/v1/suspense"),
        "suspense, reason=NO_ZONE": fixed("/v1/suspense?reason=NO_ZONE"),
        "accounts": fixed("/v1/accounts"),
        "invoices": fixed("/v1/invoices"),
        "invoices, one account": lambda: f"/v1/invoices?account_id={account()}",
        "credit notes": fixed("/v1/credit-notes"),
        "payments": fixed("/v1/payments"),
        "files": fixed("/v1/files"),
        "bill runs": fixed("/v1/bill-runs"),
        "rerate jobs": fixed("/v1/rerate-jobs"),
        "anomalies": fixed("/v1/anomalies"),
        "ledger journal": fixed(f"/v1/ledger/journal?from={first_day}&to={last_day}"),
        "ledger journal totals": fixed(
            f"/v1/ledger/journal/totals?from={first_day}&to={last_day}"),
        "aging, today": fixed("/v1/aging"),
        "aging, one account": lambda: f"/v1/aging?account_id={account()}",
    }


async def get(http: aiohttp.ClientSession, url: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    async with http.get(url) as r:
        body = await r.read()
        ms = (time.perf_counter() - started) * 1000
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}: {body[:300]!r}")
    parsed: dict[str, object] = json.loads(body)
    if len(body) >= 1_000_000:  # an export, not a page: its size bounds its time
        parsed["_bytes"] = len(body)
    return ms, parsed


def with_cursor(path: str, cursor: str) -> str:
    return path + ("&" if "?" in path else "?") + "cursor=" + quote(cursor)


async def deep(http: aiohttp.ClientSession, base: str, path: str) -> tuple[str, int, float]:
    """The URL of page ``DEPTH`` (or of the last page, if fewer), its depth, and the time
    the walk to it took."""
    url, depth, started = path, 1, time.perf_counter()
    while depth < DEPTH:
        _, body = await get(http, base + url)
        cursor = body.get("next_cursor")
        if not isinstance(cursor, str):
            break
        url, depth = with_cursor(path, cursor), depth + 1
    return url, depth, (time.perf_counter() - started) * 1000


async def sample(http: aiohttp.ClientSession, base: str, path: Callable[[], str],
                 requests: int, budget_s: float = BUDGET_S) -> list[float]:
    """``requests`` round trips after three warm-ups, fewer (not under ``MIN_SAMPLES``) if
    they pass ``budget_s`` in all."""
    for _ in range(3):
        _, body = await get(http, base + path())
    if "_bytes" in body:
        print(f"{path()}: {body['_bytes'] / 1e6:.1f} MB a response", flush=True)
    out: list[float] = []
    while len(out) < requests and (len(out) < MIN_SAMPLES or sum(out) < budget_s * 1000):
        ms, _ = await get(http, base + path())
        out.append(ms)
    return out


def cut(samples: list[float], requests: int) -> str:
    """The row's note when its budget stopped it short."""
    return f"{len(samples)} requests (budget {BUDGET_S:g} s)" if len(samples) < requests else ""


Row = tuple[str, str, list[float], str]
HEADER = f"{'query':<40} {'page':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"


def line(row: Row) -> str:
    """A row as the table prints it; also printed as soon as it is measured, so that a run
    stopped before its end (the earlier totals query alone takes ~20 s a time at scale 1)
    still shows what it measured."""
    query, depth, samples, note = row
    return (f"{query:<40} {depth:>4} {statistics.median(samples):8.1f}"
            f" {percentile(samples, 0.99):8.1f} {max(samples):8.1f}  {note}")


async def measure(base: str, token: str, accounts: int, invoices: tuple[int, int],
                  requests: int, first_day: str, last_day: str) -> list[Row]:
    http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})
    out: list[Row] = []
    try:
        out.append(("GET /v1/invoices/{id} (peer)", "pk", await sample(
            http, base, lambda: f"/v1/invoices/{random.randint(*invoices)}", requests,
            budget_s=float("inf")), ""))
        print(line(out[-1]), flush=True)
        for name, path in queries(accounts, first_day, last_day).items():
            if ONLY and not any(word in name for word in ONLY):
                continue
            samples = await sample(http, base, path, requests)
            out.append((name, "1", samples, cut(samples, requests)))
            print(line(out[-1]), flush=True)
            if "totals" in name:
                continue
            url, depth, walk_ms = await deep(http, base, path())
            if depth > 1:
                samples = await sample(http, base, lambda u=url: u, requests)
                out.append((name, str(depth), samples,
                            " ".join(filter(None, (f"walk {walk_ms / 1000:.2f} s",
                                                   cut(samples, requests))))))
                print(line(out[-1]), flush=True)
    finally:
        await http.close()
    return out


def server_peak_kb() -> int:
    """The peak resident memory of ``serve``, our child process (VmHWM, kB)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                for row in (stat.parent / "status").read_text().splitlines():
                    if row.startswith("VmHWM:"):
                        return int(row.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return 0


async def exports(base: str, token: str, first_day: str, last_day: str) -> list[str]:
    """The journal's streamed CSV and FEC of the period: first byte, last byte, size, and
    the server's peak memory before and after (lines to print)."""
    out = []
    span = f"from={first_day}&to={last_day}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        for form in (".csv", ".fec"):
            before = server_peak_kb()
            first, whole, size = [], [], 0
            for _ in range(EXPORT_RUNS):
                started = time.perf_counter()
                async with http.get(f"{base}/v1/ledger/journal{form}?{span}") as r:
                    if r.status != 200:
                        raise RuntimeError(f"{form}: HTTP {r.status}")
                    size = len(await r.content.readany())
                    first.append((time.perf_counter() - started) * 1000)
                    async for chunk in r.content.iter_chunked(1 << 16):
                        size += len(chunk)
                whole.append((time.perf_counter() - started) * 1000)
            out.append(
                f"journal{form} of the period, {EXPORT_RUNS} times: first byte p50"
                f" {statistics.median(first):.1f} ms, whole {statistics.median(whole):,.0f}"
                f" ms (max {max(whole):,.0f}), {size / 1e6:.1f} MB; server peak RSS"
                f" {before / 1024:.0f} → {server_peak_kb() / 1024:.0f} MB; load average"
                f" {load_average()}")
            print(out[-1], flush=True)
    return out


async def built_totals(pool: asyncpg.Pool, first: dt.date, last: dt.date
                       ) -> tuple[list[float], list[str]]:
    """The earlier totals (the builder over every entry, by chunks) ``BUILT_RUNS`` times
    after a warm-up, checked equal to the days' totals; then the plan of the days' read.
    The times in ms, and the lines of the check and the plan."""
    chart, times = LedgerConfig(), []
    for i in range(BUILT_RUNS + 1):
        began = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                            readonly=True):
            earlier = await export.totals_built(conn, chart, first, last)
        if i >= 1:
            times.append((time.perf_counter() - began) * 1000)
    ours = await export.totals(pool, chart, first, last)
    if ours != earlier:
        raise SystemExit(f"the days' totals {ours} differ from the builder's {earlier}")
    plan = await pool.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + journal_days_repo.TOTALS,
                            first, last)
    return times, [
        f"ledger journal totals {first} .. {last}: {ours.entries:,} entries, debit ="
        f" credit = {export.amount(ours.debit_micros, chart.currency)}, equal to the"
        f" builder's to the micro-unit; plan of the days' read:",
        *("    " + r[0] for r in plan)]


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


async def main(scale: float, requests: int, dsn: str, keep: bool, reuse: str | None) -> int:
    usage, accounts = int(10_000_000 * scale), max(100, int(100_000 * scale))
    async with seeded_database(dsn, "bench_queries", usage, accounts, keep=keep,
                               reuse=reuse) as (url, pool, how):
        async with pool.acquire() as conn:
            sizes = {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                     for t in ("usage_records", "charges", "accounts", "invoices")}
            invoices = (await conn.fetchval("SELECT min(invoice_id) FROM invoices"),
                        await conn.fetchval("SELECT max(invoice_id) FROM invoices"))
            days = await conn.fetchrow(
                "SELECT (min(event_time) AT TIME ZONE 'UTC')::date + 1 AS first,"
                " (max(event_time) AT TIME ZONE 'UTC')::date AS last FROM usage_records")
        compacted_s = await compact(pool)
        rollups = (await pool.fetchval("SELECT count(*) FROM charge_rollups"),
                   await pool.fetchval("SELECT count(*) FROM charge_totals"),
                   await pool.fetchval("SELECT count(*) FROM charge_hour_totals"))
        token = (await api_keys.create(pool, "admin", "bench")).token
        print(f"{sizes['usage_records']:,} usage records, {sizes['charges']:,} charges over"
              f" {DAYS} days, {sizes['accounts']:,} accounts, {sizes['invoices']:,} invoices,"
              f" {how}; compacted in {compacted_s:.0f} s: {rollups[0]:,} daily rollup rows"
              f" per account, {rollups[1]:,} without the account, {rollups[2]:,} hourly"
              f" without the account; load average"
              f" {load_average()}")
        print(HEADER, flush=True)
        async with serving(url, {"BILLING_OSS_LEDGER_SIREN": SIREN}) as base:
            results = await measure(base, token, accounts, invoices, requests,
                                    days["first"].isoformat(), days["last"].isoformat())
            streamed = await exports(base, token, days["first"].isoformat(),
                                     days["last"].isoformat()) if selected("journal") else []
        earlier = []
        for i in range(EARLIER_RUNS + 1 if selected("totals, all, days") else 0):
            began = time.perf_counter()
            await pool.fetch(EARLIER_TOTALS, days["first"], days["last"])
            if i >= 1:
                earlier.append((time.perf_counter() - began) * 1000)
        built = await built_totals(pool, days["first"], days["last"]) \
            if selected("ledger journal totals") else None
        partial: dict[str, list[float]] = {"earlier": [], "ours": []}
        span = traffic_repo.Period(
            start=dt.datetime.combine(days["first"], dt.time(12, 34), dt.UTC),
            end=dt.datetime.combine(days["last"], dt.time(12, 34), dt.UTC))
        for i in range(EARLIER_RUNS + 1 if selected("totals, all, from 12:34 to 12:34") else 0):
            # both on the database, one after the other
            began = time.perf_counter()
            await pool.fetch(EARLIER_PARTIAL, days["first"], days["last"])
            middle = time.perf_counter()
            await traffic_repo.totals(pool, span)
            if i >= 1:
                partial["earlier"].append((middle - began) * 1000)
                partial["ours"].append((time.perf_counter() - middle) * 1000)
    print(f"{requests} requests per query and page after 3 warm-ups (fewer past {BUDGET_S:g} s,"
          f" at least {MIN_SAMPLES}), one at a time, loopback; server: billing-oss serve")
    print(HEADER)
    worst, worst_name = 0.0, ""
    for row in results:
        query, depth, samples, _ = row
        p99 = percentile(samples, 0.99)
        print(line(row))
        if depth != "pk" and p99 > worst:
            worst, worst_name = p99, f"{query} page {depth}"
    print("\n".join(streamed))
    if earlier:
        ours = next(r[2] for r in results if r[0].startswith("totals, all, days"))
        ratio = statistics.median(earlier) / statistics.median(ours)
        print(f"totals, all, whole days: ours p50 {statistics.median(ours):.1f} ms, p99"
              f" {percentile(ours, 0.99):.1f} ms (server round trip); the earlier query alone"
              f" on the database, same run, {len(earlier)} times: p50"
              f" {statistics.median(earlier):.1f} ms, p99"
              f" {percentile(earlier, 0.99):.1f} ms ({ratio:.1f}× at p50); load average"
              f" {load_average()}")
    if partial["ours"]:
        e, o = partial["earlier"], partial["ours"]
        print(f"totals, all, 12:34 to 12:34 on the database, same run, {len(o)} times each:"
              f" ours (the whole query) p50 {statistics.median(o):.1f} ms, max {max(o):.1f} ms;"
              f" the earlier read of the two partial days' charges alone p50"
              f" {statistics.median(e):.1f} ms, max {max(e):.1f} ms"
              f" ({statistics.median(e) / statistics.median(o):.1f}× at p50); load average"
              f" {load_average()}")
    if built:
        ours = next(r[2] for r in results if r[0] == "ledger journal totals")
        times, lines = built
        print("\n".join(lines))
        print(f"ledger journal totals of the period: ours p50 {statistics.median(ours):.1f} ms,"
              f" p99 {percentile(ours, 0.99):.1f} ms (server round trip); the earlier build"
              f" by chunks (export.totals_built) on the database, same run, {len(times)}"
              f" times: p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms"
              f" ({statistics.median(times) / statistics.median(ours):.0f}× at p50); load"
              f" average {load_average()}")
    met = worst <= TARGET_P99_MS
    print(f"target every list and total ≤ {TARGET_P99_MS:g} ms p99 (scale 1): worst"
          f" {worst:.1f} ms ({worst_name}), {'met' if met else 'NOT met'} at scale {scale:g}")
    return 0


def selected(name: str) -> bool:
    return not ONLY or any(word in name for word in ONLY)


def take_only(argv: list[str]) -> tuple[str, ...]:
    """``--only WORD,WORD`` taken out of ``argv`` (the scale benchmarks' common options
    stay for ``seeded.cli``)."""
    if "--only" not in argv:
        return ()
    at = argv.index("--only")
    words = argv[at + 1] if at + 1 < len(argv) else ""
    del argv[at:at + 2]
    return tuple(w.strip() for w in words.split(",") if w.strip())


ONLY: tuple[str, ...] = ()

if __name__ == "__main__":
    ONLY = take_only(sys.argv)
    cli(__doc__.splitlines()[0], 100, "query", main)
