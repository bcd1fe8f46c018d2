"""`/v1/usage`, `/v1/charges` and `/v1/charges/totals`: filters, pagination, exact money."""

import asyncpg
import pytest

from tests.integration.api_harness import Api, api, seed_usage  # noqa: F401


@pytest.fixture(scope="module")
async def traffic(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO accounts (account_id) VALUES ('TR-1'), ('TR-2')")
    for day in range(1, 8):
        await seed_usage(pool, "TR-1", f"2026-01-{day:02d}T10:00:00Z", amount_micros=1_230_001)
    await seed_usage(pool, "TR-1", "2026-02-01T00:00:00Z", amount_micros=500_000, kind="sms")
    await seed_usage(pool, "TR-2", "2026-01-15T10:00:00Z", amount_micros=9_999_999_999_999)
    await seed_usage(pool, "TR-2", "2026-01-16T10:00:00Z", amount_micros=7, currency="USD")


async def test_usage_by_account_period_kind(api: Api, traffic: None) -> None:  # noqa: F811
    pages = await api.pages("/v1/usage", {"account_id": "TR-1", "from": "2026-01-01T00:00:00Z",
                                          "to": "2026-02-01T00:00:00Z", "limit": 3})
    assert [len(p) for p in pages] == [3, 3, 1]
    times = [u["event_time"] for p in pages for u in p]
    assert times == sorted(times) and times[0] == "2026-01-01T10:00:00Z"
    assert all(u["kind"] == "voice" and u["account_id"] == "TR-1" for p in pages for u in p)
    pages = await api.pages("/v1/usage", {"account_id": "TR-1", "kind": "sms"})
    assert [u["event_time"] for u in pages[0]] == ["2026-02-01T00:00:00Z"]
    status, problem = await api.call("GET", "/v1/usage", params={"from": "yesterday"})
    assert status == 422 and problem["errors"][0]["path"] == "from"
    status, problem = await api.call("GET", "/v1/usage", params={"kind": "fax"})
    assert status == 422 and problem["errors"][0]["path"] == "kind"


async def test_charges_and_exact_totals(api: Api, traffic: None) -> None:  # noqa: F811
    pages = await api.pages("/v1/charges", {"account_id": "TR-1", "limit": 5})
    charges = [c for p in pages for c in p]
    assert len(charges) == 8 and [len(p) for p in pages] == [5, 3]
    assert charges[0]["amount"] == {"amount": "1.230001", "currency": "EUR"}
    status, totals = await api.call("GET", "/v1/charges/totals", "viewer",
                                    params={"account_id": "TR-1", "to": "2026-02-01T00:00:00Z"})
    assert status == 200
    assert totals["items"] == [{
        "currency": "EUR", "charges": 7, "reversals": 0,
        "charged": {"amount": "8.610007", "currency": "EUR"},
        "reversed": {"amount": "0.000000", "currency": "EUR"},
        "net": {"amount": "8.610007", "currency": "EUR"}}]
    status, totals = await api.call("GET", "/v1/charges/totals", params={"account_id": "TR-2"})
    assert [(t["currency"], t["net"]["amount"]) for t in totals["items"]] == [
        ("EUR", "9999999.999999"), ("USD", "0.000007")]
    status, _ = await api.call("GET", "/v1/charges", params={"kind": "refund"})
    assert status == 422
