"""`/v1/accounts`: create, read, update, list with filters and cursor pagination."""

import asyncpg

from billing_oss.server.store import audit
from tests.conftest import wait_until
from tests.integration.api_harness import Api, api  # noqa: F401


async def test_create_read_update(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    status, created = await api.call("POST", "/v1/accounts", "operator", json={
        "account_id": "ACC-1", "name": "Acme", "currency": "EUR", "timezone": "Europe/Paris",
        "identifiers": [{"identifier": "33611111111"},
                        {"identifier": "208011234567890", "kind": "imsi"}],
        "attrs": {"segment": "b2b"},
    })
    assert status == 201, created
    assert created["status"] == "active"
    assert created["identifiers"] == [
        {"identifier": "208011234567890", "kind": "imsi"},
        {"identifier": "33611111111", "kind": "msisdn"}]
    assert created["created_at"].endswith("Z")
    status, read = await api.call("GET", "/v1/accounts/ACC-1", "viewer")
    assert status == 200 and read == created

    status, updated = await api.call("PATCH", "/v1/accounts/ACC-1", "operator",
                                     json={"status": "suspended", "name": "Acme SA"})
    assert status == 200
    assert (updated["status"], updated["name"], updated["timezone"]) == (
        "suspended", "Acme SA", "Europe/Paris")
    assert updated["identifiers"] == created["identifiers"]

    trail = await audit.entries(pool, "account:ACC-1")
    assert [e.action for e in trail] == ["account.create", "account.update"]
    assert trail[1].before["status"] == "active" and trail[1].after["status"] == "suspended"
    assert trail[1].actor.startswith("key:")


async def test_identifier_belongs_to_one_account(api: Api) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", json={
        "account_id": "ID-1", "identifiers": [{"identifier": "4915100000001"}]})
    status, problem = await api.call("POST", "/v1/accounts", json={
        "account_id": "ID-2", "identifiers": [{"identifier": "4915100000001"}]})
    assert status == 409 and problem["code"] == "CONFLICT"
    assert "ID-1" in problem["detail"]
    status, _ = await api.call("GET", "/v1/accounts/ID-2")
    assert status == 404  # the failed create left nothing behind
    status, problem = await api.call("POST", "/v1/accounts", json={"account_id": "ID-1"})
    assert status == 409


async def test_closed_account_stays_closed(api: Api) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", json={"account_id": "CL-1"})
    status, _ = await api.call("PATCH", "/v1/accounts/CL-1", json={"status": "closed"})
    assert status == 200
    status, problem = await api.call("PATCH", "/v1/accounts/CL-1", json={"status": "active"})
    assert status == 409, problem


async def test_validation_names_the_field(api: Api) -> None:  # noqa: F811
    cases = [
        ({"account_id": "X", "billing_day": 31}, "$.billing_day"),
        ({"account_id": "X", "currency": "euro"}, "$.currency"),
        ({"account_id": "has space"}, "$.account_id"),
        ({"account_id": "X", "identifiers": [{"identifier": "1", "kind": "fax"}]},
         "$.identifiers[0].kind"),
        ({"account_id": "X", "timezone": "Mars/Olympus"}, "$.timezone"),
        ({"account_id": "X", "name": "n" * 201}, "$.name"),
        ({"account_id": "X", "unexpected": 1}, "$"),
        ({"name": "no id"}, "$"),
    ]
    for body, path in cases:
        status, problem = await api.call("POST", "/v1/accounts", json=body)
        assert status == 422, (body, problem)
        assert problem["type"] == "/problems/validation"
        assert problem["errors"][0]["path"] == path, (body, problem)
    status, problem = await api.call("POST", "/v1/accounts", data=b"{not json",
                                     content_type="application/json")
    assert status == 400 and problem["code"] == "MALFORMED"
    status, problem = await api.call("POST", "/v1/accounts", data=b"account_id=X",
                                     content_type="application/x-www-form-urlencoded")
    assert status == 415
    status, problem = await api.call("PATCH", "/v1/accounts/none-such", json={"name": "x"})
    assert status == 404 and problem["code"] == "NOT_FOUND"
    status, problem = await api.call("GET", "/v1/accounts/bad%20id")
    assert status == 404


async def test_list_filters_and_pagination(api: Api) -> None:  # noqa: F811
    for i in range(7):
        await api.call("POST", "/v1/accounts", json={
            "account_id": f"PG-{i:02d}", "name": f"Page {i}",
            "status": "suspended" if i % 2 else "active",
            "identifiers": [{"identifier": f"4400000000{i:02d}"}]})
    pages = await api.pages("/v1/accounts", {"name_prefix": "Page", "limit": 3})
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [a["account_id"] for p in pages for a in p]
    assert ids == [f"PG-{i:02d}" for i in range(7)]
    pages = await api.pages("/v1/accounts", {"name_prefix": "Page", "status": "suspended"})
    assert [a["account_id"] for a in pages[0]] == ["PG-01", "PG-03", "PG-05"]
    pages = await api.pages("/v1/accounts", {"identifier": "440000000004"})
    assert [a["account_id"] for a in pages[0]] == ["PG-04"]
    for bad in ({"limit": 0}, {"limit": 501}, {"limit": "many"}, {"cursor": "!!"},
                {"cursor": "bm90IGEgY3Vyc29y"}, {"status": "gone"}):
        status, problem = await api.call("GET", "/v1/accounts", params=bad)
        assert status == 422, (bad, problem)
        assert problem["errors"][0]["location"] == "query"


async def test_cached_reads_follow_every_change(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", json={"account_id": "CACHE-1", "name": "one"})
    for _ in range(3):
        status, read = await api.call("GET", "/v1/accounts/CACHE-1", "viewer")
        assert status == 200 and read["name"] == "one"
    await api.call("PATCH", "/v1/accounts/CACHE-1", json={"name": "two"})
    assert (await api.call("GET", "/v1/accounts/CACHE-1"))[1]["name"] == "two"
    # A write from elsewhere (another process, psql): the NOTIFY drops the cached body.
    await pool.execute("UPDATE accounts SET name = 'three' WHERE account_id = 'CACHE-1'")

    async def seen() -> bool:
        return bool((await api.call("GET", "/v1/accounts/CACHE-1"))[1]["name"] == "three")

    assert await wait_until(seen, within=2.0)
    await pool.execute("INSERT INTO account_identifiers VALUES ('4477700001', 'CACHE-1')")

    async def identifier_seen() -> bool:
        body = (await api.call("GET", "/v1/accounts/CACHE-1"))[1]
        return bool(body["identifiers"])

    assert await wait_until(identifier_seen, within=2.0)
