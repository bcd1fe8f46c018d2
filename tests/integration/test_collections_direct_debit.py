"""SEPA direct debit against a real database: mandates checked with schwifty, a pain.008
batch of what mandated accounts owe that validates against the XSD and debits exactly the
open amounts, its payments reversed by a camt return (the invoices open again and the next
batch takes them, RCUR), and the verbs' exit codes."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import sepaxml
import xmlschema
from lxml import etree

from billing_oss.core.errors import InvalidRequest
from billing_oss.server.collections import bank_import, direct_debit, payments
from billing_oss.server.collections.direct_debit import Creditor
from billing_oss.server.collections.model import Mandate, NewPayment, Target
from tests.conftest import REPO
from tests.generators.camt_files import Entry, document
from tests.integration import collections_seed as seed
from tests.integration.api_harness import Api, api, live_api  # noqa: F401

D = dt.date(2026, 2, 1)
XSD = Path(sepaxml.__file__).parent / "schemas" / "pain.008.001.02.xsd"
NS = {"p": "urn:iso:std:iso:20022:tech:xsd:pain.008.001.02"}
CREDITOR = Creditor(name="Demo Telecom SAS", iban="FR7630006000011234567890189",
                    bic="AGRIFRPPXXX", creditor_id="FR72ZZZ123456")
IBAN_1 = "DE89 3704 0044 0532 0130 00"
IBAN_2 = "FR1420041010050500013M02606"


def debits(xml: str) -> dict[str, tuple[Decimal, str, str]]:
    """EndToEndId -> (amount, sequence type, mandate id) of every transaction."""
    root = etree.fromstring(xml.encode())
    out = {}
    for info in root.iterfind(".//p:PmtInf", NS):
        seq = info.findtext(".//p:SeqTp", namespaces=NS)
        for tx in info.iterfind("p:DrctDbtTxInf", NS):
            out[tx.findtext(".//p:EndToEndId", namespaces=NS)] = (
                Decimal(tx.findtext("p:InstdAmt", namespaces=NS)), seq,
                tx.findtext(".//p:MndtId", namespaces=NS))
    return out


async def open_amounts(pool: asyncpg.Pool, account: str) -> list[int]:
    rows = await pool.fetch(
        "SELECT collections_item_open(account_id, entry_id) AS open FROM ledger_entries"
        " WHERE account_id = $1 AND kind = 'invoice' ORDER BY entry_id", account)
    return [int(r["open"]) for r in rows]


async def test_batch_validates_debits_open_amounts_and_returns_reopen(
        pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for a in ("DD1", "DD2", "DD3"):
            await seed.account(conn, a)
        await seed.account(conn, "DD4", currency="CHF")
        i1 = await seed.invoice(conn, "DD1", 40_000_000, D)
        i2 = await seed.invoice(conn, "DD1", 25_500_000, D + dt.timedelta(days=3))
        await seed.invoice(conn, "DD2", 12_340_000, D)
        await seed.invoice(conn, "DD2", 99_000_000, D + dt.timedelta(days=60))  # not yet due
        await seed.invoice(conn, "DD3", 7_000_000, D)  # no mandate
    await direct_debit.put_mandate(pool, "test", Mandate(
        account_id="DD1", mandate_id="M-DD1", iban=IBAN_1, bic="COBADEFFXXX",
        signed_on=dt.date(2025, 6, 1)))
    await direct_debit.put_mandate(pool, "test", Mandate(
        account_id="DD2", mandate_id="M-DD2", iban=IBAN_2, bic=None,
        signed_on=dt.date(2025, 7, 1), sequence_type="RCUR"))
    # A part payment leaves 30.00 of i1 to collect.
    await payments.record(pool, "test", NewPayment(
        account_id="DD1", amount_micros=10_000_000, received_on=D, method="transfer",
        targets=(Target(i1, None),)))

    due_by = D + dt.timedelta(days=30)
    batch = await direct_debit.collect(pool, "test", CREDITOR, due_by, dt.date(2026, 3, 10))
    assert batch is not None
    xmlschema.XMLSchema(str(XSD)).validate(batch.document)  # raises when invalid
    found = debits(batch.document)
    by_account = {d.account_id: d for d in batch.debits}
    assert set(by_account) == {"DD1", "DD2"}
    dd1, dd2 = by_account["DD1"], by_account["DD2"]
    assert found[dd1.end_to_end_id] == (Decimal("55.50"), "FRST", "M-DD1")
    assert found[dd2.end_to_end_id] == (Decimal("12.34"), "RCUR", "M-DD2")
    assert dd1.invoice_ids == [i1, i2] and (batch.transactions, batch.total) == (2, "67.84")
    root = etree.fromstring(batch.document.encode())
    assert root.findtext(".//p:GrpHdr/p:CtrlSum", namespaces=NS) == "67.84"
    assert await open_amounts(pool, "DD1") == [0, 0]
    assert await open_amounts(pool, "DD2") == [0, 99_000_000]
    assert (await direct_debit.get_mandate(pool, "DD1")).sequence_type == "RCUR"
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'sepa.batch'") == 1
    # Nothing more is owed by that date: no batch, nothing written.
    assert await direct_debit.collect(pool, "test", CREDITOR, due_by, D) is None

    # The debtor's bank returns DD1's debit (AM04): its invoices are open again, and the
    # next batch debits them anew, as a recurring collection with a new EndToEndId.
    ret = document([Entry(ref="R1", amount="55.50", credit=False, booked="2026-03-12",
                          end_to_end=dd1.end_to_end_id, return_reason="AM04")])
    result = await bank_import.import_file(pool, "test", io.BytesIO(ret), "ret.xml")
    assert result.returned == 1
    assert await open_amounts(pool, "DD1") == [30_000_000, 25_500_000]
    again = await bank_import.import_file(pool, "test", io.BytesIO(ret), "ret.xml")
    assert (again.returned, again.duplicates) == (0, 1)
    assert await open_amounts(pool, "DD1") == [30_000_000, 25_500_000]
    batch2 = await direct_debit.collect(pool, "test", CREDITOR, due_by, dt.date(2026, 4, 10))
    assert batch2 is not None and [d.account_id for d in batch2.debits] == ["DD1"]
    (e2e, (amount, seq, _)), = debits(batch2.document).items()
    assert (amount, seq) == (Decimal("55.50"), "RCUR") and e2e != dd1.end_to_end_id


async def test_an_invalid_iban_is_refused_naming_it(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "DD9")
    with pytest.raises(InvalidRequest) as bad:
        await direct_debit.put_mandate(pool, "test", Mandate(
            account_id="DD9", mandate_id="M-DD9", iban="DE89370400440532013001",
            bic=None, signed_on=D))
    assert bad.value.errors[0]["path"] == "$.iban"
    assert "DE89370400440532013001" in bad.value.errors[0]["message"]
    with pytest.raises(InvalidRequest) as bad:
        await direct_debit.put_mandate(pool, "test", Mandate(
            account_id="DD9", mandate_id="M-DD9", iban=IBAN_1, bic="NOTABIC", signed_on=D))
    assert bad.value.errors[0]["path"] == "$.bic"
    # Stored behind the API's back, a bad IBAN stops the batch, naming the mandate.
    await pool.execute("INSERT INTO sepa_mandates (account_id, mandate_id, iban, signed_on,"
                       " sequence_type) VALUES ('DD9', 'M-DD9', 'DE00BAD', $1, 'FRST')", D)
    async with pool.acquire() as conn:
        await seed.invoice(conn, "DD9", 5_000_000, D)
    with pytest.raises(InvalidRequest, match="mandate M-DD9 of account DD9"):
        await direct_debit.collect(pool, "test", CREDITOR, D + dt.timedelta(days=30), D)
    assert await open_amounts(pool, "DD9") == [5_000_000]  # nothing half-written
    await pool.execute("DELETE FROM sepa_mandates WHERE account_id = 'DD9'")


def cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing_oss", *args, "--database-url", database_url],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "BILLING_OSS_CATALOG_LOAD_DEMO": "false",
             "BILLING_OSS_COLLECTIONS_SEPA_CREDITOR_ID": CREDITOR.creditor_id,
             "BILLING_OSS_BILLING_SELLER_NAME": CREDITOR.name,
             "BILLING_OSS_BILLING_SELLER_IBAN": CREDITOR.iban})


async def test_mandate_and_collect_verbs(pool: asyncpg.Pool, database_url: str,
                                         tmp_path: Path) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "DV1")
        await seed.invoice(conn, "DV1", 19_990_000, D)
    run = await asyncio.to_thread(cli, [
        "payment", "mandate", "--account", "DV1", "--mandate-id", "M-DV1", "--iban",
        "DE89370400440532013001", "--signed", "2025-01-01"], database_url)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("billing-oss payment: --iban: 'DE89370400440532013001'")
    assert "Traceback" not in run.stderr
    run = await asyncio.to_thread(cli, [
        "payment", "mandate", "--account", "DV1", "--mandate-id", "M-DV1", "--iban", IBAN_1,
        "--signed", "2025-01-01"], database_url)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "dd.xml"
    run = await asyncio.to_thread(cli, [
        "payment", "collect", "--due-by", "2026-03-31", "--collection-date", "2026-04-02",
        "-o", str(out), "--json"], database_url)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    xml = out.read_text()
    xmlschema.XMLSchema(str(XSD)).validate(xml)
    assert [d["account_id"] for d in summary["debits"]] == ["DV1"]
    assert debits(xml)[summary["debits"][0]["end_to_end_id"]][0] == Decimal("19.99")


async def test_mandate_and_direct_debit_routes(pool: asyncpg.Pool, database_url: str) -> None:
    async with pool.acquire() as conn:
        await seed.account(conn, "DH1")
        await seed.account(conn, "DH2")
        await seed.invoice(conn, "DH1", 42_420_000, D)
    async with live_api(pool, database_url, overrides={
            "collections.sepa_creditor_id": CREDITOR.creditor_id,
            "billing.seller_iban": CREDITOR.iban}) as live:
        mandate = {"account_id": "DH1", "mandate_id": "M-DH1", "iban": "FR14 2004 1010 0505",
                   "signed_on": "2025-03-01"}
        status, problem = await live.call("PUT", "/v1/mandates", "operator", json=mandate)
        assert status == 422 and problem["errors"][0]["path"] == "$.iban", problem
        assert "FR14 2004 1010 0505" in problem["errors"][0]["message"]
        status, _ = await live.call("PUT", "/v1/mandates", "viewer",
                                   json={**mandate, "iban": IBAN_2})
        assert status == 403
        status, stored = await live.call("PUT", "/v1/mandates", "operator",
                                        json={**mandate, "iban": IBAN_2})
        assert status == 200 and stored["iban"] == IBAN_2, stored
        status, taken = await live.call("PUT", "/v1/mandates", "operator", json={
            **mandate, "account_id": "DH2", "iban": IBAN_2})
        assert status == 409, taken  # the mandate id is DH1's
        status, listed = await live.call("GET", "/v1/mandates", "viewer")
        assert status == 200 and "DH1" in [m["account_id"] for m in listed["items"]]

        body = {"due_by": "2026-03-31", "collection_date": "2026-04-03"}
        status, batch = await live.call("POST", "/v1/direct-debits", "operator", json=body)
        assert status == 201, batch
        mine, = [d for d in batch["debits"] if d["account_id"] == "DH1"]
        assert mine["amount"] == "42.42"
        async with live.http.get(f"{live.url}/v1/direct-debits/{batch['batch_id']}.xml",
                                headers=live.headers("viewer")) as r:
            assert r.status == 200 and r.content_type == "application/xml"
            xml = await r.text()
        xmlschema.XMLSchema(str(XSD)).validate(xml)
        assert debits(xml)[mine["end_to_end_id"]] == (Decimal("42.42"), "FRST", "M-DH1")
        status, _ = await live.call("POST", "/v1/direct-debits", "operator", json=body)
        assert status == 204
        status, paid = await live.call("GET", "/v1/payments", "viewer",
                                      params={"account_id": "DH1"})
        assert [(p["method"], p["amount"], p["reference"]) for p in paid["items"]] == [
            ("sepa_dd", "42.42", mine["end_to_end_id"])]


def status_report(message_id: str, rejected: dict[str, str], accepted: tuple[str, ...] = (),
                  amount: str = "10.00") -> bytes:
    """A pain.002.001.03 reporting ``rejected`` (EndToEndId -> reason code) as RJCT and
    ``accepted`` as ACCP, for the batch ``message_id``."""
    def tx(e2e: str, status: str, reason: str | None) -> str:
        why = f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn></StsRsnInf>" if reason else ""
        return (f"<TxInfAndSts><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>{status}</TxSts>"
                f"{why}<OrgnlTxRef><Amt><InstdAmt Ccy=\"EUR\">{amount}</InstdAmt></Amt>"
                "</OrgnlTxRef></TxInfAndSts>")
    txs = "".join([tx(e, "RJCT", r) for e, r in rejected.items()]
                  + [tx(e, "ACCP", None) for e in accepted])
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Document xmlns='
        '"urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt><GrpHdr>'
        "<MsgId>STS-1</MsgId><CreDtTm>2026-05-12T09:00:00</CreDtTm></GrpHdr>"
        f"<OrgnlGrpInfAndSts><OrgnlMsgId>{message_id}</OrgnlMsgId>"
        "<OrgnlMsgNmId>pain.008.001.02</OrgnlMsgNmId><GrpSts>PART</GrpSts>"
        "</OrgnlGrpInfAndSts><OrgnlPmtInfAndSts><OrgnlPmtInfId>P1</OrgnlPmtInfId>"
        f"{txs}</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>").encode()


async def test_a_pain002_rejection_reverses_the_debit_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for a in ("DR1", "DR2"):
            await seed.account(conn, a)
            await seed.invoice(conn, a, 10_000_000, dt.date(2026, 4, 1))
    for a in ("DR1", "DR2"):
        await direct_debit.put_mandate(pool, "test", Mandate(
            account_id=a, mandate_id=f"M-{a}", iban=IBAN_2, bic=None, signed_on=D))
    batch = await direct_debit.collect(pool, "test", CREDITOR, dt.date(2026, 5, 1),
                                       dt.date(2026, 5, 10))
    assert batch is not None
    e2e = {d.account_id: d.end_to_end_id for d in batch.debits}
    assert await open_amounts(pool, "DR1") == [0]
    report = status_report(batch.message_id, {e2e["DR1"]: "MD06", "DD-UNKNOWN": "AC04"},
                           accepted=(e2e["DR2"],))
    result = await bank_import.import_file(pool, "test", io.BytesIO(report), "sts.xml")
    assert (result.kind, result.transactions, result.returned, result.unmatched) == (
        "pain.002", 2, 1, 1), result
    assert "DD-UNKNOWN" in result.problems[0].reason
    assert await open_amounts(pool, "DR1") == [10_000_000]  # open again
    assert await open_amounts(pool, "DR2") == [0]  # accepted: still paid
    dr1 = next(d for d in batch.debits if d.account_id == "DR1")
    returned = await payments.get(pool, dr1.payment_id)
    assert returned.reversed_micros == 10_000_000
    assert await pool.fetchval("SELECT reason FROM ledger_entries WHERE kind = 'reversal'"
                               " AND payment_id = $1", dr1.payment_id) == "MD06"
    again = await bank_import.import_file(pool, "test", io.BytesIO(report), "sts.xml")
    assert (again.returned, again.duplicates) == (0, 2)
    # The same rejection reported by the bank statement later changes nothing either.
    ret = document([Entry(ref="R-DR1", amount="10.00", credit=False, booked="2026-05-13",
                          end_to_end=e2e["DR1"], return_reason="MD06")])
    later = await bank_import.import_file(pool, "test", io.BytesIO(ret), "stmt.xml")
    assert (later.returned, later.ignored) == (0, 1)
    assert await open_amounts(pool, "DR1") == [10_000_000]
    await seed.assert_kept_aging_is_the_ledgers(pool)


async def test_collecting_without_a_creditor_identifier_is_a_conflict(
        api: Api) -> None:  # noqa: F811
    status, problem = await api.call("POST", "/v1/direct-debits", "operator",
                                     json={"due_by": "2026-01-01"})
    assert status == 409 and "collections.sepa_creditor_id" in problem["detail"], problem
