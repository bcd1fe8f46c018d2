"""The MRR report recomputed from the raw tables: MRR and ARR per month × product × currency
from subscriptions and products, new/churned/net accounts from subscriptions alone, and ARPU
from the raw charges — to the micro-unit, with subscriptions starting and ending exactly on
month boundaries, within one month, and in a second currency."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from billing_oss.core.money import format_micros
from billing_oss.server.analytics import reports
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.store import catalog_repo
from tests.conftest import REPO
from tests.integration.api_harness import Api, live_api, seed_usage

START, END = dt.date(2026, 1, 1), dt.date(2026, 5, 1)
MONTHS = [dt.date(2026, m, 1) for m in range(1, 5)]
UTC = dt.UTC

# account, currency, [(product, valid_from, valid_to)]
SUBSCRIBERS: list[tuple[str, str, list[tuple[str, str, str | None]]]] = [
    ("N1", "EUR", [("mobile-s", "2026-02-15T10:00:00Z", None)]),  # new in February
    ("C1", "EUR", [("business-pro", "2025-12-01T00:00:00Z", "2026-03-01T00:00:00Z")]),
    ("C2", "EUR", [("mobile-s", "2026-01-10T00:00:00Z", "2026-01-20T00:00:00Z")]),
    ("M1", "EUR", [("mobile-s", "2026-01-05T00:00:00Z", None),
                   ("iot-connect", "2026-01-05T00:00:00Z", "2026-04-01T00:00:00Z")]),
    ("X1", "EUR", [("mobile-s", "2026-03-01T00:00:00Z", None)]),  # new in March, not Feb
    ("R1", "EUR", [("mobile-s", "2025-11-01T00:00:00Z", "2026-02-01T00:00:00Z"),
                   ("mobile-s", "2026-03-20T00:00:00Z", None)]),  # churns, comes back
    ("U2", "USD", [("usd-plan", "2026-01-31T23:59:59Z", None)]),
    ("U3", "USD", [("usd-plan", "2026-01-01T00:00:00Z", "2026-02-10T00:00:00Z"),
                   ("unpriced", "2026-01-01T00:00:00Z", None)]),  # no such product: no MRR
]


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    await catalog_repo.load_catalog(pool, read_catalog_file(REPO / "config/demo-catalog.json"))
    await pool.execute("INSERT INTO products (product_id, name, currency, recurring_fee_micros)"
                       " VALUES ('usd-plan', 'USD plan', 'USD', 5550001)")
    tariff = await pool.fetchval("SELECT tariff_id FROM tariffs ORDER BY 1 LIMIT 1")
    for account, currency, subscriptions in SUBSCRIBERS:
        await pool.execute("INSERT INTO accounts (account_id, currency) VALUES ($1, $2)",
                           account, currency)
        for product, start, end in subscriptions:
            await pool.execute(
                "INSERT INTO subscriptions (account_id, tariff_id, product, valid_from,"
                " valid_to) VALUES ($1, $2, $3, $4::text::timestamptz,"
                " $5::text::timestamptz)", account, tariff, product, start, end)
    # Usage money in every month, odd amounts so that ARPU needs rounding.
    for i, (account, currency, _) in enumerate(SUBSCRIBERS * 2):
        for month in (1, 2, 3, 4):
            await seed_usage(pool, account, f"2026-{month:02d}-{i % 27 + 1:02d}"
                             f"T12:00:00Z", amount_micros=1_000_003 * (i + month),
                             currency=currency)
    # A reversal: money is net of it.
    await seed_usage(pool, "C1", "2026-02-03T00:00:00Z", amount_micros=-700_001)
    return pool


def _close(month: dt.date) -> dt.datetime:
    return dt.datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)


def _open(month: dt.date) -> dt.datetime:
    return dt.datetime(month.year, month.month, 1, tzinfo=UTC)


def _active_at(s: Any, t: dt.datetime) -> bool:
    """Active at the last moment before ``t``."""
    return bool(s["valid_from"] < t and (s["valid_to"] is None or s["valid_to"] >= t))


async def expected(pool: asyncpg.Pool) -> tuple[dict[Any, Any], dict[Any, Any]]:
    subs = await pool.fetch("SELECT account_id, product, valid_from, valid_to FROM subscriptions")
    products = {r["product_id"]: r for r in await pool.fetch("SELECT * FROM products")}
    currency_of = {r["account_id"]: r["currency"].strip()
                   for r in await pool.fetch("SELECT account_id, currency FROM accounts")}
    charges = await pool.fetch("SELECT event_time, currency, amount_micros FROM charges")
    mrr: dict[Any, list[Any]] = {}
    accounts: dict[Any, dict[str, Any]] = {}
    for month in MONTHS:
        for s in subs:
            p = products.get(s["product"])
            if p is not None and _active_at(s, _close(month)):
                row = mrr.setdefault((month, s["product"], p["currency"].strip()),
                                     [0, 0, set()])
                row[0] += p["recurring_fee_micros"]
                row[1] += 1
                row[2].add(s["account_id"])
        by_currency: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for s in subs:
            sets = by_currency[currency_of[s["account_id"]]]
            if _active_at(s, _open(month)):
                sets["opening"].add(s["account_id"])
            if _active_at(s, _close(month)):
                sets["closing"].add(s["account_id"])
            if s["valid_from"] < _close(month) and (s["valid_to"] is None
                                                    or s["valid_to"] > _open(month)):
                sets["subscribed"].add(s["account_id"])
        revenue: dict[str, int] = defaultdict(int)
        for c in charges:
            if _open(month) <= c["event_time"] < _close(month):
                revenue[c["currency"].strip()] += c["amount_micros"]
        for currency in set(by_currency) | set(revenue):
            sets = by_currency[currency]
            n = len(sets["subscribed"])
            accounts[month, currency] = {
                "opening": len(sets["opening"]), "closing": len(sets["closing"]),
                "new": len(sets["closing"] - sets["opening"]),
                "churned": len(sets["opening"] - sets["closing"]),
                "net": len(sets["closing"]) - len(sets["opening"]), "subscribed": n,
                "revenue": format_micros(revenue[currency]),
                "arpu": format_micros(round(Fraction(revenue[currency], n))) if n else None}
    return ({k: [format_micros(v[0]), format_micros(12 * v[0]), v[1], len(v[2])]
             for k, v in mrr.items()}, accounts)


async def test_mrr_accounts_and_arpu_equal_the_raw_tables(seeded: asyncpg.Pool) -> None:
    report = await reports.build(seeded, "mrr", by=[], period="month", start=START, end=END)
    want_mrr, want_accounts = await expected(seeded)
    assert {(r.month, r.product, r.currency): [r.mrr, r.arr, r.subscriptions, r.accounts]
            for r in report.mrr} == want_mrr
    got = {(a.month, a.currency): {"opening": a.opening, "closing": a.closing, "new": a.new,
                                   "churned": a.churned, "net": a.net,
                                   "subscribed": a.subscribed, "revenue": a.revenue,
                                   "arpu": a.arpu} for a in report.accounts}
    assert got == want_accounts
    # The boundaries, spelled out: C1 ends at February's close (churned in March), X1
    # starts there (new in March), C2 lives ten days in January (neither new nor churned).
    eur = {a.month.month: a for a in report.accounts if a.currency == "EUR"}
    assert "mobile-s" in {r.product for r in report.mrr}
    assert {r.product for r in report.mrr if r.currency == "USD"} == {"usd-plan"}
    assert eur[3].churned >= 1 and eur[3].new >= 2
    assert [r.mrr for r in report.mrr if r.product == "usd-plan"] == ["11.100002", "5.550001",
                                                                      "5.550001", "5.550001"]
    assert "active at each UTC month's close" in report.method


async def test_an_unaligned_range_covers_whole_months(seeded: asyncpg.Pool) -> None:
    report = await reports.build(seeded, "mrr", by=[], period="month",
                                 start=dt.date(2026, 2, 10), end=dt.date(2026, 3, 2))
    assert (report.start, report.end) == (dt.date(2026, 2, 1), dt.date(2026, 4, 1))
    assert {r.month for r in report.mrr} == {dt.date(2026, 2, 1), dt.date(2026, 3, 1)}


def test_half_even_division() -> None:
    half_even = reports._half_even
    assert [half_even(n, 2) for n in (1, 3, 5, -1, -3)] == [0, 2, 2, 0, -2]
    assert [half_even(n, 3) for n in (1, 2, 4, 5, -1, -2)] == [0, 1, 1, 2, 0, -1]


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "BILLING_OSS_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else "python3",
        "-m", "billing_oss", "report", "mrr", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_table_csv_and_plot(seeded: asyncpg.Pool, database_url: str,
                                      tmp_path: Path) -> None:
    want_mrr, want_accounts = await expected(seeded)
    status, out, err = await cli(database_url, "--from", str(START), "--to", str(END),
                                 "--format", "csv", "--plot", str(tmp_path / "mrr.svg"))
    assert status == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(dt.date.fromisoformat(r["month"]), r["product"], r["currency"]):
            [r["mrr"], r["arr"], int(r["subscriptions"]), int(r["accounts"])]
            for r in rows if r["product"] != "(all)"} == want_mrr
    for r in rows:
        if r["product"] == "(all)":
            a = want_accounts[dt.date.fromisoformat(r["month"]), r["currency"]]
            assert (int(r["accounts"]), int(r["new"]), int(r["churned"]), int(r["net"]),
                    r["revenue"], r["arpu"] or None) == (a["closing"], a["new"], a["churned"],
                                                         a["net"], a["revenue"], a["arpu"])
    svg = (tmp_path / "mrr.svg").read_text()
    assert "MRR (EUR) at each month" in svg and "EUR per month" in svg
    status, out, _ = await cli(database_url, "--from", str(START), "--to", str(END))
    assert status == 0 and out.splitlines()[0].split()[:4] == ["month", "currency", "product",
                                                                "mrr"]
    status, out, err = await cli(database_url, "--from", "2026-13-01")
    assert status == 1 and not out and err.count("\n") == 1


@pytest.fixture(scope="module")
async def api(seeded: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with live_api(seeded, database_url) as client:
        yield client


async def test_http_mrr(api: Api, seeded: asyncpg.Pool) -> None:
    status, body = await api.call("GET", "/v1/reports/mrr", "viewer",
                                  params={"from": str(START), "to": str(END)})
    assert status == 200, body
    want_mrr, want_accounts = await expected(seeded)
    assert {(dt.date.fromisoformat(r["month"]), r["product"], r["currency"]):
            [r["mrr"], r["arr"], r["subscriptions"], r["accounts"]]
            for r in body["mrr"]} == want_mrr
    assert {(dt.date.fromisoformat(a["month"]), a["currency"]): a["arpu"]
            for a in body["accounts"]} == {k: v["arpu"] for k, v in want_accounts.items()}
    assert json.dumps(body).count('"mrr"') >= 1
