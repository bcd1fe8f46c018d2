"""`/v1/tariffs` and `/v1/subscriptions`: catalog upload, versions, periods."""

import copy
import json
from typing import Any

import asyncpg

from billing_oss.server.store import audit
from tests.conftest import REPO
from tests.integration.api_harness import Api, api  # noqa: F401

DEMO: dict[str, Any] = json.loads((REPO / "config" / "demo-catalog.json").read_text())


def version(effective_from: str, price: str = "0.02") -> dict[str, Any]:
    return {"effective_from": effective_from, "timezone": "UTC",
            "zones": {"fr": ["33"]},
            "rates": [{"kind": "voice", "zone": "fr", "band": "*",
                       "steps": [{"from": 0, "price": price, "unit": 60, "increment": 1}]}]}


async def test_upload_demo_catalog_then_again(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    status, loaded = await api.call("POST", "/v1/tariffs", "operator", json=DEMO)
    assert status == 201, loaded
    assert loaded["versions_added"] == sum(len(t["versions"]) for t in DEMO["tariffs"])
    status, again = await api.call("POST", "/v1/tariffs", "operator", json=DEMO)
    assert status == 200 and again["versions_added"] == 0 and again["accounts_added"] == 0
    status, tariff = await api.call("GET", "/v1/tariffs/retail", "viewer")
    assert status == 200 and tariff["versions"][0]["effective_from"].endswith("Z")
    vid = tariff["versions"][0]["tariff_version_id"]
    status, stored = await api.call("GET", f"/v1/tariffs/retail/versions/{vid}", "viewer")
    retail = next(t for t in DEMO["tariffs"] if t["id"] == "retail")
    assert status == 200 and stored["definition"]["zones"] == retail["versions"][0]["zones"]
    assert [e.action for e in await audit.entries(pool, "catalog")] == [
        "catalog.upload", "catalog.upload"]


async def test_catalog_errors_name_the_json_path(api: Api) -> None:  # noqa: F811
    cases = []
    bad = copy.deepcopy(DEMO)
    bad["tariffs"][0]["versions"][0]["rates"][0]["steps"][1]["price"] = 0.1
    cases.append((bad, "$.tariffs[0].versions[0].rates[0].steps[1].price"))
    bad = copy.deepcopy(DEMO)
    bad["tariffs"][0]["versions"][0]["rates"][1]["zone"] = "atlantis"
    cases.append((bad, "$.tariffs[0].versions[0].rates[1].zone"))
    bad = copy.deepcopy(DEMO)
    bad["tariffs"][0]["versions"][0]["rates"][0]["steps"][1]["from"] = 0
    cases.append((bad, "$.tariffs[0].versions[0].rates[0].steps[1].from"))
    bad = copy.deepcopy(DEMO)
    bad["tariffs"][0]["versions"][0]["time_bands"][0]["to"] = "25:00"
    cases.append((bad, "$.tariffs[0].versions[0].time_bands[0].to"))
    bad = copy.deepcopy(DEMO)
    bad["accounts"][0]["tariff"] = "nope"
    cases.append((bad, "$.accounts[0].tariff"))
    bad = copy.deepcopy(DEMO)  # a rule of the rating engine itself (server.catalog)
    zones = bad["tariffs"][0]["versions"][0]["zones"]
    first, second = list(zones)[:2]
    zones[second] = [*zones[second], zones[first][0]]
    cases.append((bad, f"$.tariffs[0].versions[0].zones.{second}[{len(zones[second]) - 1}]"))
    for body, path in cases:
        status, problem = await api.call("POST", "/v1/tariffs", json=body)
        assert status == 422, (path, problem)
        assert problem["errors"][0]["path"] == path, problem


async def test_versions_are_published_never_edited(api: Api) -> None:  # noqa: F811
    await api.call("POST", "/v1/tariffs", json={"currency": "EUR", "tariffs": [
        {"id": "T-V", "versions": [version("2026-01-01T00:00:00Z")]}]})
    status, v2 = await api.call("POST", "/v1/tariffs/T-V/versions", "operator",
                                json=version("2026-02-01T00:00:00Z", "0.03"))
    assert status == 201, v2
    status, same = await api.call("POST", "/v1/tariffs/T-V/versions",
                                  json=version("2026-02-01T00:00:00Z", "0.03"))
    assert status == 200 and same["tariff_version_id"] == v2["tariff_version_id"]
    status, problem = await api.call("POST", "/v1/tariffs/T-V/versions",
                                     json=version("2026-02-01T00:00:00Z", "0.04"))
    assert status == 409, problem
    for method in ("PUT", "PATCH", "DELETE"):
        status, _ = await api.call(method, f"/v1/tariffs/T-V/versions/{v2['tariff_version_id']}",
                                   json=version("2026-02-01T00:00:00Z", "0.05"))
        assert status == 405
    status, problem = await api.call("POST", "/v1/tariffs/NOPE/versions",
                                     json=version("2026-02-01T00:00:00Z"))
    assert status == 404
    status, problem = await api.call("POST", "/v1/tariffs/T-V/versions",
                                     json={**version("2026-03-01T00:00:00Z"), "rates": [
                                         {"kind": "fax", "zone": "*", "band": "*", "steps": []}]})
    assert status == 422 and problem["errors"][0]["path"] == "$.rates[0].kind"
    for i in range(3, 8):
        await api.call("POST", "/v1/tariffs/T-V/versions",
                       json=version(f"2026-{i:02d}-01T00:00:00Z"))
    pages = await api.pages("/v1/tariffs/T-V/versions", {"limit": 2})
    months = [v["effective_from"][:7] for p in pages for v in p]
    assert months == [f"2026-{i:02d}" for i in range(1, 8)]
    assert [len(p) for p in pages] == [2, 2, 2, 1]


async def test_tariff_list_pages(api: Api) -> None:  # noqa: F811
    for i in range(4):
        await api.call("POST", "/v1/tariffs", json={"tariffs": [{"id": f"TL-{i}"}]})
    ids = [t["tariff_id"] for p in await api.pages("/v1/tariffs", {"limit": 2}) for t in p]
    assert [i for i in ids if i.startswith("TL-")] == ["TL-0", "TL-1", "TL-2", "TL-3"]


async def test_subscriptions_never_overlap(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await api.call("POST", "/v1/tariffs", json={"tariffs": [{"id": "S-T"}]})
    await api.call("POST", "/v1/accounts", json={"account_id": "S-A"})
    status, sub = await api.call("POST", "/v1/subscriptions", "operator", json={
        "account_id": "S-A", "tariff_id": "S-T", "valid_from": "2026-01-01T00:00:00Z"})
    assert status == 201, sub
    status, problem = await api.call("POST", "/v1/subscriptions", json={
        "account_id": "S-A", "tariff_id": "S-T", "valid_from": "2026-03-01T00:00:00Z"})
    assert status == 409, problem
    sid = sub["subscription_id"]
    status, ended = await api.call("PATCH", f"/v1/subscriptions/{sid}",
                                   json={"valid_to": "2026-03-01T00:00:00+00:00"})
    assert status == 200 and ended["valid_to"] == "2026-03-01T00:00:00Z"
    status, sub2 = await api.call("POST", "/v1/subscriptions", json={
        "account_id": "S-A", "tariff_id": "S-T", "valid_from": "2026-03-01T00:00:00Z"})
    assert status == 201
    status, problem = await api.call("PATCH", f"/v1/subscriptions/{sid}", json={"valid_to": None})
    assert status == 409  # re-opening it would overlap the next one
    status, problem = await api.call("POST", "/v1/subscriptions", json={
        "account_id": "S-A", "tariff_id": "S-T", "valid_from": "2027-01-01T00:00:00Z",
        "valid_to": "2026-01-01T00:00:00Z"})
    assert status == 422 and problem["errors"][0]["path"] == "$.valid_to"
    status, problem = await api.call("POST", "/v1/subscriptions", json={
        "account_id": "S-NONE", "tariff_id": "S-T", "valid_from": "2026-01-01T00:00:00Z"})
    assert status == 422 and problem["errors"][0]["path"] == "$.account_id"
    status, problem = await api.call("POST", "/v1/subscriptions", json={
        "account_id": "S-A", "tariff_id": "S-T", "valid_from": "2026-01-01"})
    assert status == 422 and problem["errors"][0]["path"] == "$.valid_from"
    pages = await api.pages("/v1/subscriptions", {"account_id": "S-A", "limit": 1})
    assert [p[0]["subscription_id"] for p in pages] == [sid, sub2["subscription_id"]]
    pages = await api.pages("/v1/subscriptions", {"account_id": "S-A",
                                                  "active_at": "2026-02-15T00:00:00Z"})
    assert [s["subscription_id"] for s in pages[0]] == [sid]
    status, one = await api.call("GET", f"/v1/subscriptions/{sid}", "viewer")
    assert status == 200 and one["valid_to"] == "2026-03-01T00:00:00Z"
    assert len(await audit.entries(pool, f"subscription:{sid}")) == 2
