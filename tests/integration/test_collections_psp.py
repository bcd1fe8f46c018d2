"""`POST /v1/psp/events` over a live API with real Standard Webhooks signatures: a signed
payment.succeeded records a card payment allocated like any other, the same event id again
changes nothing, and a bad, stale or missing signature is 401 and writes nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import asyncpg
from standardwebhooks import Webhook

from tests.integration import collections_seed as seed
from tests.integration.api_harness import Api, live_api

SECRET = "whsec_" + base64.b64encode(b"a shared secret of 32 bytes!!!!!").decode()
D = dt.date(2026, 2, 1)


def signed(event_id: str, payload: dict[str, Any], secret: str = SECRET,
           at: dt.datetime | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload)
    when = at or dt.datetime.now(dt.UTC)
    return body.encode(), {
        "webhook-id": event_id, "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, when, body),
        "Content-Type": "application/json"}


async def post(api: Api, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with api.http.post(api.url + "/v1/psp/events", data=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def counts(pool: asyncpg.Pool) -> tuple[int, ...]:
    return tuple([await pool.fetchval(f"SELECT count(*) FROM {t}") for t in (
        "payments", "ledger_entries", "payment_allocations", "outbox_events", "audit_log")])


async def test_signed_card_payments_are_recorded_once_and_forgeries_refused(
        pool: asyncpg.Pool, database_url: str) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "P1")
        i1 = await seed.invoice(conn, "P1", 30_000_000, D)
        i2 = await seed.invoice(conn, "P1", 20_000_000, D + dt.timedelta(days=1))
    payment = {"type": "payment.succeeded", "data": {
        "account_id": "P1", "amount": "25.00", "currency": "EUR", "paid_on": "2026-02-20",
        "reference": "ch_3Nx", "invoice_ids": [i2]}}
    async with live_api(pool, database_url,
                        overrides={"collections.psp_webhook_secret": SECRET}) as api:
        before = await counts(pool)
        forged = [
            signed("evt_1", payment, secret="whsec_" + base64.b64encode(b"x" * 32).decode()),
            signed("evt_1", payment, at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
            (json.dumps(payment).encode(), {"Content-Type": "application/json"}),
        ]
        body, headers = signed("evt_1", payment)
        forged.append((body.replace(b"25.00", b"95.00"), headers))  # tampered after signing
        for body, headers in forged:
            status, problem = await post(api, body, headers)
            assert status == 401, problem
            assert problem["code"] == "UNAUTHORIZED"
        assert await counts(pool) == before

        body, headers = signed("evt_1", payment)
        status, out = await post(api, body, headers)
        assert status == 201 and out["status"] == "recorded", out
        status, p = await api.call("GET", f"/v1/payments/{out['payment_id']}", "viewer")
        assert (p["method"], p["source"], p["external_id"], p["amount"]) == (
            "card", "psp", "evt_1", "25.00")
        # Allocated to the invoice it names; the 5.00 left is unapplied credit, as for any
        # payment naming its invoices.
        assert [(a["invoice_id"], a["amount"]) for a in p["allocations"]] == [(i2, "20.00")]
        after = await counts(pool)
        body, headers = signed("evt_1", payment)  # redelivered, freshly signed
        status, again = await post(api, body, headers)
        assert status == 200 and again == {**out, "status": "duplicate"}
        assert await counts(pool) == after

        body, headers = signed("evt_2", {"type": "payment.succeeded", "data": {
            "account_id": "P1", "amount": "30.00", "currency": "EUR",
            "paid_on": "2026-02-21"}})
        status, out = await post(api, body, headers)
        assert status == 201, out
        status, p = await api.call("GET", f"/v1/payments/{out['payment_id']}", "viewer")
        assert [(a["invoice_id"], a["amount"]) for a in p["allocations"]] == [(i1, "30.00")]

        body, headers = signed("evt_3", {"type": "payment.succeeded", "data": {
            "account_id": "P1", "amount": "-3", "currency": "EUR", "paid_on": "2026-02-21"}})
        status, problem = await post(api, body, headers)
        assert status == 422 and problem["errors"][0]["path"] == "$.data.amount", problem
        body, headers = signed("evt_4", {"type": "charge.dispute.created", "data": {}})
        status, out = await post(api, body, headers)
        assert status == 200 and out["status"] == "ignored", out
        await seed.assert_kept_aging_is_the_ledgers(pool)


async def test_without_a_secret_every_event_is_refused(pool: asyncpg.Pool,
                                                       database_url: str) -> None:
    async with live_api(pool, database_url) as api:
        body, headers = signed("evt_9", {"type": "payment.succeeded", "data": {}})
        status, problem = await post(api, body, headers)
        assert status == 401 and "psp_webhook_secret" in problem["detail"], problem
