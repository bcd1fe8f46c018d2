"""Console benchmark: every console page's server time (p50, p95) with ``10 M × scale``
usage records and charges over the last 60 days and ``100 k × scale`` accounts (each with a
finalised invoice), beside the API's ``GET /healthz`` in the same run. Target at scale 1:
every page ≤ 200 ms p95.

    python perf/bench_console.py [--scale 0.01] [--requests 40] [--keep | --reuse DB]
                                 [--database-url DSN]

Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is used.
Data are generated server-side (INSERT ... SELECT from generate_series), and the charge
rollups compacted as ``serve`` compacts them on its clock. The server is
``billing-oss serve`` in its own process (controls, webhooks and the demo catalog off); a
client signed in like a browser (cookie, CSRF token) requests each page ``--requests`` times
one after the other after a warm-up, pages that name an account or a document picking a new
one each time; the time is from sending the request to the last byte, over loopback. The
home page keeps its revenue and aging summary for 30 s: its first request, which computes
them, is printed on its own line, and the home page is then timed again on a second server
that computes them on every request (``console.summary_seconds = 0``). The month's revenue
is also read straight on the database as the home page read it before (every account's
monthly rollup row), beside its read now (the account-less month level), same run.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import statistics
import time

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

from billing_oss.server.console import home
from billing_oss.server.store import api_keys

TARGET_P95_MS = 200.0
# The month's revenue as the home page read it before: every account's monthly row.
EARLIER_REVENUE = (
    "SELECT rtrim(currency) AS currency, sum(amount_micros)::bigint AS amount_micros,"
    " sum(records)::bigint AS records FROM charge_rollups_monthly WHERE day = $1"
    " GROUP BY currency ORDER BY currency")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def pages(accounts: int, invoices: tuple[int, int]) -> dict[str, object]:
    """Page name → path, or a function giving a new path each time."""
    def account() -> str:
        return f"/console/accounts/B{random.randint(1, accounts):06d}"

    def invoice() -> str:
        return f"/console/invoices/{random.randint(*invoices)}"

    return {"home": "/console/", "suspense": "/console/suspense",
            "suspense (filtered)": "/console/suspense?reason=NO_ZONE&older_than_days=0",
            "suspense record": "/console/fragments/suspense/1",
            "accounts": "/console/accounts", "account by number": None,
            "account 360": account, "invoices": "/console/invoices", "invoice": invoice,
            "jobs": "/console/jobs", "file ledger": "/console/files",
            "settlement": "/console/settlement", "integrations": "/console/integrations",
            "audit": "/console/audit", "portal (customer)": "/console/portal"}


async def timed(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(url, allow_redirects=False) as r:
        await r.read()
        if r.status not in (200, 302):
            raise RuntimeError(f"{url}: HTTP {r.status}")
    return (time.perf_counter() - started) * 1000


async def sign_in(base: str, token: str) -> aiohttp.ClientSession:
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(base + "/console/sign-in") as r:
        found = CSRF.search(await r.text())
    assert found is not None
    async with http.post(base + "/console/sign-in", data={"csrf": found[1], "api_key": token},
                         allow_redirects=False) as r:
        assert r.status == 302, await r.text()
    return http


async def measure(base: str, tokens: dict[str, str], accounts: int,
                  invoices: tuple[int, int], requests: int) -> list[tuple[str, list[float]]]:
    operator = await sign_in(base, tokens["viewer"])
    customer = await sign_in(base, tokens["customer"])
    plain = aiohttp.ClientSession()
    out: list[tuple[str, list[float]]] = []
    try:
        for name, path in pages(accounts, invoices).items():
            http = customer if "customer" in name else operator
            samples = []
            for i in range(requests + 3):  # three to warm up
                if path is None:  # a number lookup redirects to the account
                    url = f"/console/accounts?q=3361{random.randint(1, accounts):07d}"
                else:
                    url = path() if callable(path) else str(path)
                ms = await timed(http, base + url)
                if i >= 3:
                    samples.append(ms)
                elif i == 0 and name == "home":
                    # The home page keeps its revenue and aging summary 30 s: its first
                    # request computes them, and is shown on its own.
                    out.append(("home, summary computed", [ms]))
            out.append((name, samples))
        out.append(("GET /healthz (peer)", [await timed(plain, base + "/healthz")
                                            for _ in range(requests)]))
    finally:
        for session in (operator, customer, plain):
            await session.close()
    return out


async def month_revenue(pool: asyncpg.Pool, runs: int = 10) -> str:
    """The month's revenue as the home page reads it and as it read it before, alternately
    ``runs`` times after a warm-up, straight on the database; both must agree."""
    now = dt.datetime.now(dt.UTC)
    first = now.date().replace(day=1)
    ours: list[float] = []
    earlier: list[float] = []
    for i in range(runs + 1):
        began = time.perf_counter()
        got = await home.month_to_date(pool, now)
        middle = time.perf_counter()
        before = await pool.fetch(EARLIER_REVENUE, first)
        if i:
            ours.append((middle - began) * 1000)
            earlier.append((time.perf_counter() - middle) * 1000)
    if [(r["currency"], r["net"], r["charges"]) for r in got] != [
            (r["currency"], r["amount_micros"], r["records"]) for r in before]:
        raise RuntimeError(f"the month's revenue differs: {got} != {list(map(dict, before))}")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"month revenue on the database, {runs} times each: month level p50"
            f" {statistics.median(ours):.1f} ms, max {max(ours):.1f}; every account's row"
            f" (earlier) p50 {statistics.median(earlier):.1f} ms, max {max(earlier):.1f}"
            f" ({statistics.median(earlier) / statistics.median(ours):.1f}× at p50);"
            f" load average {load}")


async def main(scale: float, requests: int, dsn: str, keep: bool, reuse: str | None) -> int:
    usage, accounts = int(10_000_000 * scale), max(100, int(100_000 * scale))
    async with seeded_database(dsn, "bench_console", usage, accounts, keep=keep,
                               reuse=reuse) as (url, pool, how):
        async with pool.acquire() as conn:
            sizes = {t: await conn.fetchval(f"SELECT count(*) FROM {t}")
                     for t in ("usage_records", "accounts", "invoices", "suspense")}
            invoices = (await conn.fetchval("SELECT min(invoice_id) FROM invoices"),
                        await conn.fetchval("SELECT max(invoice_id) FROM invoices"))
        # What serve's clock does; done first so that no page waits for the fold of the seeded
        # deltas (readers of the levels take the compaction's lock shared).
        await compact(pool)
        tokens = {"viewer": (await api_keys.create(pool, "viewer", "bench")).token,
                  "customer": (await api_keys.create(pool, "customer", "bench",
                                                     account_id="B000001")).token}
        print(f"{sizes['usage_records']:,} usage records and charges over {DAYS} days,"
              f" {sizes['accounts']:,} accounts, {sizes['invoices']:,} invoices,"
              f" {sizes['suspense']:,} suspense records, {how}")
        async with serving(url) as base:
            results = await measure(base, tokens, accounts, invoices, requests)
        async with serving(url, {"BILLING_OSS_CONSOLE_SUMMARY_SECONDS": "0"}) as base:
            http = await sign_in(base, tokens["viewer"])
            try:
                samples = [await timed(http, base + "/console/") for _ in range(requests + 3)]
            finally:
                await http.close()
            results.insert(2, ("home, summary each time", samples[3:]))
        revenue = await month_revenue(pool)
    print(f"{requests} requests per page, one at a time, loopback; server: billing-oss serve")
    print(f"{'page':<24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    worst = 0.0
    for page, samples in results:
        print(f"{page:<24} {statistics.median(samples):8.1f} {percentile(samples, 0.95):8.1f}"
              f" {max(samples):8.1f}")
        if "peer" not in page and len(samples) > 1:
            worst = max(worst, percentile(samples, 0.95))
    print(revenue)
    met = worst <= TARGET_P95_MS
    print(f"target every page ≤ {TARGET_P95_MS:g} ms p95 (scale 1): worst page {worst:.1f} ms,"
          f" {'met' if met else 'NOT met'} at scale {scale:g}")
    return 0


if __name__ == "__main__":
    cli(__doc__.splitlines()[0], 40, "page", main)
