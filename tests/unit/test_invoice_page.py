"""How invoice lines read: the tariff's prices, priced slices of a product's usage price,
usage in human units, the period with its last day."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_oss.core.money import format_printed
from billing_oss.server.billing import tariff_prices
from billing_oss.server.billing.compute import compute
from billing_oss.server.billing.model import (
    Account,
    BillingInput,
    InvoiceDraft,
    Product,
    Settings,
    Subscription,
    Totals,
    UsageGroup,
)
from billing_oss.server.billing.periods import cycle
from billing_oss.server.billing.render import page
from billing_oss.server.catalog import pricing
from billing_oss.server.catalog.tax import TaxRate
from tests.conftest import REPO

CATALOG = json.loads((REPO / "config/demo-catalog.json").read_text())
RETAIL, BUSINESS = (next(t for t in CATALOG["tariffs"] if t["id"] == name)["versions"][0]
                    for name in ("retail", "business"))


def test_the_tariff_rate_found_as_the_rater_finds_it() -> None:
    defs = {1: RETAIL, 2: BUSINESS}
    assert tariff_prices.prices(defs, "voice", "national", [(1, "peak")]) == [
        "0.10 per call + 0.20/min, then 0.10/min from 1 min, min. 0.15"]
    assert tariff_prices.prices(defs, "voice", "eu", [(2, "peak"), (2, "offpeak")]) == [
        "0.10/min"]
    assert tariff_prices.prices(defs, "data", "", [(2, "")]) == ["0.005/MiB, max. 50.00"]
    # two bands at two prices: each named
    both = tariff_prices.prices(defs, "voice", "national", [(1, "peak"), (1, "offpeak")])
    assert both == ["offpeak: 0.05 per call + 0.05/min, then 0.05/min from 1 min",
                    "peak: 0.10 per call + 0.20/min, then 0.10/min from 1 min, min. 0.15"]
    assert tariff_prices.prices(defs, "voice", "national", [(9, "peak")]) == []


GRADUATED = pricing.UsageComponent(
    service="data", model="graduated", unit="MB", unit_size=1_000_000, included=Decimal(50),
    tiers=(pricing.Tier(up_to=Decimal(1000), price=Decimal("0.02")),
           pricing.Tier(up_to=None, price=Decimal("0.01"))))
PACKAGE = pricing.UsageComponent(service="event", model="package", unit="messages",
                                 included=Decimal(1000), package_size=Decimal(10000),
                                 price=Decimal("1.00"))
VOLUME = pricing.UsageComponent(
    service="sms", model="volume", tiers=(pricing.Tier(up_to=Decimal(100), price=Decimal("0.05")),
                                          pricing.Tier(up_to=None, price=Decimal("0.03"))))
PER_UNIT = pricing.UsageComponent(service="voice", model="per_unit", unit="min", unit_size=60,
                                  price=Decimal("0.015"))


@given(st.sampled_from([GRADUATED, PACKAGE, VOLUME, PER_UNIT]),
       st.fractions(min_value=0, max_value=5000, max_denominator=7),
       st.fractions(min_value=0, max_value=5000, max_denominator=7))
def test_slices_sum_to_the_price_they_explain(c: pricing.UsageComponent, before: Fraction,
                                              more: Fraction) -> None:
    price = pricing.price_units(c, before + more) - pricing.price_units(c, before)
    slices = pricing.slices(c, before, more)
    if c.model == "volume" and pricing.price_units(c, before) and any(
            t.up_to is not None and before <= t.up_to < before + more for t in c.tiers):
        return  # the total crossed into a cheaper tier: no single price, none printed
    assert sum(s.amount for s in slices) == price
    assert all(s.quantity > 0 for s in slices)


def test_a_graduated_price_prints_one_slice_per_tier() -> None:
    slices = pricing.slices(GRADUATED, Fraction(0), Fraction(1750))
    assert [s.as_json() for s in slices] == [
        {"quantity": "1000", "unit": "MB", "price": "0.02"},
        {"quantity": "750", "unit": "MB", "price": "0.01"}]
    assert [s.as_json() for s in pricing.slices(PACKAGE, Fraction(0), Fraction(24000))] == [
        {"quantity": "3", "unit": "packages (10,000 messages)", "price": "1.00"}]


@pytest.mark.parametrize(("quantity", "unit", "text"), [
    (Decimal(1_800_000_000), "byte", "1.80 GB"),
    (Decimal(999), "byte", "999 bytes"),
    (Decimal(5_000_000), "byte", "5.00 MB"),
    (Decimal(95), "s", "1 min 35 s"),
    (Decimal(7_265), "s", "2 h 01 min 05 s"),
    (Decimal(25_000), "unit", "25,000 events"),
    (Decimal(1_234), "message", "1,234 messages"),
    (Decimal("1234.5"), "kWh", "1,234.5 kWh"),
])
def test_usage_in_human_units(quantity: Decimal, unit: str, text: str) -> None:
    assert page.human(quantity, unit) == text


def draft(start: dt.datetime, end: dt.datetime, timezone: str) -> InvoiceDraft:
    return InvoiceDraft(
        account_id="A", currency="EUR", period="2026-03", period_start=start, period_end=end,
        tax_inclusive=False, reverse_charge=False, rounding_method="half-up", lines=(),
        allowances=(), taxes=(), totals=Totals(0, 0, 0, 0, 0, 0, 0), seller={},
        buyer={"timezone": timezone})


def test_the_period_reads_in_the_customers_days_last_day_included() -> None:
    # March in Paris: 28 February 23:00 UTC to 31 March 22:00 UTC
    paris = draft(dt.datetime(2026, 2, 28, 23, tzinfo=dt.UTC),
                  dt.datetime(2026, 3, 31, 22, tzinfo=dt.UTC), "Europe/Paris")
    assert page.period_text(paris) == "1 March – 31 March 2026"
    assert page.local_dates(paris) == (dt.date(2026, 3, 1), dt.date(2026, 3, 31))
    winter = draft(dt.datetime(2025, 12, 15, tzinfo=dt.UTC),
                   dt.datetime(2026, 1, 15, tzinfo=dt.UTC), "")
    assert page.period_text(winter) == "15 December 2025 – 14 January 2026"


def test_amounts_and_prices_print_with_thousands_separators() -> None:
    assert format_printed(1_234_560_000, "EUR") == "1,234.56"
    assert format_printed(-5_000_000, "EUR") == "-5.00"
    assert page.measured(Decimal(95), "s") == ("1.58", "min")


def iot_invoice(*usage: UsageGroup) -> InvoiceDraft:
    plan = Subscription(1, Product("iot", "IoT", "EUR", 4_500_000,
                                   usage_pricing=(GRADUATED, PACKAGE)),
                        dt.datetime(2025, 1, 1, tzinfo=dt.UTC), None)
    return compute(BillingInput(
        account=Account("A", "n", "EUR", "Europe/Paris", 1, {"country": "FR"}),
        currency="EUR", usage=usage, subscriptions=(plan,), adjustments=(), discounts=(),
        tax_rates=(TaxRate("FR", "standard", "S", Decimal(20), dt.date(2000, 1, 1)),)),
        cycle("2026-03", 1, "Europe/Paris"), Settings(seller={"country": "FR"}))


def test_a_product_price_of_a_service_not_used_is_no_line() -> None:
    idle = iot_invoice()
    assert [(ln.kind, ln.service) for ln in idle.lines] == [("recurring", "subscription")]
    used = iot_invoice(UsageGroup("EUR", "data", "", 1, 0, Decimal(1_800_000_000)))
    [data] = [ln for ln in used.lines if ln.subscription_id is not None and ln.kind == "usage"]
    assert data.net_micros == 27_500_000 and data.detail["slices"] == [
        {"quantity": "1000", "unit": "MB", "price": "0.02"},
        {"quantity": "750", "unit": "MB", "price": "0.01"}]
    assert used.buyer["timezone"] == "Europe/Paris"
    assert page.period_text(used) == "1 March – 31 March 2026"
