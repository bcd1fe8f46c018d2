"""`/v1/payments`, `/v1/aging`, `/v1/statements` and the `payment` / `aging` verbs over a
live API: one deposit paying several invoices oldest first, named allocations, an
overpayment consumed by the next invoice, refunds and reversals re-opening invoices, the
422s that name the field, idempotent recording, audit rows and outbox events."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
import sys

import asyncpg
import msgspec

from billing_oss.server.collections import aging
from billing_oss.server.http.collections import aging_line
from billing_oss.server.store import audit
from tests.conftest import REPO
from tests.integration import collections_seed as seed
from tests.integration.api_harness import Api, api  # noqa: F401

D = dt.date(2026, 2, 1)


async def invoices(pool: asyncpg.Pool, account: str, *euros: int) -> list[int]:
    async with pool.acquire() as conn:
        await seed.account(conn, account)
        return [await seed.invoice(conn, account, e * 1_000_000, D + dt.timedelta(days=i))
                for i, e in enumerate(euros)]


async def test_one_deposit_pays_several_invoices_then_refund_and_reversal(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    i1, i2, i3 = await invoices(pool, "C1", 100, 50, 30)
    status, p1 = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": "C1", "amount": "120.00", "received_on": "2026-02-20",
        "reference": "SEPA 1", "external_id": "bank-1"})
    assert status == 201, p1
    assert [(a["invoice_id"], a["amount"]) for a in p1["allocations"]] == [
        (i1, "100.00"), (i2, "20.00")]
    assert (p1["allocated"], p1["unapplied"], p1["currency"]) == ("120.00", "0.00", "EUR")
    status, again = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": "C1", "amount": "120.00", "received_on": "2026-02-20",
        "external_id": "bank-1"})
    assert status == 200 and again["payment_id"] == p1["payment_id"]

    status, p2 = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": "C1", "amount": "100", "received_on": "2026-02-21",
        "allocations": [{"invoice_id": i3, "amount": "30"}, {"invoice_id": i2}]})
    assert status == 201, p2
    assert [(a["invoice_id"], a["amount"]) for a in p2["allocations"]] == [
        (i2, "30.00"), (i3, "30.00")]
    assert p2["unapplied"] == "40.00"  # an overpayment: a credit balance

    async with pool.acquire() as conn:  # the next invoice consumes the credit
        i4 = await seed.invoice(conn, "C1", 25_000_000, dt.date(2026, 3, 1))
    status, p2 = await api.call("GET", f"/v1/payments/{p2['payment_id']}", "viewer")
    assert (i4, "25.00") in [(a["invoice_id"], a["amount"]) for a in p2["allocations"]]
    assert p2["unapplied"] == "15.00"

    # A refund takes unapplied money first, then releases the newest allocation.
    status, p2 = await api.call("POST", f"/v1/payments/{p2['payment_id']}/refunds", "operator",
                                json={"amount": "20", "date": "2026-03-02",
                                      "reason": "customer asked"})
    assert status == 201, p2
    assert (p2["refunded"], p2["unapplied"]) == ("20.00", "0.00")
    assert (i4, "20.00") in [(a["invoice_id"], a["amount"]) for a in p2["allocations"]]

    # A bounced payment re-opens what it paid.
    status, p1 = await api.call("POST", f"/v1/payments/{p1['payment_id']}/reversal",
                                "operator", json={"date": "2026-03-05", "reason": "AC04"})
    assert status == 201, p1
    assert (p1["allocations"], p1["reversed"], p1["unapplied"]) == ([], "120.00", "0.00")
    status, _ = await api.call("POST", f"/v1/payments/{p1['payment_id']}/reversal",
                               "operator", json={"date": "2026-03-05", "reason": "AC04"})
    assert status == 409

    status, aged = await api.call("GET", "/v1/aging", "viewer",
                                  params={"as_of": "2026-03-31", "account_id": "C1"})
    assert status == 200, aged
    # open: i1 100, i2 20 (bounced part), i4 5 → 125; nothing unapplied
    assert aged["totals"][0]["total"] == "125.00" and aged["totals"][0]["credit"] == "0.00"
    assert aged["buckets"] == ["current", "1-30", "31-60", "61-90", "90+"]
    status, stmt = await api.call("GET", "/v1/statements", "viewer", params={
        "account_id": "C1", "from": "2026-02-01", "to": "2026-03-31"})
    assert status == 200, stmt
    assert stmt["opening"] == {} and stmt["closing"] == {"EUR": "125.00"}
    assert [e["kind"] for e in stmt["entries"]] == [
        "invoice", "invoice", "invoice", "payment", "payment", "invoice", "refund", "reversal"]
    assert stmt["entries"][-1]["reason"] == "AC04"

    trail = await audit.entries(pool, f"payment:{p2['payment_id']}")
    assert [e.action for e in trail] == ["payment.record", "payment.refund"]
    types = await pool.fetch("SELECT type FROM outbox_events WHERE account_id = 'C1'"
                             " ORDER BY seq")
    assert [t["type"] for t in types] == ["payment.received", "payment.received",
                                          "payment.refunded", "payment.reversed"]
    pages = await api.pages("/v1/payments", {"account_id": "C1", "limit": 1})
    assert [len(p) for p in pages] == [1, 1]


async def test_bad_input_is_a_422_naming_the_field(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    (i1,) = await invoices(pool, "C2", 10)
    await invoices(pool, "C3")
    base = {"account_id": "C2", "amount": "5", "received_on": "2026-02-10"}
    cases = [
        ({**base, "currency": "USD"}, "$.currency"),
        ({**base, "amount": "-5"}, "$.amount"),
        ({**base, "amount": "0"}, "$.amount"),
        ({**base, "amount": "5.001"}, "$.amount"),
        ({**base, "amount": "20", "allocations": [{"invoice_id": i1, "amount": "11"}]},
         "$.allocations[0].amount"),  # more than the invoice owes
        ({**base, "allocations": [{"invoice_id": i1, "amount": "6"}]},  # more than paid
         "$.allocations[0].amount"),
        ({**base, "account_id": "C3", "allocations": [{"invoice_id": i1}]},
         "$.allocations[0].invoice_id"),
    ]
    for body, path in cases:
        status, problem = await api.call("POST", "/v1/payments", "operator", json=body)
        assert status == 422, (body, problem)
        assert problem["errors"][0]["path"] == path, (body, problem)
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE account_id = 'C2'") == 0
    status, _ = await api.call("POST", "/v1/payments", "viewer", json=base)
    assert status == 403
    status, _ = await api.call("POST", "/v1/payments", "operator",
                               json={**base, "account_id": "NOBODY"})
    assert status == 404
    status, p = await api.call("POST", "/v1/payments", "operator", json=base)
    assert status == 201
    status, problem = await api.call("POST", f"/v1/payments/{p['payment_id']}/refunds",
                                     "operator", json={"amount": "5.01", "date": "2026-02-11",
                                                       "reason": "x"})
    assert status == 422 and problem["errors"][0]["path"] == "$.amount"
    status, problem = await api.call("POST", f"/v1/payments/{p['payment_id']}/refunds",
                                     "operator", json={"amount": "1", "date": "2026-02-01",
                                                       "reason": "x"})
    assert status == 422 and problem["errors"][0]["path"] == "$.date"
    status, _ = await api.call("GET", "/v1/payments/999999", "viewer")
    assert status == 404


def cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "billing_oss", *args, "--database-url",
                           database_url], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO":
                                            "false"})


async def test_payment_and_aging_verbs(pool: asyncpg.Pool, database_url: str) -> None:
    i1, i2 = await invoices(pool, "C4", 40, 60)
    run = await asyncio.to_thread(cli, ["payment", "add", "--account", "C4", "--amount",
                                        "70", "--date", "2026-02-15", "--json"], database_url)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["created"] and [(a["invoice_id"], a["amount"]) for a in out["allocations"]] == [
        (i1, "40.00"), (i2, "30.00")]
    run = await asyncio.to_thread(cli, ["payment", "add", "--account", "C4", "--amount",
                                        "-3"], database_url)
    assert run.returncode == 1 and run.stderr.startswith("billing-oss payment: --amount")
    assert "Traceback" not in run.stderr
    run = await asyncio.to_thread(cli, ["payment", "refund", str(out["payment_id"]),
                                        "--amount", "100", "--date", "2026-02-16"],
                                  database_url)
    assert run.returncode == 1 and "--amount" in run.stderr, run.stderr
    run = await asyncio.to_thread(cli, ["aging", "--as-of", "2026-04-01", "--account", "C4",
                                        "--json"], database_url)
    assert run.returncode == 0, run.stderr
    line = json.loads(run.stdout)
    assert line["total"] == "30.00" and line["buckets"]["31-60"] == "30.00", line
    run = await asyncio.to_thread(cli, ["payment", "list", "--account", "C4"], database_url)
    assert run.returncode == 0 and "payment" in run.stdout and "70.00" in run.stdout
    run = await asyncio.to_thread(cli, ["statement", "--account", "C4", "--from", "2026-02-01",
                                        "--to", "2026-02-28"], database_url)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "Invoice T-" in lines[1] and "40.00" in lines[1]
    assert "Payment" in lines[3] and lines[3].split()[-2] == "30.00", lines  # balance after
    run = await asyncio.to_thread(cli, ["statement", "--account", "NOBODY"], database_url)
    assert run.returncode == 1 and "no account NOBODY" in run.stderr


async def test_dunning_ladders_runs_and_disputes(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    status, body = await api.call("GET", "/v1/dunning/ladders", "viewer")
    assert status == 200 and body["items"][0]["class"] == "default"
    ladder = {"steps": [{"day": 5, "action": "reminder"},
                        {"day": 12, "action": "fee", "fee": "2.50"}]}
    status, _ = await api.call("PUT", "/v1/dunning/ladders/gentle", "operator", json=ladder)
    assert status == 403  # admins configure ladders
    status, problem = await api.call("PUT", "/v1/dunning/ladders/gentle", json={"steps": [
        {"day": 5, "action": "reminder"}, {"day": 5, "action": "suspend"}]})
    assert status == 422 and problem["errors"][0]["path"] == "$.steps[1].day", problem
    status, problem = await api.call("PUT", "/v1/dunning/ladders/gentle", json={"steps": [
        {"day": 5, "action": "fee"}]})
    assert status == 422 and problem["errors"][0]["path"] == "$.steps[0].fee", problem
    status, _ = await api.call("PUT", "/v1/dunning/ladders/gentle", json=ladder)
    assert status == 200
    await api.call("POST", "/v1/accounts", json={"account_id": "G1",
                                                 "attrs": {"dunning_class": "gentle"}})
    async with pool.acquire() as conn:
        i1 = await seed.invoice(conn, "G1", 10_000_000, D)  # due D + 14
        i2 = await seed.invoice(conn, "G1", 10_000_000, D)
    run = {"as_of": "2026-03-01", "account_id": "G1"}
    status, dry = await api.call("POST", "/v1/dunning/runs", "operator",
                                 json={**run, "dry_run": True})
    assert status == 200 and dry["steps"] == 4 and dry["fees"] == {"EUR": "5"}, dry
    status, dispute = await api.call("POST", "/v1/disputes", "operator",
                                     json={"invoice_id": i2, "reason": "wrong plan"})
    assert status == 201, dispute
    status, done = await api.call("POST", "/v1/dunning/runs", "operator", json=run)
    assert status == 200 and done["by_action"] == {"fee": 1, "reminder": 1}, done
    status, _ = await api.call("POST", f"/v1/disputes/{dispute['dispute_id']}/close",
                               "operator")
    assert status == 204
    status, done = await api.call("POST", "/v1/dunning/runs", "operator", json=run)
    assert done["by_action"] == {"fee": 1, "reminder": 1}, done  # now i2's turn
    status, again = await api.call("POST", "/v1/dunning/runs", "operator", json=run)
    assert again["steps"] == 0
    taken = await pool.fetch("SELECT invoice_id, action FROM dunning_events"
                             " WHERE account_id = 'G1' ORDER BY invoice_id, step_no")
    assert [(r["invoice_id"], r["action"]) for r in taken] == [
        (i1, "reminder"), (i1, "fee"), (i2, "reminder"), (i2, "fee")]


async def test_write_off_noted_with_vat_relief_and_reversed_by_a_late_payment(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    async with pool.acquire() as conn:  # a taxed invoice: 100 net + 20 VAT
        await seed.account(conn, "W1")
        i1 = await seed.invoice(conn, "W1", 120_000_000, D, tax_micros=20_000_000)
    status, _ = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": "W1", "amount": "30", "received_on": "2026-02-10"})
    status, woff = await api.call("POST", "/v1/write-offs", "operator", json={
        "invoice_id": i1, "reason": "customer insolvent", "date": "2026-05-01"})
    assert status == 201, woff
    entry = await pool.fetchrow("SELECT amount_micros, description FROM ledger_entries"
                                " WHERE entry_id = $1", woff["entry_id"])
    assert entry["amount_micros"] == -90_000_000
    assert "bad-debt VAT relief 15 EUR" in entry["description"]  # 90 × 20/120
    status, _ = await api.call("POST", "/v1/write-offs", "operator", json={
        "invoice_id": i1, "reason": "again"})
    assert status == 409
    status, aged = await api.call("GET", "/v1/aging", params={"account_id": "W1",
                                                              "as_of": "2026-05-02"})
    assert aged["totals"][0]["total"] == "0.00"
    status, late = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": "W1", "amount": "50", "received_on": "2026-06-01",
        "allocations": [{"invoice_id": i1}]})
    assert status == 201 and late["allocated"] == "50.00", late
    kinds = await pool.fetch("SELECT kind, amount_micros FROM ledger_entries"
                             " WHERE account_id = 'W1' ORDER BY entry_id")
    assert ("write_off_reversal", 50_000_000) in [(k["kind"], k["amount_micros"])
                                                  for k in kinds]
    status, aged = await api.call("GET", "/v1/aging", params={"account_id": "W1",
                                                              "as_of": "2026-06-02"})
    assert aged["totals"][0]["total"] == "0.00"  # 40 still written off, nothing owed
    trail = await pool.fetch("SELECT action FROM audit_log WHERE action LIKE 'write_off.%'"
                             " ORDER BY seq")
    assert [t["action"] for t in trail] == ["write_off.create", "write_off.reverse"]


async def test_aging_today_pages_the_kept_lines_as_the_ledger_has_them(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    """``GET /v1/aging`` without a date reads the kept state, its items a page at a time in
    key order from the cursor; the pages and the totals are the ledger's aging as of today,
    and asked as of yesterday (the ledger's path) the totals tell the two days apart."""
    today = dt.datetime.now(dt.UTC).date()
    async with pool.acquire() as conn:
        for n in range(5):
            await seed.account(conn, f"AG{n}")
            await seed.invoice(conn, f"AG{n}", (n + 1) * 10_000_000,
                               today - dt.timedelta(days=20 * n))
    status, _ = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": "AG2", "amount": "50", "received_on": today.isoformat()})
    assert status == 201
    walked, cursor = [], None
    while True:
        status, page = await api.call("GET", "/v1/aging", "viewer", params={
            "limit": "2", **({"cursor": cursor} if cursor else {})})
        assert status == 200, page
        assert page["as_of"] == today.isoformat()
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ledger = await aging.from_ledger(pool, today, per_account=True)
    labels = page["buckets"]
    assert walked == [msgspec.to_builtins(aging_line(r, labels)) for r in ledger]
    assert page["totals"] == [msgspec.to_builtins(aging_line(r, labels))
                              for r in await aging.from_ledger(pool, today)]
    ag2 = next(line for line in walked if line["account_id"] == "AG2")
    assert ag2["credit"] == "-20.00" and ag2["total"] == "-20.00"  # 30 paid, 20 unapplied
    status, before = await api.call("GET", "/v1/aging", "viewer", params={
        "as_of": (today - dt.timedelta(days=1)).isoformat()})
    assert status == 200 and before["totals"] != page["totals"]  # today's payment
