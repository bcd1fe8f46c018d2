"""`/v1/webhooks` over HTTP, and `billing-oss webhook`: register, ping a loopback receiver,
read the delivery log, rotate, replay, disable, delete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from standardwebhooks import Webhook

from billing_oss.server.cli import main
from billing_oss.server.config import WebhooksConfig
from tests.conftest import wait_until
from tests.integration.api_harness import Api, live_api
from tests.integration.test_webhooks import delivering
from tests.webhook_receiver import receiving

ALLOW = {"webhooks.allow_http": True, "webhooks.allow_private": True}


@pytest.fixture(scope="module")
async def api(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Api]:
    async with live_api(pool, database_url, overrides=ALLOW) as client:
        yield client


async def test_register_ping_log_rotate_replay_and_delete(api: Api, pool: asyncpg.Pool) -> None:
    async with receiving() as receiver:
        status, new = await api.call("POST", "/v1/webhooks", json={
            "url": receiver.url + "/crm", "event_types": ["invoice.finalised"],
            "description": "CRM"})
        assert status == 201, new
        eid, secret = new["endpoint"]["endpoint_id"], new["secret"]
        assert secret.startswith("whsec_") and new["endpoint"]["enabled"] is True
        assert new["endpoint"]["max_concurrency"] == WebhooksConfig().max_concurrency
        status, listed = await api.call("GET", "/v1/webhooks")
        assert status == 200 and [e["endpoint_id"] for e in listed["items"]] == [eid]
        assert "secret" not in listed["items"][0]
        settings = WebhooksConfig(allow_http=True, allow_private=True, rescan_s=0.5)
        async with delivering(pool, settings):
            status, ping = await api.call("POST", f"/v1/webhooks/{eid}/ping", json={})
            assert status == 202
            assert await wait_until(lambda: _got(receiver, 1), 10)
            got = receiver.got[0]
            assert Webhook(secret).verify(got.body, got.headers)["type"] == "webhook.ping"
            assert got.headers["webhook-id"] == ping["event_id"]
            log = await wait_until(lambda: _delivered(api, eid, 1), 5)
            view = log[0]
            assert view["delivery"]["event_id"] == ping["event_id"]
            assert view["attempts"][0]["status"] == 200
            assert view["attempts"][0]["latency_ms"] >= 0

            status, rotated = await api.call("POST", f"/v1/webhooks/{eid}/rotate-secret",
                                             json={"grace_s": 3600})
            assert status == 200 and rotated["secret"] != secret
            await asyncio.sleep(0.3)
            status, queued = await api.call("POST", f"/v1/webhooks/{eid}/replay",
                                            json={"event_id": ping["event_id"]})
            assert (status, queued) == (202, {"queued": 1})
            assert await wait_until(lambda: _got(receiver, 2), 10)
            again = receiver.got[1]
            assert again.headers["webhook-id"] == ping["event_id"]
            for key in (secret, rotated["secret"]):  # re-signed, by both secrets
                Webhook(key).verify(again.body, again.headers)
            assert again.headers["webhook-timestamp"] >= got.headers["webhook-timestamp"]

        status, off = await api.call("PATCH", f"/v1/webhooks/{eid}", json={"enabled": False})
        assert status == 200 and off["enabled"] is False
        status, gone = await api.call("DELETE", f"/v1/webhooks/{eid}")
        assert status == 200 and gone["endpoint_id"] == eid
        status, _ = await api.call("GET", f"/v1/webhooks/{eid}")
        assert status == 404


async def _got(receiver: object, n: int) -> bool:
    return len(receiver.got) >= n  # type: ignore[attr-defined]


async def _delivered(api: Api, eid: int, n: int) -> list[dict[str, object]]:
    status, page = await api.call("GET", f"/v1/webhooks/{eid}/deliveries",
                                  params={"state": "delivered"})
    assert status == 200
    return page["items"] if len(page["items"]) >= n else []  # type: ignore[no-any-return]


async def test_bad_registrations_are_named(api: Api) -> None:
    status, problem = await api.call("POST", "/v1/webhooks", json={
        "url": "ftp://example.com/x", "event_types": ["*"]})
    assert status == 422 and problem["errors"][0]["path"] == "$.url"
    status, problem = await api.call("POST", "/v1/webhooks", json={
        "url": "https://example.com/x", "event_types": ["invoice.paid_twice"]})
    assert status == 422 and problem["errors"][0]["path"] == "$.event_types[0]"
    status, problem = await api.call("POST", "/v1/webhooks/1/replay", json={})
    assert status in (404, 422)
    status, _ = await api.call("GET", "/v1/webhooks", role="operator")
    assert status == 403


def test_the_webhook_verb_adds_lists_and_shows_deliveries(
        database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        status = main(["webhook", *args, "--database-url", database_url])
        out, err = capsys.readouterr()
        return status, out, err

    status, out, err = run("add", "https://crm.example.com/hooks", "--event",
                           "invoice.finalised", "--event", "credit_note.issued", "--json")
    assert status == 0, err
    new = json.loads(out)
    eid = str(new["endpoint"]["endpoint_id"])
    assert new["endpoint"]["event_types"] == ["invoice.finalised", "credit_note.issued"]
    assert run("deliveries", eid)[1].strip() == "no deliveries"
    status, _, err = run("add", "http://127.0.0.1:9/x", "--event", "*")
    assert status == 1 and "allow_http" in err
    assert run("disable", eid)[0] == 0
    listed = run("list")[1]
    assert "https://crm.example.com/hooks" in listed and "DISABLED" in listed
    assert run("replay", eid, "--since", "2026-01-01T00:00:00Z")[1].startswith("0 deliveries")
