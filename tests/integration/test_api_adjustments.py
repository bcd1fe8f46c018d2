"""`/v1/accounts/{id}/adjustments`, then a bill run over what was set up through the API
alone (tariff, account, product, subscription, tax rate, discount, adjustment)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.store import audit
from tests.integration import billing_seed
from tests.integration.api_harness import Api, api, seed_usage  # noqa: F401

CREDIT = {"amount": "-3.00", "description": "Outage credit, ticket 77", "reference": "T-77"}


async def test_book_list_and_replay(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", json={"account_id": "J1"})
    status, booked = await api.call("POST", "/v1/accounts/J1/adjustments", "operator",
                                    json=CREDIT)
    assert status == 201, booked
    assert booked["amount"] == {"amount": "-3.000000", "currency": "EUR"}
    assert (booked["reference"], booked["invoice_id"], booked["tax_class"]) == (
        "T-77", None, "standard")
    status, replay = await api.call("POST", "/v1/accounts/J1/adjustments", json=CREDIT)
    assert status == 200 and replay == booked
    status, problem = await api.call("POST", "/v1/accounts/J1/adjustments",
                                     json={**CREDIT, "amount": "-4.00"})
    assert status == 409 and "T-77" in problem["detail"]
    for i in range(3):
        status, _ = await api.call("POST", "/v1/accounts/J1/adjustments",
                                   json={"amount": f"{i + 1}.50", "description": f"Fee {i}",
                                         "currency": "EUR"})
        assert status == 201
    pages = await api.pages("/v1/accounts/J1/adjustments", {"limit": 2})
    assert [len(p) for p in pages] == [2, 2]
    amounts = [a["amount"]["amount"] for p in pages for a in p]
    assert amounts == ["-3.000000", "1.500000", "2.500000", "3.500000"]
    trail = await audit.entries(pool, f"adjustment:J1/{booked['adjustment_id']}")
    assert [e.action for e in trail] == ["adjustment.create"]


async def test_adjustment_errors(api: Api) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", json={"account_id": "J2", "currency": "JPY"})
    await api.call("POST", "/v1/accounts", json={"account_id": "J3", "status": "closed"})
    status, _ = await api.call("POST", "/v1/accounts/J2/adjustments", "viewer", json=CREDIT)
    assert status == 403
    status, _ = await api.call("GET", "/v1/accounts/J2/adjustments", None)
    assert status == 401
    cases = [
        ({**CREDIT, "amount": "-3"}, "$.currency", {"currency": "EUR"}),  # J2 bills in JPY
        ({**CREDIT, "amount": "-3.5"}, "$.amount", {}),  # no minor unit in JPY
        ({**CREDIT, "amount": "0"}, "$.amount", {}),
        ({**CREDIT, "amount": -3}, "$.amount", {}),
        ({**CREDIT, "amount": "-3.0000001"}, "$.amount", {}),
        ({**CREDIT, "description": "   "}, "$.description", {}),
        ({**CREDIT, "tax_class": "no such class!"}, "$.tax_class", {}),
    ]
    for body, path, extra in cases:
        status, problem = await api.call("POST", "/v1/accounts/J2/adjustments",
                                         json={**body, **extra})
        assert status == 422, (path, problem)
        assert problem["errors"][0]["path"] == path, problem
    status, yen = await api.call("POST", "/v1/accounts/J2/adjustments",
                                 json={"amount": "-300", "description": "Credit"})
    assert status == 201 and yen["amount"] == {"amount": "-300.000000", "currency": "JPY"}
    status, problem = await api.call("POST", "/v1/accounts/J3/adjustments", json=CREDIT)
    assert status == 409 and "closed" in problem["detail"]
    for method in ("GET", "POST"):
        status, _ = await api.call(method, "/v1/accounts/NOBODY/adjustments",
                                   json=CREDIT if method == "POST" else None)
        assert status == 404


TARIFF = {"currency": "EUR", "tariffs": [{"id": "it-tariff", "versions": [{
    "effective_from": "2026-01-01T00:00:00Z", "timezone": "Europe/Rome",
    "rates": [{"kind": "voice", "zone": "*", "band": "*",
               "steps": [{"from": 0, "price": "0.01", "unit": 60, "increment": 1}]}]}]}]}


async def test_bill_run_over_what_the_api_set_up(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    calls = [
        ("POST", "/v1/tariffs", TARIFF),
        ("POST", "/v1/accounts", {"account_id": "IT1", "name": "Rossi Srl",
                                  "attrs": {"country": "IT"}}),
        ("PUT", "/v1/products/it-plan", {"name": "Piano 20", "currency": "EUR",
                                         "recurring_fee": "20.00"}),
        ("POST", "/v1/subscriptions", {"account_id": "IT1", "tariff_id": "it-tariff",
                                       "product": "it-plan",
                                       "valid_from": "2026-01-01T00:00:00Z"}),
        ("POST", "/v1/tax-rates", {"jurisdiction": "IT", "rate": "22",
                                   "valid_from": "2013-10-01"}),
        ("POST", "/v1/discounts", {"code": "IT1-2OFF", "kind": "fixed", "amount": "2.00",
                                   "currency": "EUR", "account_id": "IT1"}),
        ("POST", "/v1/accounts/IT1/adjustments", CREDIT),
    ]
    for method, path, body in calls:
        status, answer = await api.call(method, path, "operator", json=body)
        assert status in (200, 201), (path, answer)
    adjustment_id = answer["adjustment_id"]
    # An adjustment is billed by the first cycle ending after it was booked: this month's.
    period = dt.datetime.now(dt.UTC).strftime("%Y-%m")
    await seed_usage(pool, "IT1", f"{period}-01T09:00:00Z", amount_micros=1_234_567)

    run = await bill_run(pool, period, billing_seed.SETTINGS, accounts=["IT1"], actor="test")
    async with pool.acquire() as conn:
        invoice = (await issuing.load(conn, run.invoice_ids[0])).content
    lines = {ln.kind: ln for ln in invoice.lines}
    assert lines["usage"].net_micros == 1_230_000  # 1.234567 → 1.23
    assert lines["recurring"].net_micros == 20_000_000  # the whole month of the product
    assert (lines["adjustment"].net_micros, lines["adjustment"].adjustment_id) == (
        -3_000_000, adjustment_id)
    # The fixed discount is an allowance on the positive lines (1.23 + 20.00), not the credit.
    assert [(a.amount_micros, a.tax_category) for a in invoice.allowances] == [(2_000_000, "S")]
    # Taxed at the loaded IT rate on 1.23 + 20.00 − 3.00 − 2.00 = 16.23: 3.5706 → 3.57.
    assert [(t.category, t.rate, t.taxable, t.tax) for t in invoice.taxes] == [
        ("S", 22, 16_230_000, 3_570_000)]
    assert invoice.totals.payable_micros == 19_800_000
    status, billed = await api.call("GET", "/v1/accounts/IT1/adjustments", "viewer")
    assert billed["items"][0]["invoice_id"] == run.invoice_ids[0]
