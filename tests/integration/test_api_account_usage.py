"""`/v1/accounts/{id}/usage` (per record, filtered, paged, CSV), `/current-cycle` and
`/balance`, read by an operator's key and by the account's own customer key."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from billing_oss.server.http import account_usage
from billing_oss.server.http.account_usage import current_period
from billing_oss.server.store import account_usage_repo, api_keys
from tests.charge_seed import insert_charges
from tests.integration.api_harness import Api, live_api, seed_usage

ACCOUNT = "USAGE1"


class Seeded:
    def __init__(self, api: Api, customer: str, usage: dict[str, int], now: dt.datetime) -> None:
        self.api, self.customer, self.usage, self.now = api, customer, usage, now

    async def get(self, path: str, params: dict[str, Any] | None = None,
                  accept: str | None = None, key: str | None = None) -> tuple[int, bytes, str]:
        headers = {"Authorization": f"Bearer {key or self.customer}"}
        if accept:
            headers["Accept"] = accept
        async with self.api.http.get(self.api.url + path, params=params,
                                     headers=headers) as r:
            return r.status, await r.read(), r.content_type


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Seeded]:
    async with live_api(pool, database_url) as api:
        status, _ = await api.call("POST", "/v1/accounts", "operator", json={
            "account_id": ACCOUNT, "billing_day": 1, "timezone": "UTC"})
        assert status == 201
        await api.call("POST", "/v1/accounts", "operator", json={"account_id": "USAGE2"})
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        this_cycle = now.replace(day=1, hour=0, minute=0, second=0)
        last_cycle = (this_cycle - dt.timedelta(days=1)).replace(day=3)
        usage = {
            "old": await seed_usage(pool, ACCOUNT, _iso(last_cycle), amount_micros=2_000_000,
                                    called="33100000001"),
            "call": await seed_usage(pool, ACCOUNT, _iso(this_cycle + dt.timedelta(hours=1)),
                                     amount_micros=123_456, called="33100000002"),
            "sms": await seed_usage(pool, ACCOUNT, _iso(this_cycle + dt.timedelta(hours=2)),
                                    amount_micros=50_000, kind="sms", called="33100000003"),
            "free": await seed_usage(pool, ACCOUNT, _iso(this_cycle + dt.timedelta(hours=3)),
                                     amount_micros=None, called="33100000002"),
            "rerated": await seed_usage(pool, ACCOUNT,
                                        _iso(this_cycle + dt.timedelta(hours=4)),
                                        amount_micros=900_000, called="33100000004"),
            "other": await seed_usage(pool, "USAGE2", _iso(this_cycle + dt.timedelta(hours=1)),
                                      amount_micros=1_000_000, called="33100000002"),
        }
        # A rerate: the first charge reversed, a new one at 0.75.
        when = this_cycle + dt.timedelta(hours=4)
        first = await pool.fetchval("SELECT charge_id FROM charges WHERE usage_id = $1",
                                    usage["rerated"])
        await insert_charges(pool, ("account_id", "event_time", "usage_id", "kind",
                                    "amount_micros", "currency", "reverses_charge_id"),
                             [(ACCOUNT, when, usage["rerated"], "reversal", -900000, "EUR",
                               first),
                              (ACCOUNT, when, usage["rerated"], "charge", 750000, "EUR", None)])
        customer = (await api_keys.create(pool, "customer", account_id=ACCOUNT)).token
        yield Seeded(api, customer, usage, now)


async def test_usage_per_record_with_its_charge_paged(seeded: Seeded) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        status, body, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage", params)
        assert status == 200, body
        page = json.loads(body)
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    u = seeded.usage
    assert [i["usage_id"] for i in seen] == [u["old"], u["call"], u["sms"], u["free"],
                                             u["rerated"]]
    charges = {i["usage_id"]: i["charge"] for i in seen}
    assert charges[u["call"]] == {"amount": "0.123456", "currency": "EUR"}
    assert charges[u["rerated"]] == {"amount": "0.750000", "currency": "EUR"}
    assert charges[u["free"]] is None
    assert {i["service"] for i in seen} == {"voice", "sms"}


async def test_usage_filters(seeded: Seeded) -> None:
    u = seeded.usage

    async def ids(**params: str) -> list[int]:
        status, body, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage", params)
        assert status == 200, body
        return [i["usage_id"] for i in json.loads(body)["items"]]

    assert await ids(service="sms") == [u["sms"]]
    assert await ids(number="33100000002") == [u["call"], u["free"]]
    cycle_start = _iso(seeded.now.replace(day=1, hour=0, minute=0, second=0))
    assert u["old"] not in await ids(**{"from": cycle_start})
    assert await ids(to=cycle_start) == [u["old"]]
    status, body, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage", {"service": "fax"})
    assert status == 422 and json.loads(body)["errors"][0]["path"] == "service"


async def test_csv_export_by_accept_and_suffix(seeded: Seeded) -> None:
    status, by_accept, ctype = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage",
                                                {"limit": "1"}, accept="text/csv")
    assert status == 200 and ctype == "text/csv"
    status, by_suffix, ctype = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage.csv")
    assert status == 200 and ctype == "text/csv"
    assert by_accept == by_suffix  # the whole span, not a page
    rows = list(csv.DictReader(io.StringIO(by_suffix.decode())))
    assert [int(r["usage_id"]) for r in rows] == sorted(
        v for k, v in seeded.usage.items() if k != "other")
    amounts = {int(r["usage_id"]): (r["amount"], r["currency"]) for r in rows}
    assert amounts[seeded.usage["rerated"]] == ("0.750000", "EUR")
    assert amounts[seeded.usage["free"]] == ("", "")
    status, sms, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage.csv", {"service": "sms"})
    assert [r["service"] for r in csv.DictReader(io.StringIO(sms.decode()))] == ["sms"]


async def test_current_cycle_to_date(seeded: Seeded) -> None:
    status, body, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/current-cycle")
    assert status == 200, body
    cycle = json.loads(body)
    assert cycle["period"] == seeded.now.strftime("%Y-%m")
    assert cycle["start"].startswith(seeded.now.strftime("%Y-%m-01T00:00:00"))
    assert cycle["records"] == 4  # last cycle's call is not in it
    assert cycle["charged"] == [{"amount": "0.923456", "currency": "EUR"}]  # .123456+.05+.75
    by_service = {(s["service"], (s["charged"] or {}).get("amount")): s["records"]
                  for s in cycle["services"]}
    assert by_service == {("voice", "0.873456"): 2, ("voice", None): 1, ("sms", "0.050000"): 1}


def test_the_current_period_follows_the_billing_day_in_the_accounts_zone() -> None:
    utc = dt.UTC
    assert current_period(dt.datetime(2026, 3, 14, 12, tzinfo=utc), 15, "UTC") == "2026-02"
    assert current_period(dt.datetime(2026, 3, 15, 0, tzinfo=utc), 15, "UTC") == "2026-03"
    assert current_period(dt.datetime(2026, 1, 4, tzinfo=utc), 5, "UTC") == "2025-12"
    # 23:30 UTC on the 14th is already the 15th in Paris.
    assert current_period(dt.datetime(2026, 3, 14, 23, 30, tzinfo=utc), 15,
                          "Europe/Paris") == "2026-03"


async def test_balance_and_refusals(seeded: Seeded) -> None:
    status, paid = await seeded.api.call("POST", "/v1/payments", "operator", json={
        "account_id": ACCOUNT, "amount": "5.00", "received_on": str(seeded.now.date())})
    assert status == 201, paid
    status, body, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/balance")
    assert status == 200, body
    assert json.loads(body) == {"account_id": ACCOUNT, "open_invoices": [],
                                "balances": [{"amount": "-5.000000", "currency": "EUR"}]}
    for path in ("usage", "usage.csv", "current-cycle", "balance"):
        status, body, ctype = await seeded.get(f"/v1/accounts/USAGE2/{path}")
        assert status == 403 and ctype == "application/problem+json", path
        status, body, _ = await seeded.get(f"/v1/accounts/USAGE2/{path}",
                                           key=seeded.api.tokens["viewer"])
        assert status == 200, path
        status, body, _ = await seeded.get(f"/v1/accounts/NOPE/{path}",
                                           key=seeded.api.tokens["viewer"])
        assert status == 404, path


async def test_csv_cells_that_would_start_a_formula_stay_text(seeded: Seeded,
                                                                pool: asyncpg.Pool) -> None:
    """A caller id is what the calling party sent: in the export it must not become a
    formula when the customer opens the file in a spreadsheet."""
    status, _ = await seeded.api.call("POST", "/v1/accounts", "operator",
                                      json={"account_id": "USAGE3"})
    assert status == 201
    evil = '=HYPERLINK("http://example.invalid/","open me")'
    at = _iso(seeded.now - dt.timedelta(minutes=5))
    for called in (evil, "@SUM(1+1)", "+33612345678", "-42"):
        await seed_usage(pool, "USAGE3", at, amount_micros=None, called=called)
    token = (await api_keys.create(pool, "customer", account_id="USAGE3")).token
    status, body, _ = await seeded.get("/v1/accounts/USAGE3/usage.csv", key=token)
    assert status == 200
    called = sorted(r["called"] for r in csv.DictReader(io.StringIO(body.decode())))
    assert called == sorted(["'" + evil, "'@SUM(1+1)", "+33612345678", "-42"])
    # the JSON page keeps the value as it was recorded
    status, page, _ = await seeded.get("/v1/accounts/USAGE3/usage", key=token)
    assert evil in [i["called"] for i in json.loads(page)["items"]]


async def test_a_csv_export_longer_than_the_request_timeout_ends_whole(
        seeded: Seeded, pool: asyncpg.Pool, database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once its status line is out the export is past the timeout's 503: the timeout must not
    cut it (the client would wait on a short file). Here each chunk of one record arrives
    slower than the whole request's timeout allows."""
    status, whole, _ = await seeded.get(f"/v1/accounts/{ACCOUNT}/usage.csv")
    assert status == 200 and whole.count(b"\n") > 3
    items = account_usage_repo.items

    async def slow(*args: Any, **kw: Any) -> Any:
        await asyncio.sleep(0.4)
        return await items(*args, **kw)

    monkeypatch.setattr(account_usage, "CSV_CHUNK", 1)
    monkeypatch.setattr(account_usage_repo, "items", slow)
    async with live_api(pool, database_url, overrides={"http.request_timeout_s": 1}) as api:
        async with api.http.get(f"{api.url}/v1/accounts/{ACCOUNT}/usage.csv",
                                headers={"Authorization": f"Bearer {seeded.customer}"},
                                timeout=aiohttp.ClientTimeout(total=30)) as r:
            assert r.status == 200
            assert await r.read() == whole
