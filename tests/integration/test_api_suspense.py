"""`/v1/suspense`: list, inspect raw record and reason, discard with a reason, retry."""

import base64
import json

import asyncpg
import pytest

from billing_oss.server.store import audit
from tests.integration.api_harness import Api, api  # noqa: F401


@pytest.fixture(scope="module")
async def suspended(pool: asyncpg.Pool) -> list[int]:
    ids = []
    for i in range(5):
        ids.append(await pool.fetchval(
            "INSERT INTO suspense (source, record_key, reason, detail, record, raw)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING suspense_id",
            "mqtt", f"k{i}", "UNKNOWN_ACCOUNT" if i % 2 else "NO_ZONE",
            f"calling 3399{i} matches no account",
            f'{{"record_key": "k{i}", "kind": "voice"}}', b"\x00\xffraw" + bytes([i])))
    return ids


async def test_list_and_inspect(api: Api, suspended: list[int]) -> None:  # noqa: F811
    pages = await api.pages("/v1/suspense", {"limit": 2})
    assert [s["suspense_id"] for p in pages for s in p] == suspended
    pages = await api.pages("/v1/suspense", {"reason": "UNKNOWN_ACCOUNT"})
    assert [s["record_key"] for s in pages[0]] == ["k1", "k3"]
    status, item = await api.call("GET", f"/v1/suspense/{suspended[2]}", "viewer")
    assert status == 200
    assert item["reason"] == "NO_ZONE" and item["detail"] == "calling 33992 matches no account"
    assert base64.b64decode(item["raw"]) == b"\x00\xffraw\x02"
    assert item["record"] == {"record_key": "k2", "kind": "voice"}
    status, _ = await api.call("GET", "/v1/suspense/999999")
    assert status == 404
    status, _ = await api.call("GET", "/v1/suspense/0")
    assert status == 404
    status, _ = await api.call("GET", "/v1/suspense", params={"state": "lost"})
    assert status == 422


async def test_discard_records_the_reason(api: Api, pool: asyncpg.Pool,  # noqa: F811
                                          suspended: list[int]) -> None:
    sid = suspended[0]
    status, problem = await api.call("POST", f"/v1/suspense/{sid}/discard", json={"reason": " "})
    assert status == 422 and problem["errors"][0]["path"] == "$.reason"
    status, item = await api.call("POST", f"/v1/suspense/{sid}/discard", "operator",
                                  json={"reason": "test traffic from the lab"})
    assert status == 200
    assert (item["state"], item["resolution"]) == ("discarded", "test traffic from the lab")
    assert item["resolved_at"] is not None
    status, problem = await api.call("POST", f"/v1/suspense/{sid}/discard",
                                     json={"reason": "again"})
    assert status == 409
    [entry] = await audit.entries(pool, f"suspense:{sid}")
    assert entry.before["state"] == "open" and entry.after["state"] == "discarded"
    assert await pool.fetchval("SELECT count(*) FROM suspense") == len(suspended)  # kept
    pages = await api.pages("/v1/suspense", {"state": "open"})
    assert sid not in [s["suspense_id"] for s in pages[0]]


async def test_retry_charges_once_the_account_exists(api: Api, pool: asyncpg.Pool,  # noqa: F811
                                                     suspended: list[int]) -> None:
    record = {"record_key": "late-1", "source": "mqtt", "kind": "voice",
              "event_time": "2026-01-10T09:00:00Z", "duration_s": 42,
              "calling": "33655500001", "called": "33612345678"}
    # As the pipeline leaves it: the record key reserved, the record in suspense.
    sid = await pool.fetchval(
        "INSERT INTO suspense (source, record_key, reason, detail, record)"
        " VALUES ('mqtt', 'late-1', 'UNKNOWN_ACCOUNT', 'no account', $1::jsonb)"
        " RETURNING suspense_id", json.dumps(record))
    await pool.execute("INSERT INTO usage_keys (source, record_key, event_time)"
                       " VALUES ('mqtt', 'late-1', '2026-01-10T09:00:00Z')")
    status, outcome = await api.call("POST", f"/v1/suspense/{sid}/retry", "operator")
    assert status == 200, outcome
    assert (outcome["status"], outcome["reason"]) == ("suspense", "UNKNOWN_ACCOUNT")
    assert outcome["item"]["state"] == "open"

    # An account is rated once it has a plan: the account, a tariff and its subscription.
    for path, body in (
            ("/v1/accounts", {"account_id": "LATE",
                              "identifiers": [{"identifier": "33655500001"}]}),
            ("/v1/tariffs", {"currency": "EUR", "tariffs": [{"id": "late-tariff", "versions": [{
                "effective_from": "2026-01-01T00:00:00Z", "timezone": "Europe/Paris", "rates": [{
                    "kind": "voice", "zone": "*", "band": "*",
                    "steps": [{"from": 0, "price": "0.01", "unit": 60, "increment": 1}]}]}]}]}),
            ("/v1/subscriptions", {"account_id": "LATE", "tariff_id": "late-tariff",
                                   "valid_from": "2026-01-01T00:00:00Z"})):
        status, answer = await api.call("POST", path, json=body)
        assert status in (200, 201), (path, answer)
    status, outcome = await api.call("POST", f"/v1/suspense/{sid}/retry", "operator")
    assert status == 200, outcome
    assert outcome["status"] == "charged", outcome
    assert outcome["amount"] == {"amount": "0.042000", "currency": "EUR"}
    assert outcome["item"]["state"] == "retried"
    pages = await api.pages("/v1/charges", {"account_id": "LATE"})
    assert [c["amount"]["amount"] for c in pages[0]] == ["0.042000"]
    status, _ = await api.call("POST", f"/v1/suspense/{sid}/retry", "operator")
    assert status == 409
    actions = [e.action for e in await audit.entries(pool, f"suspense:{sid}")]
    assert actions == ["suspense.retry.suspense", "suspense.retry.charged"]
    status, _ = await api.call("POST", f"/v1/suspense/{suspended[0]}/retry")
    assert status == 409  # discarded above: not open


async def test_a_corrected_record_is_retried_as_corrected(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    """A mistyped calling number: the operator corrects it (audited, with the reason), the
    retry rates the corrected record; the raw bytes stay as the source sent them."""
    record = {"record_key": "typo-1", "source": "mqtt", "kind": "voice",
              "event_time": "2026-01-11T09:00:00Z", "duration_s": 60,
              "calling": "3365550000O", "called": "33612345678"}  # a letter O for a zero
    sid = await pool.fetchval(
        "INSERT INTO suspense (source, record_key, reason, detail, record, raw)"
        " VALUES ('mqtt', 'typo-1', 'UNKNOWN_ACCOUNT', 'no account', $1::jsonb, $2)"
        " RETURNING suspense_id", json.dumps(record), b"raw typo-1")
    await pool.execute("INSERT INTO usage_keys (source, record_key, event_time)"
                       " VALUES ('mqtt', 'typo-1', '2026-01-11T09:00:00Z')")
    for path, body in (
            ("/v1/accounts", {"account_id": "TYPO",
                              "identifiers": [{"identifier": "33655500002"}]}),
            ("/v1/tariffs", {"currency": "EUR", "tariffs": [{"id": "typo-tariff", "versions": [{
                "effective_from": "2026-01-01T00:00:00Z", "timezone": "Europe/Paris", "rates": [{
                    "kind": "voice", "zone": "*", "band": "*",
                    "steps": [{"from": 0, "price": "0.01", "unit": 60, "increment": 1}]}]}]}]}),
            ("/v1/subscriptions", {"account_id": "TYPO", "tariff_id": "typo-tariff",
                                   "valid_from": "2026-01-01T00:00:00Z"})):
        status, answer = await api.call("POST", path, json=body)
        assert status in (200, 201), (path, answer)
    fix = {"set": {"calling": "33655500002"}, "reason": "letter O typed for a zero"}
    status, _ = await api.call("POST", f"/v1/suspense/{sid}/correct", "viewer", json=fix)
    assert status == 403
    for bad in ({"set": {"record_key": "other"}, "reason": "x"},  # its identity stays
                {"set": {"duration_s": "sixty"}, "reason": "x"},
                {"set": {"event_time": "yesterday"}, "reason": "x"},
                {"set": {"kind": "fax"}, "reason": "x"},
                {"set": {}, "reason": "x"}, {"set": {"calling": "1"}, "reason": " "}):
        status, problem = await api.call("POST", f"/v1/suspense/{sid}/correct", "operator",
                                         json=bad)
        assert status == 422, (bad, problem)
    status, item = await api.call("POST", f"/v1/suspense/{sid}/correct", "operator", json=fix)
    assert status == 200, item
    assert item["record"] == {**record, "calling": "33655500002"} and item["state"] == "open"
    assert base64.b64decode(item["raw"]) == b"raw typo-1"
    status, outcome = await api.call("POST", f"/v1/suspense/{sid}/retry", "operator")
    assert status == 200 and outcome["status"] == "charged", outcome
    assert outcome["amount"] == {"amount": "0.060000", "currency": "EUR"}
    entries = await audit.entries(pool, f"suspense:{sid}")
    assert [e.action for e in entries] == ["suspense.correct", "suspense.retry.charged"]
    assert entries[0].before == {"record": {"calling": "3365550000O"}}
    assert entries[0].after == {"record": {"calling": "33655500002"},
                                "reason": "letter O typed for a zero"}
    status, _ = await api.call("POST", f"/v1/suspense/{sid}/correct", "operator", json=fix)
    assert status == 409  # charged: no longer open
