"""`/v1/api-keys` (admin; operators create customer keys) and `/v1/files` (the source file
ledger with gaps)."""

import asyncpg

from billing_oss.server.store import audit
from tests.integration.api_harness import Api, api  # noqa: F401


async def test_key_lifecycle(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    status, new = await api.call("POST", "/v1/api-keys", "admin",
                                 json={"role": "viewer", "name": "dashboard"})
    assert status == 201, new
    token, key_id = new["token"], new["key"]["key_id"]
    assert token.startswith(f"bok_{key_id}_")
    headers = {"Authorization": f"Bearer {token}"}
    async with api.http.get(api.url + "/v1/accounts", headers=headers) as r:
        assert r.status == 200
    pages = await api.pages("/v1/api-keys", {"limit": 2}, role="admin")
    listed = [k for p in pages for k in p]
    assert key_id in [k["key_id"] for k in listed]
    assert all("token" not in k and "secret" not in str(k) for k in listed)
    assert token not in str(await pool.fetch("SELECT * FROM audit_log"))

    status, revoked = await api.call("DELETE", f"/v1/api-keys/{key_id}", "admin")
    assert status == 200 and revoked["revoked_at"] is not None
    async with api.http.get(api.url + "/v1/accounts", headers=headers) as r:
        assert r.status == 401  # revoked through this process: no cache grace
    status, _ = await api.call("DELETE", f"/v1/api-keys/{key_id}", "admin")
    assert status == 409
    status, _ = await api.call("DELETE", "/v1/api-keys/ffffffffffffffff", "admin")
    assert status == 404
    own = api.tokens["admin"].split("_")[1]
    status, problem = await api.call("DELETE", f"/v1/api-keys/{own}", "admin")
    assert status == 409 and "itself" in problem["detail"]
    pages = await api.pages("/v1/api-keys", {}, role="admin")
    assert key_id not in [k["key_id"] for p in pages for k in p]
    pages = await api.pages("/v1/api-keys", {"include_revoked": "true"}, role="admin")
    assert key_id in [k["key_id"] for p in pages for k in p]
    actions = [e.action for e in await audit.entries(pool, f"api_key:{key_id}")]
    assert actions == ["api_key.create", "api_key.revoke"]
    status, problem = await api.call("POST", "/v1/api-keys", json={"role": "root"})
    assert status == 422 and problem["errors"][0]["path"] == "$.role"


async def test_customer_keys_name_their_account(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    await api.call("POST", "/v1/accounts", "operator", json={"account_id": "CK1"})
    status, problem = await api.call("POST", "/v1/api-keys", "operator", json={"role": "customer"})
    assert status == 422 and problem["errors"][0]["path"] == "$.account_id"
    status, problem = await api.call("POST", "/v1/api-keys", "operator",
                                     json={"role": "customer", "account_id": "NOPE"})
    assert status == 422 and "no account NOPE" in problem["detail"]
    status, problem = await api.call("POST", "/v1/api-keys", "admin",
                                     json={"role": "viewer", "account_id": "CK1"})
    assert status == 422 and problem["errors"][0]["path"] == "$.account_id"
    status, problem = await api.call("POST", "/v1/api-keys", "operator", json={"role": "viewer"})
    assert status == 403 and problem["code"] == "FORBIDDEN"
    status, problem = await api.call("POST", "/v1/api-keys", "viewer",
                                     json={"role": "customer", "account_id": "CK1"})
    assert status == 403

    status, new = await api.call("POST", "/v1/api-keys", "operator",
                                 json={"role": "customer", "account_id": "CK1", "name": "portal"})
    assert status == 201, new
    assert new["key"]["role"] == "customer" and new["key"]["account_id"] == "CK1"
    pages = await api.pages("/v1/api-keys", {"account_id": "CK1"}, role="admin")
    assert [(k["key_id"], k["account_id"]) for p in pages for k in p] == [
        (new["key"]["key_id"], "CK1")]
    # The key authenticates, but grants nothing an operator route serves.
    headers = {"Authorization": f"Bearer {new['token']}"}
    async with api.http.get(api.url + "/v1/accounts", headers=headers) as r:
        assert r.status == 403
    async with api.http.post(api.url + "/v1/api-keys", headers=headers,
                             json={"role": "customer", "account_id": "CK1"}) as r:
        assert r.status == 403
    actions = [e.action for e in await audit.entries(pool, f"api_key:{new['key']['key_id']}")]
    assert actions == ["api_key.create"]


async def test_files_with_counts_and_gaps(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    for seq in (1, 2, 5, 6, 9):
        await pool.execute(
            "INSERT INTO source_files (source, name, format, sequence_no, sha256, state,"
            " count_in, count_charged, count_suspense) VALUES ('sftp-a', $1, 'tap3', $2, $3,"
            " 'done', 10, 9, 1)", f"CDDEU{seq:05d}", seq, f"{seq:064x}")
    await pool.execute(
        "INSERT INTO source_files (source, name, format, sequence_no, sha256, state)"
        " VALUES ('sftp-b', 'x', 'csv', 1, 'b1', 'error'), ('sftp-b', 'y', 'csv', 3, 'b3',"
        " 'done')")
    pages = await api.pages("/v1/files", {"source": "sftp-a", "limit": 2})
    files = [f for p in pages for f in p]
    assert [f["sequence_no"] for f in files] == [1, 2, 5, 6, 9]
    assert (files[0]["count_in"], files[0]["count_charged"], files[0]["count_suspense"]) == (
        10, 9, 1)
    status, one = await api.call("GET", f"/v1/files/{files[2]['source_file_id']}", "viewer")
    assert status == 200 and one["name"] == "CDDEU00005"
    status, gaps = await api.call("GET", "/v1/files/gaps", "viewer", params={"source": "sftp-a"})
    assert [(g["first_missing"], g["last_missing"]) for g in gaps["items"]] == [(3, 4), (7, 8)]
    status, gaps = await api.call("GET", "/v1/files/gaps")
    assert [(g["source"], g["first_missing"]) for g in gaps["items"]] == [
        ("sftp-a", 3), ("sftp-a", 7), ("sftp-b", 2)]
    pages = await api.pages("/v1/files", {"state": "error"})
    assert [f["name"] for f in pages[0]] == ["x"]
    status, _ = await api.call("GET", "/v1/files/424242")
    assert status == 404
