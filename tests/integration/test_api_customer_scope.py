"""A customer key sees its own account and nothing else.

The walk takes every route of the running app's router (not a list kept here, so a route
added later is walked too) and calls it with account A's customer key, naming account B:
B's id in every path and query ``account_id``, B's invoice, credit note and payment ids in
theirs, B in a JSON body. Whatever comes back other than 401/403/404 must not carry B's
data (its account id, its invoice and credit-note numbers, its called number), PDFs read
back with pdftotext.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.http.keys import API
from billing_oss.server.store import api_keys
from tests.integration import billing_seed
from tests.integration.api_harness import Api, live_api

A, B = "CUSTALPHA", "CUSTBRAVO"
B_CALLED = "4930777123"


class Seeded:
    def __init__(self, api: Api, customer: str, ids: dict[str, dict[str, str]],
                 markers: list[str]) -> None:
        self.api, self.customer, self.ids, self.markers = api, customer, ids, markers

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.customer}"}


async def _documents(api: Api, pool: asyncpg.Pool, account_id: str,
                     called: str) -> dict[str, str]:
    """A finalised invoice with a call, a credit note of it and a payment: their ids."""
    invoice_id = await billing_seed.finalised_invoice(
        pool, account_id, fee=9_990_000, charges=[("national", 1_230_000)])
    await pool.execute("UPDATE usage_records SET called = $2 WHERE account_id = $1",
                       account_id, called)
    status, note = await api.call("POST", "/v1/credit-notes", "operator", json={
        "invoice_id": invoice_id, "reason": "goodwill", "lines": [{"line_no": 1,
                                                                  "amount": "1.00"}]})
    assert status == 201, note
    status, paid = await api.call("POST", "/v1/payments", "operator", json={
        "account_id": account_id, "amount": "5.00", "received_on": "2026-02-10"})
    assert status == 201, paid
    return {"account_id": account_id, "invoice_id": str(invoice_id),
            "credit_note_id": str(note["credit_note_id"]),
            "payment_id": str(paid["payment_id"])}


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool, database_url: str) -> AsyncIterator[Seeded]:
    async with live_api(pool, database_url) as api:
        ids = {A: await _documents(api, pool, A, "4930111000"),
               B: await _documents(api, pool, B, B_CALLED)}
        numbers = await pool.fetch(
            "SELECT number_text FROM invoices WHERE account_id = $1 UNION ALL"
            " SELECT number_text FROM credit_notes WHERE account_id = $1", B)
        markers = [B, B_CALLED, *(r["number_text"] for r in numbers)]
        customer = (await api_keys.create(pool, "customer", name="A's portal",
                                          account_id=A)).token
        yield Seeded(api, customer, ids, markers)


def _routes(seeded: Seeded) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves."""
    out = []
    for resource in seeded.api.app.router.resources():
        info = resource.get_info()
        template = info.get("formatter") or info.get("path") or info.get("prefix")
        for route in resource:
            if route.method not in ("HEAD", "OPTIONS") and template:
                out.append((route.method, template))
    return sorted(set(out))


def _concrete(template: str, ids: dict[str, str]) -> str:
    return re.sub(r"{(\w+)[^}]*}", lambda m: ids.get(m.group(1), "1"), template)


def _text(body: bytes, content_type: str) -> str:
    if content_type == "application/pdf":
        return subprocess.run(["pdftotext", "-", "-"], input=body, check=True,
                              capture_output=True).stdout.decode()
    return body.decode("utf-8", "replace")


async def _call(seeded: Seeded, method: str, path: str, params: dict[str, str] | None,
                body: Any) -> tuple[int, str]:
    api = seeded.api
    async with api.http.request(method, api.url + path, headers=seeded.headers(),
                                params=params, json=body, allow_redirects=False) as r:
        return r.status, _text(await r.read(), r.content_type)


async def test_a_customer_key_never_gets_another_accounts_data(seeded: Seeded) -> None:
    routes = _routes(seeded)
    assert len(routes) >= 100
    b = seeded.ids[B]
    leaks = []
    for method, template in routes:
        path = _concrete(template, b)
        body = {"account_id": B} if method in ("POST", "PUT", "PATCH") else None
        for params in (None, {"account_id": B}):
            status, text = await _call(seeded, method, path, params, body)
            if status in (401, 403, 404):
                continue
            found = [m for m in seeded.markers if m in text]
            if found:
                leaks.append((method, path, params, status, found))
    assert leaks == []


async def test_a_customer_key_reads_its_own_account(seeded: Seeded) -> None:
    """The routes declaring the customer role serve A's own data to A's key, and every
    route that does not declare it refuses the key with 403."""
    a = seeded.ids[A]
    served = []
    for op in seeded.api.app[API].operations:
        if op.roles is None:
            continue
        path = _concrete(op.path, a)
        body = {} if op.method in ("POST", "PUT", "PATCH") else None
        params = None
        if op.method == "GET":
            params = {"account_id": A}
            if op.path.startswith("/v1/statements"):
                params |= {"from": "2026-01-01", "to": "2026-12-31"}
        status, text = await _call(seeded, op.method, path, params, body)
        if "customer" in op.roles:
            assert status == 200, (op.method, path, status, text)
            served.append(op.path)
        else:
            assert status == 403, (op.method, path, status)
            assert '"FORBIDDEN"' in text
    assert {"/v1/accounts/{account_id}", "/v1/invoices", r"/v1/invoices/{invoice_id:\d+}.pdf",
            "/v1/credit-notes", "/v1/payments", "/v1/statements"} <= set(served)


async def test_lists_narrow_to_the_customers_account(seeded: Seeded) -> None:
    for path in ("/v1/invoices", "/v1/credit-notes", "/v1/payments", "/v1/usage",
                 "/v1/charges"):
        status, text = await _call(seeded, "GET", path, None, None)
        assert status == 200 and A in text and B not in text, (path, text)
        status, text = await _call(seeded, "GET", path, {"account_id": B}, None)
        assert status == 403 and '"FORBIDDEN"' in text, (path, status)
    status, text = await _call(seeded, "GET", "/v1/charges/totals", None, None)
    assert status == 200 and f'"account_id":"{A}"' in text
    # An operator's view is not narrowed: both accounts' invoices.
    status, every = await seeded.api.call("GET", "/v1/invoices", "viewer")
    assert {i["account_id"] for i in every["items"]} >= {A, B}


async def test_another_accounts_documents_are_refused_with_403(seeded: Seeded) -> None:
    b = seeded.ids[B]
    for path in (f"/v1/accounts/{B}", f"/v1/invoices/{b['invoice_id']}",
                 f"/v1/invoices/{b['invoice_id']}.pdf", f"/v1/invoices/{b['invoice_id']}.xml",
                 f"/v1/credit-notes/{b['credit_note_id']}",
                 f"/v1/credit-notes/{b['credit_note_id']}.pdf",
                 f"/v1/credit-notes/{b['credit_note_id']}.xml", f"/v1/payments/{b['payment_id']}"):
        async with seeded.api.http.get(seeded.api.url + path, headers=seeded.headers()) as r:
            assert r.status == 403, path
            assert r.content_type == "application/problem+json"
            assert (await r.json())["code"] == "FORBIDDEN"
    status, text = await _call(seeded, "GET", "/v1/statements", {
        "account_id": B, "from": "2026-01-01", "to": str(dt.date.today())}, None)
    assert status == 403 and '"FORBIDDEN"' in text


async def test_an_id_that_does_not_exist_is_refused_as_another_accounts_is(
        seeded: Seeded) -> None:
    """A 404 for a missing id beside a 403 for another account's would tell a customer key
    which ids exist: both answer 403 with the same problem, the id aside."""
    b, missing = seeded.ids[B], "987654321"
    for template in ("/v1/invoices/{}", "/v1/invoices/{}.pdf", "/v1/invoices/{}.xml",
                     "/v1/credit-notes/{}", "/v1/credit-notes/{}.pdf",
                     "/v1/credit-notes/{}.xml", "/v1/payments/{}"):
        kind = "payment_id" if "payments" in template else (
            "credit_note_id" if "credit-notes" in template else "invoice_id")
        answers = []
        for some_id in (b[kind], missing):
            async with seeded.api.http.get(seeded.api.url + template.format(some_id),
                                           headers=seeded.headers()) as r:
                problem = await r.json(content_type=None)
                answers.append((r.status, problem["code"],
                                problem["detail"].replace(some_id, "N")))
        assert answers[0] == answers[1] and answers[0][0] == 403, (template, answers)
    # An operator's key still learns that the id does not exist.
    status, _ = await seeded.api.call("GET", f"/v1/invoices/{missing}", "viewer")
    assert status == 404


async def test_the_soap_facade_refuses_a_customer_key(seeded: Seeded) -> None:
    """The SOAP operations serve operator roles only: a customer key gets a FORBIDDEN fault,
    for its own account as for another's."""
    tns = "urn:billing-oss:soap:v1"
    envelope = ('<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
                '<soap:Body>{}</soap:Body></soap:Envelope>')
    b = seeded.ids[B]
    bodies = [f'<b:GetAccount xmlns:b="{tns}"><b:account_id>{B}</b:account_id></b:GetAccount>',
              f'<b:GetAccount xmlns:b="{tns}"><b:account_id>{A}</b:account_id></b:GetAccount>',
              f'<b:GetBalance xmlns:b="{tns}"><b:account_id>{B}</b:account_id></b:GetBalance>',
              f'<b:GetInvoicePdf xmlns:b="{tns}"><b:invoice_id>{b["invoice_id"]}'
              "</b:invoice_id></b:GetInvoicePdf>"]
    for body in bodies:
        async with seeded.api.http.post(
                f"{seeded.api.url}/soap/v1", data=envelope.format(body),
                headers={**seeded.headers(), "Content-Type": "text/xml"}) as r:
            text = await r.text()
        assert "FORBIDDEN" in text and B not in text.replace(body, ""), text


async def test_a_customer_sees_issued_invoices_not_drafts(seeded: Seeded,
                                                          pool: asyncpg.Pool) -> None:
    run = await bill_run(pool, "2026-02", billing_seed.SETTINGS, accounts=[A], actor="test")
    (draft_id,) = run.invoice_ids
    status, text = await _call(seeded, "GET", "/v1/invoices", None, None)
    assert status == 200 and f'"invoice_id":{draft_id},' not in text
    assert f'"invoice_id":{seeded.ids[A]["invoice_id"]},' in text
    status, text = await _call(seeded, "GET", "/v1/invoices", {"status": "draft"}, None)
    assert status == 200 and '"items":[]' in text
    for suffix in ("", ".pdf", ".xml"):
        status, _ = await _call(seeded, "GET", f"/v1/invoices/{draft_id}{suffix}", None, None)
        assert status == 404, suffix
    status, draft = await seeded.api.call("GET", f"/v1/invoices/{draft_id}", "viewer")
    assert status == 200 and draft["status"] == "draft"


async def test_a_revoked_customer_key_is_refused(seeded: Seeded, pool: asyncpg.Pool) -> None:
    new = await api_keys.create(pool, "customer", name="revoked portal", account_id=A)
    headers = {"Authorization": f"Bearer {new.token}"}
    url = f"{seeded.api.url}/v1/accounts/{A}"
    async with seeded.api.http.get(url, headers=headers) as r:
        assert r.status == 200
    status, _ = await seeded.api.call("DELETE", f"/v1/api-keys/{new.key.key_id}", "admin")
    assert status == 200
    for path in (f"/v1/accounts/{A}", f"/v1/accounts/{A}/usage.csv", "/v1/invoices"):
        async with seeded.api.http.get(seeded.api.url + path, headers=headers) as r:
            assert r.status == 401, path
            assert (await r.json())["code"] == "UNAUTHORIZED"
