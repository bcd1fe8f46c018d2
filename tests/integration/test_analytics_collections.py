"""The collections report recomputed from the raw receivables ledger: billed, collected,
written off, the receivables at each month's close, the collected ratio and DSO, per month
and currency, with entries of every kind on month boundaries and in two currencies."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from billing_oss.core.money import format_micros
from billing_oss.server.analytics import reports
from tests.conftest import REPO
from tests.integration.api_harness import live_api

START, END = dt.date(2026, 1, 1), dt.date(2026, 4, 1)
MONTHS = [dt.date(2026, m, 1) for m in (1, 2, 3)]


async def _entry(conn: Any, account: str, kind: str, currency: str, micros: int, day: str,
                 **extra: Any) -> int:
    columns = ["account_id", "kind", "currency", "amount_micros", "entry_date", *extra]
    values = [account, kind, currency, micros, dt.date.fromisoformat(day), *extra.values()]
    marks = ", ".join(f"${i + 1}" for i in range(len(values)))
    entry_id: int = await conn.fetchval(
        f"INSERT INTO ledger_entries ({', '.join(columns)}) VALUES ({marks})"
        " RETURNING entry_id", *values)
    return entry_id


async def _payment(conn: Any, account: str, currency: str, micros: int, day: str) -> int:
    payment_id: int = await conn.fetchval(
        "INSERT INTO payments (account_id, amount_micros, currency, received_on, method)"
        " VALUES ($1, $2, $3, $4, 'transfer') RETURNING payment_id", account, micros,
        currency, dt.date.fromisoformat(day))
    await _entry(conn, account, "payment", currency, -micros, day, payment_id=payment_id)
    return payment_id


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool) -> asyncpg.Pool:
    async with pool.acquire() as conn, conn.transaction():
        for account, currency in (("L1", "EUR"), ("L2", "EUR"), ("L3", "USD")):
            await conn.execute("INSERT INTO accounts (account_id, currency) VALUES ($1, $2)",
                               account, currency)
        due = {"due_date": dt.date(2026, 6, 1)}
        old = await _entry(conn, "L1", "invoice", "EUR", 50_000_001, "2025-12-31", **due)
        jan = await _entry(conn, "L1", "invoice", "EUR", 120_000_007, "2026-01-01", **due)
        await _entry(conn, "L2", "invoice", "EUR", 33_333_333, "2026-01-31", **due)
        await _entry(conn, "L2", "fee", "EUR", 5_000_000, "2026-02-01", **due)
        await _entry(conn, "L1", "credit_note", "EUR", -10_000_000, "2026-02-14",
                     applies_to=jan)
        paid = await _payment(conn, "L1", "EUR", 90_000_000, "2026-02-28")
        await _entry(conn, "L1", "reversal", "EUR", 90_000_000, "2026-03-01",
                     payment_id=paid, reason="AC04")
        await _payment(conn, "L1", "EUR", 40_000_000, "2026-03-02")
        await _entry(conn, "L1", "write_off", "EUR", -50_000_001, "2026-03-10",
                     applies_to=old)
        await _entry(conn, "L1", "write_off_reversal", "EUR", 1_000_000, "2026-03-11",
                     applies_to=old)
        usd = await _entry(conn, "L3", "invoice", "USD", 7_000_000, "2026-01-15", **due)
        refunded = await _payment(conn, "L3", "USD", 9_000_000, "2026-01-20")
        await _entry(conn, "L3", "refund", "USD", 2_000_000, "2026-02-05",
                     payment_id=refunded)
        assert usd
        await _entry(conn, "L3", "invoice", "USD", 3, "2026-04-01", **due)  # after the range
    return pool


async def expected(pool: asyncpg.Pool) -> dict[Any, dict[str, Any]]:
    entries = await pool.fetch("SELECT kind, currency, amount_micros, entry_date"
                               " FROM ledger_entries")
    out: dict[Any, dict[str, Any]] = {}
    for month in MONTHS:
        close = (month + dt.timedelta(days=32)).replace(day=1)
        days = (close - month).days
        sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for e in entries:
            c = sums[e["currency"].strip()]
            if e["entry_date"] < close:
                c["receivables"] += e["amount_micros"]
            if month <= e["entry_date"] < close:
                c[e["kind"]] += e["amount_micros"]
        for currency, c in sums.items():
            billed = c["invoice"] + c["fee"] + c["credit_note"]
            collected = -(c["payment"] + c["refund"] + c["reversal"])

            def rounded(value: Fraction, places: str) -> str:
                exact = Decimal(value.numerator) / Decimal(value.denominator)
                return str(exact.quantize(Decimal(places), rounding=ROUND_HALF_EVEN))

            out[month, currency] = {
                "invoiced": format_micros(c["invoice"] + c["fee"]),
                "credited": format_micros(-c["credit_note"]), "billed": format_micros(billed),
                "collected": format_micros(collected),
                "written_off": format_micros(-(c["write_off"] + c["write_off_reversal"])),
                "receivables": format_micros(c["receivables"]),
                "collected_ratio": rounded(Fraction(collected, billed), "0.0001")
                if billed > 0 else None,
                "dso": rounded(Fraction(c["receivables"] * days, billed), "0.1")
                if billed > 0 else None}
    return out


async def test_collections_equal_the_raw_ledger(seeded: asyncpg.Pool) -> None:
    report = await reports.build(seeded, "collections", by=[], period="month", start=START,
                                 end=END)
    got = {(c.month, c.currency): {k: getattr(c, k) for k in (
        "invoiced", "credited", "billed", "collected", "written_off", "receivables",
        "collected_ratio", "dso")} for c in report.collections}
    want = await expected(seeded)
    assert got == want
    # Spelled out: February in EUR bills the fee less the credit note, and collects 90.
    feb = got[dt.date(2026, 2, 1), "EUR"]
    assert (feb["billed"], feb["collected"]) == ("-5", "90")
    assert feb["collected_ratio"] is None and feb["dso"] is None
    jan = got[dt.date(2026, 1, 1), "EUR"]
    assert jan["receivables"] == "203.333341" and jan["dso"] == "41.1"
    assert got[dt.date(2026, 3, 1), "EUR"]["written_off"] == "49.000001"
    assert "ledger_entries" in report.method


async def test_cli_csv_and_plot(seeded: asyncpg.Pool, database_url: str,
                                tmp_path: Path) -> None:
    env = {**os.environ, "BILLING_OSS_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists() else "python3",
        "-m", "billing_oss", "report", "collections", "--from", str(START), "--to", str(END),
        "--format", "csv", "--plot", str(tmp_path / "c.svg"), cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    want = await expected(seeded)
    rows = list(csv.DictReader(io.StringIO(out.decode())))
    assert {(dt.date.fromisoformat(r["month"]), r["currency"]): r["dso"] or None
            for r in rows} == {k: v["dso"] for k, v in want.items()}
    svg = (tmp_path / "c.svg").read_text()
    assert "Collections (EUR) by month" in svg and "amount (USD)" in svg


async def test_http_collections(seeded: asyncpg.Pool, database_url: str) -> None:
    async with live_api(seeded, database_url) as api:
        status, body = await api.call("GET", "/v1/reports/collections", "viewer",
                                      params={"from": str(START), "to": str(END)})
    assert status == 200, body
    want = await expected(seeded)
    assert {(dt.date.fromisoformat(c["month"]), c["currency"]): c["collected_ratio"]
            for c in body["collections"]} == {k: v["collected_ratio"] for k, v in want.items()}
