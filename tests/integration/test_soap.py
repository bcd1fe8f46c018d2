"""The SOAP façade over a live server on loopback, called by zeep (a real SOAP client) given
only the WSDL URL: every operation answers typed values that agree with the REST API; faults
carry the error code for a bad key, a role too small, an unknown account, and for envelopes
that are not XML, lack an element or hold a bad decimal (sent raw, as zeep would refuse to)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import requests
import zeep
from lxml import etree
from zeep.exceptions import Fault
from zeep.wsse.username import UsernameToken

from tests.integration import billing_seed
from tests.integration.api_harness import Api, api, live_api, seed_usage  # noqa: F401

TNS = "urn:billing-oss:soap:v1"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
UTC = dt.UTC


def client(api: Api, token: str | None, *, wsse: bool = False) -> zeep.Client:  # noqa: F811
    session = requests.Session()
    if token and not wsse:
        session.headers["Authorization"] = f"Bearer {token}"
    return zeep.Client(f"{api.url}/soap/v1?wsdl", transport=zeep.Transport(session=session),
                       wsse=UsernameToken("crm", token) if wsse and token else None)


async def call(c: zeep.Client, operation: str, **kwargs: Any) -> Any:
    """The operation run by zeep's (blocking) client in a thread, off the server's loop."""
    method: Callable[..., Any] = getattr(c.service, operation)
    return await asyncio.to_thread(method, **kwargs)


async def fault_of(c: zeep.Client, operation: str, **kwargs: Any) -> tuple[str, str | None]:
    """(error code, element) of the fault an operation answers."""
    with pytest.raises(Fault) as caught:
        await call(c, operation, **kwargs)
    return detail(caught.value.detail)


def detail(node: Any) -> tuple[str, str | None]:
    fault = node.find(f"{{{TNS}}}BillingFault")
    element = fault.find(f"{{{TNS}}}element")
    return fault.findtext(f"{{{TNS}}}code"), None if element is None else element.text


async def test_zeep_calls_every_operation_with_typed_results(
        api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    operator = await asyncio.to_thread(client, api, api.tokens["operator"])
    assert set(operator.service._binding._operations) == {  # every operation in the WSDL
        "GetAccount", "GetBalance", "GetInvoicePdf", "CreateAccount", "UpdateAccount",
        "CreateSubscription", "UpdateSubscription", "PostPayment", "ListUsage"}

    # accounts: create, read (the same as REST), change
    async with pool.acquire() as conn:
        await billing_seed.base(conn)  # the tariff "retail"
    created = await call(operator, "CreateAccount", account_id="S1", name="Soap Customer",
                         currency="EUR", timezone="Europe/Paris", billing_day=5,
                         identifiers={"item": [{"identifier": "33699000001"}]},
                         attrs={"item": [{"key": "crm_id", "value": "C-42"}]})
    assert created.account_id == "S1" and created.billing_day == 5
    assert isinstance(created.created_at, dt.datetime) and created.created_at.tzinfo
    got = await call(operator, "GetAccount", account_id="S1")
    status, rest = await api.call("GET", "/v1/accounts/S1", "viewer")
    assert status == 200
    assert (got.name, got.status, got.currency, got.timezone) == (
        rest["name"], rest["status"], rest["currency"], rest["timezone"])
    assert [(i.identifier, i.kind) for i in got.identifiers.item] == [("33699000001", "msisdn")]
    assert [(a.key, a.value) for a in got.attrs.item] == [("crm_id", "C-42")]
    changed = await call(operator, "UpdateAccount", account_id="S1", status="suspended",
                         identifiers={"item": []})
    assert changed.status == "suspended"
    assert not (changed.identifiers and changed.identifiers.item)  # zeep: an empty list, None
    status, rest = await api.call("GET", "/v1/accounts/S1", "viewer")
    assert rest["identifiers"] == [] and rest["status"] == "suspended"
    assert changed.name == "Soap Customer"  # not sent: kept

    # subscriptions: create, end, re-open (xsi:nil)
    sub = await call(operator, "CreateSubscription", account_id="S1", tariff_id="retail",
                     product="mobile", valid_from=dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert isinstance(sub.subscription_id, int) and sub.valid_to is None
    ended = await call(operator, "UpdateSubscription", subscription_id=sub.subscription_id,
                       valid_to=dt.datetime(2026, 6, 1, tzinfo=UTC))
    assert ended.valid_to == dt.datetime(2026, 6, 1, tzinfo=UTC) and ended.product == "mobile"
    renamed = await call(operator, "UpdateSubscription", subscription_id=sub.subscription_id,
                         product="mobile+")
    assert renamed.valid_to == dt.datetime(2026, 6, 1, tzinfo=UTC)  # not sent: kept
    assert renamed.product == "mobile+"
    # xsi:nil re-opens it (sent raw: zeep leaves a None out)
    status, text = await raw(api, "operator", f"""<b:UpdateSubscription xmlns:b="{TNS}"
        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
        <b:subscription_id>{sub.subscription_id}</b:subscription_id>
        <b:valid_to xsi:nil="true"/></b:UpdateSubscription>""")
    assert status == 200, text
    status, rest = await api.call("GET", f"/v1/subscriptions/{sub.subscription_id}", "viewer")
    assert rest["valid_to"] is None

    # balance and open invoices; a payment, idempotent by its reference
    invoice_id = await billing_seed.finalised_invoice(pool, "S2", fee=30_000_000)
    status, inv = await api.call("GET", f"/v1/invoices/{invoice_id}", "viewer")
    payable = Decimal(inv["totals"]["payable"])
    before = await call(operator, "GetBalance", account_id="S2")
    assert [(b.currency, b.amount) for b in before.balance] == [("EUR", payable)]
    assert [(i.invoice_id, i.number, i.open) for i in before.open_invoice] == [
        (invoice_id, inv["number"], payable)]
    assert isinstance(before.open_invoice[0].due_date, dt.date)
    paid = await call(operator, "PostPayment", account_id="S2", amount=Decimal("10.50"),
                      received_on=dt.date(2026, 2, 10), reference="CRM-PAY-1")
    assert paid.created is True and paid.payment.amount == Decimal("10.50")
    assert [(a.invoice_id, a.amount) for a in paid.payment.allocation] == [
        (invoice_id, Decimal("10.50"))]
    again = await call(operator, "PostPayment", account_id="S2", amount=Decimal("10.50"),
                       received_on=dt.date(2026, 2, 10), reference="CRM-PAY-1")
    assert again.created is False and again.payment.payment_id == paid.payment.payment_id
    status, rest_payments = await api.call("GET", "/v1/payments", "viewer",
                                           params={"account_id": "S2"})
    assert len(rest_payments["items"]) == 1
    after = await call(operator, "GetBalance", account_id="S2")
    assert after.balance[0].amount == payable - Decimal("10.50")
    assert after.open_invoice[0].open == payable - Decimal("10.50")

    # the invoice PDF: the REST route's bytes
    pdf = await call(operator, "GetInvoicePdf", invoice_id=invoice_id)
    async with api.http.get(f"{api.url}/v1/invoices/{invoice_id}.pdf",
                            headers=api.headers("viewer")) as r:
        rest_pdf = await r.read()
    assert isinstance(pdf.pdf, bytes) and pdf.pdf[:5] == b"%PDF-"
    assert pdf.pdf == rest_pdf

    # usage of a period, a page at a time
    for minute in range(3):
        await seed_usage(pool, "S1", f"2026-03-02T10:0{minute}:00Z", amount_micros=100_000)
    await seed_usage(pool, "S1", "2026-04-01T00:00:00Z", amount_micros=100_000)  # outside
    period = {"account_id": "S1", "from": dt.datetime(2026, 3, 1, tzinfo=UTC),
              "to": dt.datetime(2026, 4, 1, tzinfo=UTC)}
    first = await call(operator, "ListUsage", **period, limit=2)
    assert len(first.usage) == 2 and first.next_cursor
    assert isinstance(first.usage[0].event_time, dt.datetime)
    assert first.usage[0].duration_s == 60 and isinstance(first.usage[0].usage_id, int)
    second = await call(operator, "ListUsage", **period, limit=2, cursor=first.next_cursor)
    assert len(second.usage) == 1 and second.next_cursor is None
    times = [u.event_time for u in first.usage + second.usage]
    assert times == sorted(times) and times[-1] == dt.datetime(2026, 3, 2, 10, 2, tzinfo=UTC)


async def test_faults_name_the_code_and_the_element(api: Api) -> None:  # noqa: F811
    viewer = await asyncio.to_thread(client, api, api.tokens["viewer"])
    assert await fault_of(viewer, "GetAccount", account_id="NOPE") == ("NOT_FOUND", None)
    assert await fault_of(viewer, "GetBalance", account_id="NOPE") == ("NOT_FOUND", None)
    assert (await fault_of(viewer, "CreateAccount", account_id="X1"))[0] == "FORBIDDEN"
    stranger = await asyncio.to_thread(client, api, "bok_0_wrong")
    assert (await fault_of(stranger, "GetAccount", account_id="S1"))[0] == "UNAUTHORIZED"
    nobody = await asyncio.to_thread(client, api, None)
    assert (await fault_of(nobody, "GetAccount", account_id="S1"))[0] == "UNAUTHORIZED"
    operator = await asyncio.to_thread(client, api, api.tokens["operator"])
    # a rule of the REST route, named by its element
    assert await fault_of(operator, "CreateAccount", account_id="X2",
                          timezone="Mars/Olympus") == ("VALIDATION", "timezone")

    cases = {
        "not XML": ("<soap:Envelope", "MALFORMED", "Envelope", "Client"),
        "missing element": (f'<b:GetAccount xmlns:b="{TNS}"/>', "VALIDATION",
                            "GetAccount/account_id", "Client"),
        "bad decimal": (f"""<b:PostPayment xmlns:b="{TNS}"><b:account_id>S2</b:account_id>
            <b:amount>12,50</b:amount><b:received_on>2026-02-01</b:received_on>
            <b:reference>R</b:reference></b:PostPayment>""", "VALIDATION",
                        "PostPayment/amount", "Client"),
        "wrong type": (f"""<b:GetInvoicePdf xmlns:b="{TNS}"><b:invoice_id>one</b:invoice_id>
            </b:GetInvoicePdf>""", "VALIDATION", "GetInvoicePdf/invoice_id", "Client"),
        "unknown operation": ('<x:Launch xmlns:x="urn:elsewhere"/>', "MALFORMED", "Launch",
                              "Client"),
    }
    for name, (body, code, element, faultcode) in cases.items():
        status, text = await raw(api, "operator", body, wrap=name != "not XML")
        assert status == 500, (name, text)
        assert read_fault(text) == (f"soap:{faultcode}", code, element), name

    soap12 = ('<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
              f'<b:GetAccount xmlns:b="{TNS}"><b:account_id>S1</b:account_id></b:GetAccount>'
              "</e:Body></e:Envelope>")
    status, text = await raw(api, "operator", soap12, wrap=False)
    assert read_fault(text)[:2] == ("soap:VersionMismatch", "MALFORMED")
    doctype = ('<!DOCTYPE x [<!ENTITY a "aaaa">]>' + envelope(
        f'<b:GetAccount xmlns:b="{TNS}"><b:account_id>&a;</b:account_id></b:GetAccount>'))
    status, text = await raw(api, "operator", doctype, wrap=False)
    assert read_fault(text)[1] == "MALFORMED" and "document type" in text
    huge = envelope(f'<b:GetAccount xmlns:b="{TNS}"><b:account_id>{"A" * 300_000}'
                    "</b:account_id></b:GetAccount>")
    status, text = await raw(api, "operator", huge, wrap=False)
    assert status == 500 and read_fault(text)[1] == "PAYLOAD_TOO_LARGE"


async def test_the_key_as_a_ws_security_password(api: Api, pool: asyncpg.Pool) -> None:  # noqa: F811
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO accounts (account_id, name) VALUES ('W1', 'WSSE')"
                           " ON CONFLICT DO NOTHING")
    viewer = await asyncio.to_thread(client, api, api.tokens["viewer"], wsse=True)
    assert (await call(viewer, "GetAccount", account_id="W1")).name == "WSSE"
    assert (await fault_of(viewer, "CreateAccount", account_id="W2"))[0] == "FORBIDDEN"


async def test_the_wsdl_is_public_and_embeds_its_schema(api: Api) -> None:  # noqa: F811
    async with api.http.get(f"{api.url}/soap/v1?wsdl") as r:
        assert r.status == 200 and r.content_type == "text/xml"
        root = etree.fromstring(await r.read())
    wsdl = "http://schemas.xmlsoap.org/wsdl/"
    assert root.find(f"{{{wsdl}}}types/{{http://www.w3.org/2001/XMLSchema}}schema") is not None
    address = root.find(f".//{{{wsdl}}}port/{{http://schemas.xmlsoap.org/wsdl/soap/}}address")
    assert address.get("location") == f"{api.url}/soap/v1"


def envelope(body: str) -> str:
    return f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>{body}</soap:Body></soap:Envelope>'


async def raw(api: Api, role: str, body: str, *, wrap: bool = True) -> tuple[int, str]:  # noqa: F811
    async with api.http.post(f"{api.url}/soap/v1", data=envelope(body) if wrap else body,
                             headers={**api.headers(role), "Content-Type": "text/xml"}) as r:
        text = await r.text()
        assert r.content_type == "text/xml", text
        return r.status, text


def read_fault(text: str) -> tuple[str, str, str | None]:
    root = etree.fromstring(text.encode())
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    code, element = detail(fault.find("detail"))
    return fault.findtext("faultcode"), code, element


async def test_an_operation_past_the_request_timeout_is_a_fault(
        pool: asyncpg.Pool, database_url: str) -> None:
    async with live_api(pool, database_url, overrides={"http.request_timeout_s": 1.0}) as api, \
            pool.acquire() as conn:  # noqa: F811
        await conn.execute("INSERT INTO accounts (account_id, name) VALUES ('T1', 'Slow')"
                           " ON CONFLICT DO NOTHING")
        async with conn.transaction():
            await conn.execute("SELECT collections_lock('T1')")  # the payment waits for it
            status, text = await raw(api, "operator", f"""<b:PostPayment xmlns:b="{TNS}">
                <b:account_id>T1</b:account_id><b:amount>1.00</b:amount>
                <b:received_on>2026-02-01</b:received_on><b:reference>T-1</b:reference>
                </b:PostPayment>""")
        assert status == 500 and read_fault(text)[:2] == ("soap:Server", "TIMEOUT")
