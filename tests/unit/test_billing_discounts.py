"""Discounts (percentage, fixed, volume; per line or per invoice) and invoice allowances:
exact amounts, tax per category after allowances, totals equal to the sums."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_oss.core.rounding import minor_step
from billing_oss.server.billing.compute import compute
from billing_oss.server.billing.model import (
    Account,
    Adjustment,
    BillingInput,
    Discount,
    InvoiceDraft,
    Product,
    Settings,
    Subscription,
    UsageGroup,
)
from billing_oss.server.billing.periods import cycle
from billing_oss.server.catalog.pricing import VolumeTier
from billing_oss.server.catalog.tax import TaxRate, tax_on

UTC = dt.UTC
CYCLE = cycle("2026-01", 1, "UTC")
SETTINGS = Settings(seller={"name": "Seller", "country": "FR"}, rounding="half-up")
RATES = (TaxRate("FR", "standard", "S", Decimal(20), dt.date(2000, 1, 1)),
         TaxRate("FR", "reduced", "S", Decimal("5.5"), dt.date(2000, 1, 1)))
ACCOUNT = Account("A1", "Customer", "EUR", "UTC", 1, {"country": "FR"})
# voice 12.345678 + data 7.00 at 20 %; a 10.00 plan at 5.5 %
USAGE = (UsageGroup("EUR", "voice", "national", 3, 12_345_678, Decimal(180)),
         UsageGroup("EUR", "data", "", 2, 7_000_000, Decimal(1000)))
PLAN = Subscription(1, Product("p", "Plan", "EUR", 10_000_000, "reduced"),
                    dt.datetime(2025, 1, 1, tzinfo=UTC), None)


def bill(*discounts: Discount, adjustments: tuple[Adjustment, ...] = ()) -> InvoiceDraft:
    draft = compute(BillingInput(account=ACCOUNT, currency="EUR", usage=USAGE,
                                 subscriptions=(PLAN,), adjustments=adjustments,
                                 discounts=discounts, tax_rates=RATES), CYCLE, SETTINGS)
    check_sums(draft)
    return draft


def check_sums(d: InvoiceDraft) -> None:
    t = d.totals
    assert t.line_total_micros == sum(ln.net_micros for ln in d.lines)
    assert t.allowance_micros == sum(a.amount_micros for a in d.allowances)
    assert t.net_micros == t.line_total_micros - t.allowance_micros
    assert t.tax_micros == sum(x.tax for x in d.taxes)
    assert t.net_micros == sum(x.taxable for x in d.taxes)
    assert t.total_micros == t.net_micros + t.tax_micros
    for x in d.taxes:  # each category: its lines minus its allowances, taxed once
        lines = sum(ln.net_micros for ln in d.lines
                    if (ln.tax_category, ln.tax_rate) == (x.category, x.rate))
        off = sum(a.amount_micros for a in d.allowances
                  if (a.tax_category, a.tax_rate) == (x.category, x.rate))
        assert x.taxable == lines - off
        assert x.tax == tax_on(x.taxable, x.rate, "EUR", "half-up")
    for ln in d.lines:
        assert ln.net_micros % 10_000 == 0  # rounded to the cent


def nets(d: InvoiceDraft) -> dict[str, int]:
    return {ln.service: ln.net_micros for ln in d.lines}


def taxes(d: InvoiceDraft) -> dict[Decimal, tuple[int, int]]:
    return {x.rate: (x.taxable, x.tax) for x in d.taxes}


def test_no_discount_baseline() -> None:
    d = bill()
    assert nets(d) == {"data": 7_000_000, "voice": 12_350_000, "subscription": 10_000_000}
    assert taxes(d) == {Decimal(20): (19_350_000, 3_870_000),
                        Decimal("5.5"): (10_000_000, 550_000)}
    assert d.totals.total_micros == 33_770_000


def test_line_percentage_on_one_service() -> None:
    d = bill(Discount(1, "percentage", "line", service="voice", percent=Decimal(10)))
    voice = next(ln for ln in d.lines if ln.service == "voice")
    # 12.345678 − 10 % = 11.1111102 → 11.11; the discount is kept exactly until rounding
    assert (voice.gross_micros, voice.discount_micros, voice.net_micros) == (
        12_345_678, 1_234_567, 11_110_000)
    assert nets(d)["data"] == 7_000_000 and nets(d)["subscription"] == 10_000_000
    # 20 %: 18.11 → 3.622 → 3.62; 5.5 %: 10.00 → 0.55
    assert taxes(d) == {Decimal(20): (18_110_000, 3_620_000),
                        Decimal("5.5"): (10_000_000, 550_000)}
    assert d.totals.total_micros == 28_110_000 + 4_170_000
    assert voice.detail["discounts"] == [{"discount_id": 1, "micros": 1_234_567,
                                          "reason": "percentage discount"}]


def test_line_percentage_on_every_line_except_adjustments() -> None:
    credit = Adjustment(9, -2_000_000, "EUR", "Goodwill")
    d = bill(Discount(1, "percentage", "line", percent=Decimal(50)), adjustments=(credit,))
    assert nets(d) == {"data": 3_500_000, "voice": 6_170_000, "subscription": 5_000_000,
                       "adjustment": -2_000_000}  # 6.172839 → 6.17; the credit untouched
    assert taxes(d) == {Decimal(20): (7_670_000, 1_530_000),  # 7.67 × 20 % = 1.534
                        Decimal("5.5"): (5_000_000, 280_000)}  # 0.275 → 0.28 half-up


@pytest.mark.parametrize(("amount", "data_net"), [(5_000_000, 2_000_000), (10_000_000, 0)])
def test_line_fixed_never_below_zero(amount: int, data_net: int) -> None:
    d = bill(Discount(1, "fixed", "line", service="data", amount_micros=amount))
    assert nets(d)["data"] == data_net
    data = next(ln for ln in d.lines if ln.service == "data")
    assert data.discount_micros == 7_000_000 - data_net


def test_line_volume_takes_the_highest_tier_reached() -> None:
    tiers = (VolumeTier(0, Decimal(0)), VolumeTier(10_000_000, Decimal(5)),
             VolumeTier(20_000_000, Decimal(10)))
    d = bill(Discount(1, "volume", "line", service="voice", tiers=tiers),
             Discount(2, "volume", "line", service="data", tiers=tiers))
    # voice 12.345678 ≥ 10: 5 % → 11.7283941 → 11.73; data 7.00 < 10: 0 %
    assert nets(d)["voice"] == 11_730_000 and nets(d)["data"] == 7_000_000


def test_discount_in_another_currency_does_not_apply() -> None:
    d = bill(Discount(1, "fixed", "line", amount_micros=1_000_000, currency="USD"))
    assert nets(d) == nets(bill()) and not d.allowances


def test_invoice_percentage_is_split_over_categories_then_taxed() -> None:
    d = bill(Discount(1, "percentage", "invoice", percent=Decimal(10), description="10 % off"))
    # base 29.35 → 2.935 → 2.94, split 19.35 : 10.00 by largest remainder: 1.94 + 1.00
    assert [(a.tax_rate, a.amount_micros, a.reason) for a in d.allowances] == [
        (Decimal("5.5"), 1_000_000, "10 % off"), (Decimal(20), 1_940_000, "10 % off")]
    # 17.41 × 20 % = 3.482 → 3.48; 9.00 × 5.5 % = 0.495 → 0.50 (half-up)
    assert taxes(d) == {Decimal(20): (17_410_000, 3_480_000),
                        Decimal("5.5"): (9_000_000, 500_000)}
    t = d.totals
    assert (t.line_total_micros, t.allowance_micros, t.net_micros, t.tax_micros,
            t.total_micros) == (29_350_000, 2_940_000, 26_410_000, 3_980_000, 30_390_000)


def test_invoice_fixed_allowance_and_its_cap() -> None:
    d = bill(Discount(1, "fixed", "invoice", amount_micros=3_000_000))
    # 3.00 split 19.35 : 10.00 → 1.9779 : 1.0221 cents-wise → 1.98 + 1.02
    assert sorted(a.amount_micros for a in d.allowances) == [1_020_000, 1_980_000]
    assert taxes(d) == {Decimal(20): (17_370_000, 3_470_000),  # 3.474 → 3.47
                        Decimal("5.5"): (8_980_000, 490_000)}  # 0.4939 → 0.49
    capped = bill(Discount(1, "fixed", "invoice", amount_micros=50_000_000))
    assert capped.totals.allowance_micros == 29_350_000  # never more than the base
    assert capped.totals.net_micros == 0 and capped.totals.tax_micros == 0


def test_invoice_volume_allowance() -> None:
    tiers = (VolumeTier(0, Decimal(0)), VolumeTier(25_000_000, Decimal(2)),
             VolumeTier(50_000_000, Decimal(5)))
    d = bill(Discount(1, "volume", "invoice", tiers=tiers))
    # base 29.35 reaches 25: 2 % = 0.587 → 0.59, split → 0.39 (20 %) + 0.20 (5.5 %)
    assert {a.tax_rate: a.amount_micros for a in d.allowances} == {
        Decimal(20): 390_000, Decimal("5.5"): 200_000}
    assert taxes(d) == {Decimal(20): (18_960_000, 3_790_000),  # 3.792 → 3.79
                        Decimal("5.5"): (9_800_000, 540_000)}  # 0.539 → 0.54


def test_line_then_invoice_discounts_apply_in_that_order() -> None:
    d = bill(Discount(1, "percentage", "line", service="voice", percent=Decimal(10)),
             Discount(2, "fixed", "invoice", amount_micros=1_000_000),
             Discount(3, "percentage", "invoice", percent=Decimal(10)))
    # lines 7.00 + 11.11 (20 %) + 10.00 (5.5 %) = 28.11; fixed 1.00 → 0.64 + 0.36;
    # then 10 % of what is left, 27.11 → 2.711 → 2.71 → 1.75 + 0.96
    by = [(a.discount_id, a.tax_rate, a.amount_micros) for a in d.allowances]
    assert by == [(2, Decimal("5.5"), 360_000), (2, Decimal(20), 640_000),
                  (3, Decimal("5.5"), 960_000), (3, Decimal(20), 1_750_000)]
    assert taxes(d) == {Decimal(20): (15_720_000, 3_140_000),
                        Decimal("5.5"): (8_680_000, 480_000)}  # 3.144 → 3.14; 0.4774 → 0.48


def test_inclusive_invoice_with_allowance_keeps_gross_and_sums() -> None:
    account = Account("A2", "Consumer", "EUR", "UTC", 1, {"country": "FR", "tax_inclusive": True})
    d = compute(BillingInput(account=account, currency="EUR", usage=USAGE, subscriptions=(PLAN,),
                             adjustments=(), tax_rates=RATES,
                             discounts=(Discount(1, "percentage", "invoice",
                                                 percent=Decimal(10)),)), CYCLE, SETTINGS)
    check_sums(d)
    # customer-facing gross 29.35 − 2.94 = 26.41 is what is payable, tax included
    assert d.totals.payable_micros == 26_410_000


def one_usage(amount: int, adjustment: int, *discounts: Discount,
              inclusive: bool = False) -> InvoiceDraft:
    account = Account("A3", "Customer", "EUR", "UTC", 1,
                      {"country": "FR", "tax_inclusive": inclusive})
    return compute(BillingInput(
        account=account, currency="EUR",
        usage=(UsageGroup("EUR", "voice", "national", 1, amount, Decimal(60)),),
        subscriptions=(), adjustments=(Adjustment(1, adjustment, "EUR", "Goodwill"),),
        discounts=discounts, tax_rates=RATES), CYCLE, SETTINGS)


@pytest.mark.parametrize("discount", [
    Discount(1, "percentage", "invoice", percent=Decimal(50)),
    Discount(1, "fixed", "invoice", amount_micros=30_000_000)])
@pytest.mark.parametrize("inclusive", [False, True])
def test_invoice_discount_stops_at_the_category_net_after_credits(
        discount: Discount, inclusive: bool) -> None:
    # usage 100.00, goodwill −80.00: 50 % (50.00) or 30.00 off the charges, capped at the
    # 20.00 still owed: the invoice comes to zero, never to a credit
    d = one_usage(100_000_000, -80_000_000, discount, inclusive=inclusive)
    assert d.totals.net_micros == 0 and d.totals.tax_micros == 0
    assert d.totals.payable_micros == 0
    if not inclusive:
        check_sums(d)
        assert [a.amount_micros for a in d.allowances] == [20_000_000]


def test_a_credit_in_one_category_caps_only_that_category() -> None:
    # −12.00 on the 5.5 % plan (10.00) leaves it nothing to discount; voice and data bear
    # the whole 10 % of 29.35 (2.94) alone
    d = bill(Discount(1, "percentage", "invoice", percent=Decimal(10)),
             adjustments=(Adjustment(9, -12_000_000, "EUR", "Goodwill", "reduced"),))
    assert [(a.tax_rate, a.amount_micros) for a in d.allowances] == [(Decimal(20), 2_940_000)]
    assert taxes(d) == {Decimal(20): (16_410_000, 3_280_000),  # 3.282 → 3.28
                        Decimal("5.5"): (-2_000_000, -110_000)}


CURRENCIES = st.sampled_from(["EUR", "JPY", "BHD"])
DISCOUNTS = st.one_of(
    st.builds(lambda p: Discount(1, "percentage", "invoice", percent=Decimal(p) / 100),
              st.integers(1, 10_000)),
    st.builds(lambda a: Discount(1, "fixed", "invoice", amount_micros=a),
              st.integers(1, 100_000_000)))


@settings(max_examples=300)
@given(currency=CURRENCIES, inclusive=st.booleans(),
       method=st.sampled_from(["half-up", "half-even", "up", "down"]),
       usage=st.lists(st.tuples(st.sampled_from(["voice", "data"]), st.integers(0, 50_000_000)),
                      max_size=4),
       adjustments=st.lists(st.tuples(st.integers(-50_000_000, 50_000_000),
                                      st.sampled_from(["standard", "reduced"])), max_size=3),
       discounts=st.lists(DISCOUNTS, max_size=3))
def test_no_invoice_discount_makes_a_category_negative(
        currency: str, inclusive: bool, method: str, usage: list[tuple[str, int]],
        adjustments: list[tuple[int, str]], discounts: list[Discount]) -> None:
    account = Account("A4", "Customer", currency, "UTC", 1,
                      {"country": "FR", "tax_inclusive": inclusive})
    data = BillingInput(
        account=account, currency=currency,
        usage=tuple(UsageGroup(currency, s, f"z{i}", 1, a, Decimal(1))
                    for i, (s, a) in enumerate(usage)),
        subscriptions=(), discounts=tuple(discounts), tax_rates=RATES,
        adjustments=tuple(Adjustment(i, a, currency, "Adjustment", c)
                          for i, (a, c) in enumerate(adjustments)))
    undiscounted = compute(msgspec.structs.replace(data, discounts=()), CYCLE,
                     Settings(seller=SETTINGS.seller, rounding=method))
    d = compute(data, CYCLE, Settings(seller=SETTINGS.seller, rounding=method))
    before = {(x.category, x.rate): x.taxable + x.tax + x.rounding for x in undiscounted.taxes}
    t = d.totals
    assert t.line_total_micros == sum(ln.net_micros for ln in d.lines)
    assert t.allowance_micros == sum(a.amount_micros for a in d.allowances)
    assert t.tax_micros == sum(x.tax for x in d.taxes)
    assert all(a.amount_micros > 0 and a.amount_micros % minor_step(currency) == 0
               for a in d.allowances)
    for x in d.taxes:  # what the category comes to: lower with discounts, never below zero
        after = x.taxable + x.tax + x.rounding
        assert min(0, before[x.category, x.rate]) <= after <= before[x.category, x.rate]
        if not inclusive:
            assert x.taxable >= min(0, sum(ln.net_micros for ln in d.lines
                                           if (ln.tax_category, ln.tax_rate)
                                           == (x.category, x.rate)))
