"""Webhook delivery from the outbox to a loopback aiohttp receiver: signed in the Standard
Webhooks format, in order per account, retried, dead-lettered, disabled, replayed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import ClassVar

import asyncpg
import msgspec
import pytest
from standardwebhooks import Webhook

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.config import WebhooksConfig
from billing_oss.server.integrations import outbox, webhook_repo, webhooks
from billing_oss.server.integrations.delivery import WebhookDeliverer
from billing_oss.server.integrations.events import DomainEvent
from billing_oss.server.integrations.targets import PolicyResolver, check_url
from tests.conftest import wait_until
from tests.webhook_receiver import Receiver, receiving

SETTINGS = WebhooksConfig(allow_http=True, allow_private=True, retry_schedule_s=[0.05, 0.1],
                          timeout_s=0.5, disable_after_dead_letters=2, rescan_s=0.5)


class HookTested(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "test.hook_tested"
    n: int


class HookOther(DomainEvent, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "test.hook_other"
    n: int


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as r:
        yield r


@pytest.fixture
async def clean(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM webhook_endpoints")


@contextlib.asynccontextmanager
async def delivering(pool: asyncpg.Pool, settings: WebhooksConfig = SETTINGS
                     ) -> AsyncIterator[WebhookDeliverer]:
    deliverer = WebhookDeliverer(pool, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop))
    await asyncio.wait_for(deliverer.leading.wait(), 10)
    try:
        yield deliverer
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def endpoint(pool: asyncpg.Pool, receiver: Receiver, path: str,
                   types: list[str] | None = None) -> int:
    new = await webhooks.create(pool, SETTINGS, receiver.url + path,
                                types or ["test.hook_tested"])
    receiver.secrets[path] = [new.secret]
    return new.endpoint.endpoint_id


async def emit(pool: asyncpg.Pool, items: list[tuple[DomainEvent, str]]) -> list[str]:
    async with pool.acquire() as conn, conn.transaction():
        return await outbox.emit_many(conn, items)


async def test_events_arrive_signed_once_each_in_order_per_account(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    await endpoint(pool, receiver, "/a")
    async with delivering(pool):
        ids = await emit(pool, [(HookTested(n=i), f"WH{i % 3}") for i in range(30)])
        await emit(pool, [(HookOther(n=99), "WH0")])  # not subscribed: never sent
        assert await wait_until(lambda: _at_least(receiver, "/a", 30), 10)
        await asyncio.sleep(0.2)
    got = receiver.on("/a")
    assert sorted(r.headers["webhook-id"] for r in got) == sorted(ids)
    assert all(r.verified for r in got)
    for account in ("WH0", "WH1", "WH2"):
        ns = [r.event["data"]["n"] for r in got if r.event["account_id"] == account]
        assert ns == sorted(ns) and len(ns) == 10
    first = got[0].event
    assert first["type"] == "test.hook_tested" and first["stream"].startswith("acct:WH")
    assert first["version"] == 1 and first["timestamp"].endswith("Z")


async def _at_least(receiver: Receiver, path: str, n: int) -> bool:
    return len(receiver.on(path)) >= n


async def test_a_failing_receiver_is_retried_in_order_and_blocks_no_one_else(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    failing = await endpoint(pool, receiver, "/fails")
    await endpoint(pool, receiver, "/ok")
    receiver.behave("/fails", status=500)
    patient = msgspec.structs.replace(SETTINGS, retry_schedule_s=[0.2] * 20)
    async with delivering(pool, patient):
        await emit(pool, [(HookTested(n=i), "WHR") for i in range(3)])
        assert await wait_until(lambda: _at_least(receiver, "/ok", 3), 10)
        # the failing endpoint tried the first event only (in order), and retries it
        assert await wait_until(lambda: _calls(receiver, "/fails", 2), 5)
        assert {r.event["data"]["n"] for r in receiver.on("/fails")} == {0}
        receiver.behave("/fails", status=204)
        assert await wait_until(lambda: _n_in(receiver, "/fails", {0, 1, 2}), 10)
        async with pool.acquire() as conn:
            log = await _wait_log(conn, failing, 3)
    ns = [r.event["data"]["n"] for r in receiver.on("/fails")]
    assert ns == sorted(ns)
    first = min(log, key=lambda d: d.delivery_id)
    assert first.state == "delivered" and first.attempts >= 2 and first.last_status == 204
    async with pool.acquire() as conn:
        tries = await webhook_repo.attempts(conn, [first.delivery_id])
    assert [t.status for t in tries][:1] == [500] and tries[-1].status == 204
    assert all(t.latency_ms >= 0 for t in tries)


async def _calls(receiver: Receiver, path: str, n: int) -> bool:
    return receiver.calls.get(path, 0) >= n


async def _n_in(receiver: Receiver, path: str, want: set[int]) -> bool:
    return want <= {r.event["data"]["n"] for r in receiver.on(path) if r.headers}


async def _wait_log(conn: asyncpg.Connection, endpoint_id: int, delivered: int
                    ) -> list[webhook_repo.DeliveryRow]:
    async def done() -> list[webhook_repo.DeliveryRow]:
        rows = await webhook_repo.deliveries(conn, endpoint_id, state="delivered", after=None,
                                             limit=100)
        return rows if len(rows) >= delivered else []
    return await wait_until(done, 5)


async def test_redirects_and_timeouts_are_failures_then_dead_letters_then_disabled(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    redirected = await endpoint(pool, receiver, "/moved", ["test.hook_tested",
                                                           "webhook.endpoint_disabled"])
    slow = await endpoint(pool, receiver, "/slow")
    watcher = await endpoint(pool, receiver, "/watch", ["webhook.endpoint_disabled"])
    receiver.behave("/moved", status=302, location=receiver.url + "/elsewhere")
    receiver.behave("/slow", delay=2.0)
    async with delivering(pool):
        await emit(pool, [(HookTested(n=i), f"WHD{i}") for i in range(2)])
        assert await wait_until(lambda: _at_least(receiver, "/watch", 2), 15)
    assert receiver.calls.get("/elsewhere") is None  # never followed
    assert receiver.calls["/moved"] == 2 * 3  # two events × (1 + two retries)
    async with pool.acquire() as conn:
        moved = await webhook_repo.get(conn, redirected)
        dead = await webhook_repo.deliveries(conn, redirected, state="dead", after=None,
                                             limit=10)
        slow_dead = await webhook_repo.deliveries(conn, slow, state="dead", after=None,
                                                  limit=10)
    assert not moved.enabled and moved.disabled_reason == "2 deliveries dead-lettered in a row"
    assert len(dead) == 2 and all(d.last_status == 302 and "not followed" in str(d.last_error)
                                  for d in dead)
    assert len(slow_dead) == 2 and "no answer within 0.5 s" in str(slow_dead[0].last_error)
    said = sorted(r.event["data"]["endpoint_id"] for r in receiver.on("/watch"))
    assert said == sorted([redirected, slow]) and watcher not in said
    assert all(r.verified for r in receiver.on("/watch"))


async def test_a_rotated_secret_signs_beside_the_old_one_until_its_grace_ends(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    eid = await endpoint(pool, receiver, "/rot")
    old = receiver.secrets["/rot"][0]
    rotated = await webhooks.rotate(pool, SETTINGS, eid, grace_s=60)
    async with delivering(pool):
        await emit(pool, [(HookTested(n=1), "WHS")])
        assert await wait_until(lambda: _at_least(receiver, "/rot", 1), 10)
        both = receiver.on("/rot")[0]
        for secret in (old, rotated.secret):
            Webhook(secret).verify(both.body, both.headers)
        assert len(both.headers["webhook-signature"].split(" ")) == 2
        await webhooks.rotate(pool, SETTINGS, eid, grace_s=0)  # the previous two expire
        await asyncio.sleep(0.3)  # the change reaches the deliverer
        await emit(pool, [(HookTested(n=2), "WHS")])
        assert await wait_until(lambda: _at_least(receiver, "/rot", 2), 10)
    last = receiver.on("/rot")[1]
    assert len(last.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(Exception, match="signature"):
        Webhook(rotated.secret).verify(last.body, last.headers)


async def test_replay_sends_one_event_or_a_time_range_again(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    eid = await endpoint(pool, receiver, "/replay")
    since = await pool.fetchval("SELECT now()")
    # A receiver slowed past the timeout by a busy machine gets a retry (at least once),
    # which this exact sequence would count as a replay.
    patient = msgspec.structs.replace(SETTINGS, timeout_s=10.0)
    async with delivering(pool, patient):
        ids = await emit(pool, [(HookTested(n=i), "WHP") for i in range(4)])
        assert await wait_until(lambda: _at_least(receiver, "/replay", 4), 10)
        assert await webhooks.replay(pool, eid, event_id=ids[2]) == 1
        assert await wait_until(lambda: _at_least(receiver, "/replay", 5), 10)
        assert await webhooks.replay(pool, eid, since=since) == 4
        assert await wait_until(lambda: _at_least(receiver, "/replay", 9), 10)
    ids_seen = [r.headers["webhook-id"] for r in receiver.on("/replay")]
    assert ids_seen[4] == ids[2] and ids_seen[5:] == ids
    with pytest.raises(InvalidRequest):
        await webhooks.replay(pool, eid)


async def test_deliveries_left_pending_by_a_stop_go_out_after_a_restart(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    await endpoint(pool, receiver, "/later")
    await emit(pool, [(HookTested(n=i), "WHL") for i in range(5)])  # no deliverer running
    async with delivering(pool):
        assert await wait_until(lambda: _at_least(receiver, "/later", 5), 10)
    assert [r.event["data"]["n"] for r in receiver.on("/later")] == list(range(5))


async def test_targets_are_limited_to_what_the_configuration_allows() -> None:
    strict = {"allow_http": False, "allow_private": False}
    assert check_url("https://hooks.example.com/x", **strict)
    for url, why in [("http://hooks.example.com/x", "allow_http"),
                     ("https://127.0.0.1/x", "allow_private"),
                     ("https://[::1]/x", "allow_private"),
                     ("https://10.1.2.3/x", "allow_private"),
                     ("https://169.254.169.254/x", "allow_private"),
                     ("https://localhost/x", "allow_private"),
                     ("ftp://hooks.example.com/x", "https://"),
                     ("https://user:pw@hooks.example.com/x", "credentials")]:
        with pytest.raises(ValueError, match=why):
            check_url(url, **strict)
    assert check_url("http://127.0.0.1:9/x", allow_http=True, allow_private=True)
    with pytest.raises(OSError, match="no public address"):
        await PolicyResolver(allow_private=False).resolve("localhost", 443)
    assert await PolicyResolver(allow_private=True).resolve("localhost", 443)


async def test_unknown_event_types_and_refused_urls_are_named(pool: asyncpg.Pool) -> None:
    with pytest.raises(InvalidRequest, match=r"event_types\[1\]: no event type 'nope'"):
        await webhooks.create(pool, SETTINGS, "http://127.0.0.1:1/x", ["*", "nope"])
    with pytest.raises(InvalidRequest, match="url: http:// targets are not allowed"):
        await webhooks.create(pool, WebhooksConfig(), "http://example.com/x", ["*"])


def test_every_event_type_is_documented_in_the_openapi_webhooks_section() -> None:
    from billing_oss.server.http.app import build_api
    from billing_oss.server.integrations.events import REGISTRY

    doc = build_api().openapi()
    assert set(doc["webhooks"]) == set(REGISTRY)
    hook = doc["webhooks"]["invoice.finalised"]["post"]
    body = hook["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["type"] == {"const": "invoice.finalised"}
    data_ref = body["properties"]["data"]["$ref"].rsplit("/", 1)[1]
    assert "total" in doc["components"]["schemas"][data_ref]["properties"]
    assert {p["name"] for p in hook["parameters"]} == {"webhook-id", "webhook-timestamp",
                                                       "webhook-signature"}
    msgspec.json.encode(doc)


async def test_an_endpoint_deleted_mid_delivery_leaves_the_log_writable(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    doomed = await endpoint(pool, receiver, "/doomed")
    await endpoint(pool, receiver, "/stays")
    receiver.behave("/doomed", delay=0.3)
    async with delivering(pool):
        await emit(pool, [(HookTested(n=1), "WHX")])
        assert await wait_until(lambda: _calls(receiver, "/doomed", 1), 5)
        async with pool.acquire() as conn, conn.transaction():
            await webhook_repo.delete(conn, doomed)  # while its attempt is in flight
        await asyncio.sleep(0.5)
        await emit(pool, [(HookTested(n=2), "WHX")])
        assert await wait_until(lambda: _n_in(receiver, "/stays", {1, 2}), 10)
        stays = await pool.fetchval(
            "SELECT endpoint_id FROM webhook_endpoints WHERE url LIKE '%/stays'")
        async with pool.acquire() as conn:
            assert len(await _wait_log(conn, stays, 2)) == 2


async def test_a_backlog_past_the_memory_limit_waits_in_the_table_and_keeps_its_order(
        pool: asyncpg.Pool, receiver: Receiver, clean: None) -> None:
    await endpoint(pool, receiver, "/backlog")
    receiver.behave("/backlog", status=503)
    small = msgspec.structs.replace(SETTINGS, in_memory=8, retry_schedule_s=[0.1] * 50)
    async with delivering(pool, small) as deliverer:
        for chunk in range(6):  # committed while the receiver is down
            await emit(pool, [(HookTested(n=chunk * 5 + i), f"WHB{i % 3}") for i in range(5)])
        await asyncio.sleep(0.5)
        assert len(deliverer._known) <= 8  # the rest waits in the table
        receiver.behave("/backlog", status=200)
        assert await wait_until(lambda: _n_in(receiver, "/backlog", set(range(30))), 20)
    ok = [r for r in receiver.on("/backlog") if r.verified]
    total = 0
    for account in ("WHB0", "WHB1", "WHB2"):
        first: list[int] = []
        for r in ok:
            n = r.event["data"]["n"]
            if r.event["account_id"] == account and n not in first:
                first.append(n)
        assert first == sorted(first)
        total += len(first)
    assert total == 30
