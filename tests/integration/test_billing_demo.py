"""Out of the box: the shipped demo catalog (loaded as `catalog load` does), usage ingested
through the pipeline with the real rater, an adjustment booked through the API, one bill
run — taxed invoices with the recurring fees, the loaded tax rates (FR 20 %, DE 19 %,
reverse charge for a German business), the welcome discount, periodic usage pricing and
the adjustment."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import asyncpg
import msgspec

from billing_oss.core.records import UsageRecord
from billing_oss.server import config
from billing_oss.server.billing import issuing
from billing_oss.server.billing.bill_runs import bill_run
from billing_oss.server.billing.model import InvoiceDraft
from billing_oss.server.composition import (
    decoders,
    rater_factory,
    read_catalog_file,
    validate_catalog,
)
from billing_oss.server.pipeline.pipeline import Pipeline
from billing_oss.server.store import catalog_repo, discounts_repo
from billing_oss.server.store.discounts_repo import DiscountFilter
from tests.conftest import REPO
from tests.integration import billing_seed
from tests.integration.api_harness import Api, api  # noqa: F401

# Adjustments are billed by the first cycle ending after they were booked: this month's.
PERIOD = dt.datetime.now(dt.UTC).strftime("%Y-%m")
DAY = f"{PERIOD}-01T10:00:00Z"
CENT = Decimal("0.01")


def usage() -> list[UsageRecord]:
    def rec(key: str, kind: str, **fields: object) -> UsageRecord:
        return UsageRecord(record_key=key, source="demo", kind=kind, event_time=DAY,  # type: ignore[arg-type]
                           **fields)  # type: ignore[arg-type]

    return [
        rec("a1-call", "voice", calling="33611111111", called="33612345678", duration_s=95),
        rec("a2-sms", "sms", calling="33622222222", called="33612345678"),
        rec("b1-call", "voice", calling="33140000000", called="4930123456", duration_s=600),
        rec("iot-data", "data", imsi="882360000000001", volume_up=200_000_000,
            volume_down=1_000_000_000),  # 1,200 MB
        rec("iot-readings", "event", msisdn="882360000000001", quantity="25000"),
    ]


def cents(micros: int) -> int:
    """Half-up to the cent, computed here with Decimal (the invoice's rounding)."""
    value = (Decimal(micros) / 1_000_000).quantize(CENT, rounding=ROUND_HALF_UP)
    return int(value * 1_000_000)


async def test_demo_catalog_bills_taxed_invoices(api: Api, pool: asyncpg.Pool,  # noqa: F811
                                                 tmp_path: Path) -> None:
    catalog = read_catalog_file(REPO / "config/demo-catalog.json")
    loaded = await catalog_repo.load_catalog(pool, catalog,
                                             billing=validate_catalog(catalog).billing)
    assert loaded.products_changed == 3 and loaded.discounts_changed == 1
    pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=rater_factory(),
                        decoders=decoders())
    path = tmp_path / "usage.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in usage()))
    ingested = await pipeline.ingest_file(path, source="demo", format="jsonl")
    assert ingested.counts.charged == 5, ingested
    status, credit = await api.call("POST", "/v1/accounts/A1/adjustments", "operator",
                                    json={"amount": "-5.00", "description": "Goodwill"})
    assert status == 201, credit

    run = await bill_run(pool, PERIOD, billing_seed.SETTINGS, actor="test")
    invoices: dict[str, InvoiceDraft] = {}
    async with pool.acquire() as conn:
        for invoice_id in run.invoice_ids:
            content = (await issuing.load(conn, invoice_id)).content
            invoices[content.account_id] = content
    assert sorted(invoices) == ["A1", "A2", "B1", "IOT1"]
    charged = {r["account_id"]: r["amount"] for r in await pool.fetch(
        "SELECT account_id, sum(amount_micros)::bigint AS amount FROM charges GROUP BY 1")}
    [welcome] = await discounts_repo.find(pool, DiscountFilter(code="WELCOME-10"))

    a1 = invoices["A1"]
    usage_line, fee, adjustment = (next(ln for ln in a1.lines if ln.kind == kind)
                                   for kind in ("usage", "recurring", "adjustment"))
    assert usage_line.net_micros == cents(charged["A1"]) > 0
    # Mobile S, 9.99 a month, 10 % welcome discount: 9.99 − 0.999 = 8.991 → 8.99.
    assert (fee.gross_micros, fee.discount_micros, fee.net_micros) == (
        9_990_000, 999_000, 8_990_000)
    assert fee.detail["discounts"] == [{"discount_id": welcome.discount_id, "micros": 999_000,
                                        "reason": welcome.spec.description}]
    assert (adjustment.net_micros, adjustment.adjustment_id) == (-5_000_000,
                                                                credit["adjustment_id"])
    taxable = usage_line.net_micros + 8_990_000 - 5_000_000
    assert [(t.category, t.rate, t.taxable, t.tax) for t in a1.taxes] == [
        ("S", 20, taxable, cents(taxable * 20 // 100))]

    a2 = invoices["A2"]  # a consumer in Germany: the German rate in force now
    net = cents(charged["A2"]) + 8_990_000
    assert [(t.category, t.rate, t.taxable, t.tax) for t in a2.taxes] == [
        ("S", 19, net, cents(net * 19 // 100))]

    b1 = invoices["B1"]  # a German business with a VAT id, billed from France
    assert b1.reverse_charge and b1.notes and b1.totals.tax_micros == 0
    net = cents(charged["B1"]) + 26_100_000  # Business Pro 29.00 − 10 %
    assert [(t.category, t.rate, t.taxable) for t in b1.taxes] == [("AE", 0, net)]

    iot = invoices["IOT1"]
    priced = {ln.service: ln.net_micros for ln in iot.lines
              if ln.kind == "usage" and ln.subscription_id is not None}
    # 1,200 MB − 50 included = 1,150: 1,000 at 0.02 + 150 at 0.01 = 21.50; 25,000 readings
    # − 1,000 included = 24,000: 3 started packages of 10,000 at 1.00.
    assert priced == {"data": 21_500_000, "event": 3_000_000}
    net = 21_500_000 + 3_000_000 + 4_050_000  # IoT Connect 4.50 − 10 %
    assert [(t.category, t.rate, t.taxable, t.tax) for t in iot.taxes] == [
        ("S", 20, net, cents(net * 20 // 100))]
    for invoice in invoices.values():
        t = invoice.totals
        assert t.payable_micros == t.net_micros + t.tax_micros
