"""`/v1/partners`, `/v1/settlement-files` and `/v1/settlement-reports` on a live API: admins
configure partners, operators generate files, viewers read; errors are problem+json."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.server.store.catalog_repo import load_catalog
from tests.integration.api_harness import Api, api  # noqa: F401
from tests.integration.test_settlement import CATALOG

PARTNER = {"tadig": "DEUD1", "our_tadig": "FRAF1", "local_currency": "EUR",
           "tap_currency": "EUR", "wholesale_tariff": "wholesale-de",
           "imsi_prefixes": ["26201"], "name": "Deutsche Demo"}
PERIOD = {"period_from": "2026-01-01T00:00:00Z", "period_to": "2026-02-01T00:00:00Z"}


async def test_partners_files_and_reports(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await load_catalog(pool, CATALOG)
    status, problem = await api.call("PUT", "/v1/partners/DEUD1", "operator", json=PARTNER)
    assert status == 403
    status, made = await api.call("PUT", "/v1/partners/DEUD1", "admin", json=PARTNER)
    assert status == 201, made
    assert made["imsi_prefixes"] == ["26201"] and made["tap_decimal_places"] == 3
    status, again = await api.call("PUT", "/v1/partners/DEUD1", "admin",
                                   json={**PARTNER, "name": "Renamed"})
    assert status == 200 and again["name"] == "Renamed"
    status, problem = await api.call("PUT", "/v1/partners/DEUD1", "admin",
                                     json={**PARTNER, "imsi_prefixes": ["26x"]})
    assert status == 422 and "imsi_prefixes[0]" in problem["detail"]
    status, listing = await api.call("GET", "/v1/partners", "viewer")
    assert status == 200 and [p["tadig"] for p in listing["items"]] == ["DEUD1"]

    status, problem = await api.call("POST", "/v1/settlement-files", "viewer",
                                     json={"partner": "DEUD1", **PERIOD})
    assert status == 403
    status, problem = await api.call("POST", "/v1/settlement-files", "operator",
                                     json={"partner": "NOPE1", **PERIOD})
    assert status == 404 and problem["code"] == "NOT_FOUND"
    status, problem = await api.call("POST", "/v1/settlement-files", "operator", json={
        "partner": "DEUD1", "period_from": PERIOD["period_to"],
        "period_to": PERIOD["period_from"]})
    assert status == 422 and "period_to" in problem["detail"]
    status, made = await api.call("POST", "/v1/settlement-files", "operator",
                                  json={"partner": "DEUD1", **PERIOD})
    assert status == 201, made
    assert (made["name"], made["file_type"], made["event_count"], made["total_charge"]) == (
        "CDFRAF1DEUD100001", "notification", 0, "0.000")
    status, one = await api.call("GET", f"/v1/settlement-files/{made['file_id']}", "viewer")
    assert status == 200 and one["sha256"] == made["sha256"]
    status, files = await api.call("GET", "/v1/settlement-files", "viewer",
                                   params={"partner": "DEUD1", "limit": "1"})
    assert status == 200 and len(files["items"]) == 1 and files["next_cursor"] is None
    status, _ = await api.call("GET", "/v1/settlement-files/999999", "viewer")
    assert status == 404

    now = dt.datetime.now(dt.UTC)
    window = {"partner": "DEUD1",
              "period_from": (now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "period_to": (now + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}
    status, built = await api.call("GET", "/v1/settlement-reports", "viewer", params=window)
    assert status == 200, built
    assert (built["sent"]["files"], built["net"], built["currency"]) == (1, "0.000", "EUR")
    async with api.http.get(api.url + "/v1/settlement-reports.csv", params=window,
                            headers=api.headers("viewer")) as r:
        assert r.status == 200 and r.content_type == "text/csv"
        assert (await r.text()).splitlines()[-1].endswith("net,,,0.000,EUR")
    async with api.http.get(api.url + "/v1/settlement-reports.pdf", params=window,
                            headers=api.headers("viewer")) as r:
        assert r.status == 200 and (await r.read())[:5] == b"%PDF-"
