"""`/v1/products`, `/v1/tax-rates`, `/v1/discounts`: roles, validation with the field's
path, conflicts, pagination, the audit trail; the catalog upload's billing sections."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import asyncpg

from billing_oss.server.store import audit
from tests.integration.api_harness import Api, api  # noqa: F401

PLAN: dict[str, Any] = {
    "name": "Fibre 1G", "currency": "EUR", "recurring_fee": "39.90",
    "usage_pricing": [{"service": "voice", "model": "per_unit", "unit": "min",
                       "unit_size": 60, "included": "1000", "price": "0.0125"}],
}


async def test_products_put_get_list_and_audit(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    status, created = await api.call("PUT", "/v1/products/fibre-1g", "operator", json=PLAN)
    assert status == 201, created
    assert created["recurring_fee"] == {"amount": "39.900000", "currency": "EUR"}
    assert created["usage_pricing"][0] | {"tiers": []} == {
        "service": "voice", "model": "per_unit", "unit": "min", "unit_size": 60,
        "included": "1000", "price": "0.0125", "package_size": "1", "tiers": []}
    status, same = await api.call("PUT", "/v1/products/fibre-1g", json=PLAN)
    assert status == 200 and same == created
    cheaper = {**PLAN, "recurring_fee": "34.90", "tax_class": "reduced"}
    status, replaced = await api.call("PUT", "/v1/products/fibre-1g", json=cheaper)
    assert status == 200 and replaced["recurring_fee"]["amount"] == "34.900000"
    status, read = await api.call("GET", "/v1/products/fibre-1g", "viewer")
    assert status == 200 and read == replaced
    for i in range(3):
        await api.call("PUT", f"/v1/products/p{i}", json={"currency": "USD"})
    pages = await api.pages("/v1/products", {"limit": 2})
    ids = [p["product_id"] for page in pages for p in page]
    assert ids == sorted(ids) and {"fibre-1g", "p0", "p1", "p2"} <= set(ids)
    assert len(pages[0]) == 2
    trail = await audit.entries(pool, "product:fibre-1g")
    assert [e.action for e in trail] == ["product.put", "product.put"]
    assert trail[1].before["recurring_fee_micros"] == 39_900_000
    assert trail[1].actor.startswith("key:")


async def test_product_errors(api: Api) -> None:  # noqa: F811
    status, _ = await api.call("PUT", "/v1/products/x", "viewer", json=PLAN)
    assert status == 403
    status, _ = await api.call("PUT", "/v1/products/x", None, json=PLAN)
    assert status == 401
    status, _ = await api.call("GET", "/v1/products/nothing-here", "viewer")
    assert status == 404
    cases = [
        ({**PLAN, "recurring_fee": 39.9}, "$.recurring_fee"),
        ({**PLAN, "currency": "ABC"}, "$.currency"),
        ({k: v for k, v in PLAN.items() if k != "currency"}, "$"),
        ({**PLAN, "usage_pricing": [{**PLAN["usage_pricing"][0], "model": "graduated"}]},
         "$.usage_pricing[0].tiers"),
        ({**PLAN, "usage_pricing": [{**PLAN["usage_pricing"][0], "price": "-1"}]},
         "$.usage_pricing[0].price"),
    ]
    for body, path in cases:
        status, problem = await api.call("PUT", "/v1/products/bad", json=body)
        assert status == 422, (path, problem)
        assert problem["errors"][0]["path"] == path, problem
    status, _ = await api.call("GET", "/v1/products/bad", "viewer")
    assert status == 404


def rate(valid_from: str, value: str = "22", valid_to: str | None = None,
         **extra: str) -> dict[str, Any]:
    body = {"jurisdiction": "IT", "rate": value, "valid_from": valid_from, **extra}
    return body | ({"valid_to": valid_to} if valid_to else {})


async def test_tax_rate_periods(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    status, first = await api.call("POST", "/v1/tax-rates", "operator", json=rate("2013-10-01"))
    assert status == 201 and first == {
        "jurisdiction": "IT", "tax_class": "standard", "category": "S", "rate": "22",
        "valid_from": "2013-10-01", "valid_to": None}
    status, again = await api.call("POST", "/v1/tax-rates", json=rate("2013-10-01"))
    assert status == 200 and again == first
    status, problem = await api.call("POST", "/v1/tax-rates", json=rate("2013-10-01", "23"))
    assert status == 409 and "same day" in problem["detail"]
    # A rate change from a date: the open-ended period ends where the new one starts.
    status, _ = await api.call("POST", "/v1/tax-rates", json=rate("2027-01-01", "24.5"))
    assert status == 201
    status, listed = await api.call("GET", "/v1/tax-rates", "viewer",
                                    params={"jurisdiction": "IT"})
    assert [(r["rate"], r["valid_from"], r["valid_to"]) for r in listed["items"]] == [
        ("22", "2013-10-01", "2027-01-01"), ("24.5", "2027-01-01", None)]
    # A bounded period inside a stored one, or an open one overlapping two: conflicts.
    for body in (rate("2020-01-01", "10", "2020-07-01"), rate("2026-06-01", "21")):
        status, problem = await api.call("POST", "/v1/tax-rates", json=body)
        assert status == 409 and problem["code"] == "CONFLICT", problem
    status, on_day = await api.call("GET", "/v1/tax-rates", params={"jurisdiction": "IT",
                                                                    "valid_on": "2026-12-31"})
    assert [r["rate"] for r in on_day["items"]] == ["22"]
    assert [e.action for e in await audit.entries(pool, "tax_rate:IT/standard/2013-10-01")] == [
        "tax_rate.create", "tax_rate.end"]
    status, zero = await api.call("POST", "/v1/tax-rates", json=rate(
        "2013-10-01", "0", tax_class="exports", category="Z"))
    assert status == 201 and zero["category"] == "Z"
    pages = await api.pages("/v1/tax-rates", {"limit": 1})
    assert len(pages) == 3 and all(len(p) == 1 for p in pages)


async def test_tax_rate_errors(api: Api) -> None:  # noqa: F811
    status, _ = await api.call("POST", "/v1/tax-rates", "viewer", json=rate("2000-01-01"))
    assert status == 403
    cases = [
        (rate("2000-01-01", "0"), "$.rate"),
        (rate("2000-01-01", "20", category="AE"), "$.rate"),
        (rate("2000-01-01", "101"), "$.rate"),
        (rate("2000-01-01", 20), "$.rate"),  # type: ignore[arg-type]
        (rate("2000-01-01", valid_to="1999-01-01"), "$.valid_to"),
        ({**rate("2000-01-01"), "jurisdiction": "Italy"}, "$.jurisdiction"),
        ({**rate("2000-01-01"), "valid_from": "01/01/2000"}, "$.valid_from"),
    ]
    for body, path in cases:
        status, problem = await api.call("POST", "/v1/tax-rates", json=body)
        assert status == 422, (path, problem)
        assert problem["errors"][0]["path"] == path, problem


async def test_discounts_create_read_end(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", json={"account_id": "DA1"})
    body = {"code": "LOYAL-5", "kind": "fixed", "amount": "5.00", "currency": "EUR",
            "account_id": "DA1", "description": "Loyalty", "valid_from": "2026-01-01"}
    status, created = await api.call("POST", "/v1/discounts", "operator", json=body)
    assert status == 201, created
    assert created["amount"] == {"amount": "5.000000", "currency": "EUR"}
    assert (created["scope"], created["valid_to"]) == ("invoice", None)
    status, same = await api.call("POST", "/v1/discounts", json=body)
    assert status == 200 and same == created
    status, problem = await api.call("POST", "/v1/discounts", json={**body, "amount": "6"})
    assert status == 409, problem
    volume = {"code": "VOL", "kind": "volume", "currency": "EUR", "scope": "line",
              "service": "data", "tiers": [{"from": "0", "percent": "1"},
                                           {"from": "100.5", "percent": "2.25"}]}
    status, vol = await api.call("POST", "/v1/discounts", json=volume)
    assert status == 201 and vol["tiers"] == [
        {"from": {"amount": "0.000000", "currency": "EUR"}, "percent": "1"},
        {"from": {"amount": "100.500000", "currency": "EUR"}, "percent": "2.25"}]
    assert vol["valid_from"] is None and vol["account_id"] is None

    did = created["discount_id"]
    status, ended = await api.call("DELETE", f"/v1/discounts/{did}", "operator",
                                   params={"on": "2026-07-01"})
    assert status == 200 and ended["valid_to"] == "2026-07-01"
    status, earlier = await api.call("DELETE", f"/v1/discounts/{did}", params={"on": "2025-01-01"})
    assert status == 200 and earlier["valid_to"] == "2026-01-01"  # never before it starts
    status, later = await api.call("DELETE", f"/v1/discounts/{did}")  # today: already ended
    assert status == 200 and later["valid_to"] == "2026-01-01"
    status, read = await api.call("GET", f"/v1/discounts/{did}", "viewer")
    assert status == 200 and read == later
    status, active = await api.call("GET", "/v1/discounts", params={"active_on": "2026-03-01"})
    assert [d["code"] for d in active["items"]] == ["VOL"]
    status, mine = await api.call("GET", "/v1/discounts", params={"account_id": "DA1"})
    assert [d["code"] for d in mine["items"]] == ["LOYAL-5"]
    assert [e.action for e in await audit.entries(pool, "discount:LOYAL-5")] == [
        "discount.create", "discount.end", "discount.end"]
    today = dt.datetime.now(dt.UTC).date()
    status, gone = await api.call("DELETE", f"/v1/discounts/{vol['discount_id']}")
    assert gone["valid_to"] == today.isoformat()


async def test_discount_errors(api: Api) -> None:  # noqa: F811
    base = {"code": "E1", "kind": "percentage", "percent": "10"}
    status, _ = await api.call("POST", "/v1/discounts", "viewer", json=base)
    assert status == 403
    status, _ = await api.call("DELETE", "/v1/discounts/1", "viewer")
    assert status == 403
    cases = [
        ({**base, "kind": "fixed"}, "$.amount"),
        ({**base, "kind": "fixed", "amount": "1"}, "$.percent"),
        ({"code": "E1", "kind": "fixed", "amount": "1"}, "$.currency"),
        ({**base, "service": "voice"}, "$.service"),
        ({**base, "percent": "150"}, "$.percent"),
        ({**base, "account_id": "NOBODY"}, "$.account_id"),
        ({**base, "code": "bad code"}, "$.code"),
        ({**base, "valid_from": "2026-01-01", "valid_to": "2026-01-01"}, "$.valid_to"),
    ]
    for body, path in cases:
        status, problem = await api.call("POST", "/v1/discounts", json=body)
        assert status == 422, (path, problem)
        assert problem["errors"][0]["path"] == path, problem
    status, _ = await api.call("DELETE", "/v1/discounts/999999")
    assert status == 404
    status, problem = await api.call("DELETE", "/v1/discounts/1", params={"on": "tomorrow"})
    assert status == 422 and problem["errors"][0]["path"] == "on"


CATALOG: dict[str, Any] = {
    "currency": "EUR",
    "products": [{"id": "up-plan", "recurring_fee": "15"}],
    "tax_rates": [{"jurisdiction": "AT", "rate": "20", "valid_from": "2016-01-01"}],
    "discounts": [{"code": "UP-1", "kind": "percentage", "percent": "1"}],
}


async def test_catalog_upload_carries_the_billing_sections(api: Api) -> None:  # noqa: F811
    status, loaded = await api.call("POST", "/v1/tariffs", "operator", json=CATALOG)
    assert status == 201, loaded
    assert (loaded["products_changed"], loaded["tax_rates_changed"],
            loaded["discounts_changed"]) == (1, 1, 1)
    status, again = await api.call("POST", "/v1/tariffs", json=CATALOG)
    assert status == 200 and not again["products_changed"]
    status, product = await api.call("GET", "/v1/products/up-plan")
    assert product["recurring_fee"]["amount"] == "15.000000"
    bad = copy.deepcopy(CATALOG)
    bad["tax_rates"][0]["rate"] = "0"
    status, problem = await api.call("POST", "/v1/tariffs", json=bad)
    assert status == 422 and problem["errors"][0]["path"] == "$.tax_rates[0].rate", problem
    bad = copy.deepcopy(CATALOG)  # periods of the upload overlap each other: invalid
    bad["tax_rates"].append({"jurisdiction": "AT", "rate": "10", "valid_from": "2020-01-01"})
    status, problem = await api.call("POST", "/v1/tariffs", json=bad)
    assert status == 422 and problem["errors"][0]["path"] == "$.tax_rates[1].valid_from"
    bad["tax_rates"].pop(0)  # one overlapping a stored period: a conflict with the store
    status, problem = await api.call("POST", "/v1/tariffs", json=bad)
    assert status == 409 and "$.tax_rates[0].valid_from" in problem["detail"], problem
    bad = copy.deepcopy(CATALOG)
    bad["accounts"] = [{"id": "UPA", "product": "up-plan"}]
    status, problem = await api.call("POST", "/v1/tariffs", json=bad)
    assert status == 422 and problem["errors"][0]["path"] == "$.accounts[0].product", problem
