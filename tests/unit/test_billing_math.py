"""Money maths of invoicing: rounding, tiers, proration, taxes (exclusive and inclusive)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_oss.core.rounding import (
    minor_digits,
    quantity_text,
    round_fraction,
    round_minor,
)
from billing_oss.server.billing.compute import compute
from billing_oss.server.billing.model import (
    Account,
    BillingInput,
    Product,
    Settings,
    Subscription,
    UsageGroup,
)
from billing_oss.server.billing.periods import active_days, after, cycle, prorated
from billing_oss.server.catalog import pricing
from billing_oss.server.catalog.tax import TaxRate, split_inclusive, tax_on

UTC = dt.UTC


def test_minor_units_come_from_iso_4217_data() -> None:
    assert (minor_digits("EUR"), minor_digits("JPY"), minor_digits("BHD")) == (2, 0, 3)


@pytest.mark.parametrize(("value", "method", "expected"), [
    (Fraction(5), "half-up", 10), (Fraction(-5), "half-up", -10),
    (Fraction(5), "half-even", 0), (Fraction(15), "half-even", 20),
    (Fraction(1), "up", 10), (Fraction(-1), "up", -10),
    (Fraction(19), "down", 10), (Fraction(-19), "down", -10),
    (Fraction(14), "half-up", 10), (Fraction(16), "half-even", 20),
])
def test_rounding_methods(value: Fraction, method: str, expected: int) -> None:
    assert round_fraction(value, 10, method) == expected  # type: ignore[arg-type]


GRAD = pricing.UsageComponent(service="data", model="graduated", tiers=(
    pricing.Tier(Decimal(10), Decimal("1.00")), pricing.Tier(Decimal(20), Decimal("0.50")),
    pricing.Tier(None, Decimal("0.25"))))
VOL = pricing.UsageComponent(service="data", model="volume", tiers=GRAD.tiers)


@pytest.mark.parametrize(("units", "graduated", "volume"), [
    (0, 0, 0), (10, 10, 10), (Fraction(1001, 100), Fraction(10005, 1000),
                               Fraction(1001, 200)),
    (20, 15, 10), (21, Fraction(1525, 100), Fraction(525, 100)),
])
def test_graduated_vs_volume_on_boundaries(units: Fraction, graduated: Fraction,
                                           volume: Fraction) -> None:
    assert pricing.price_units(GRAD, Fraction(units)) == graduated * 1_000_000
    assert pricing.price_units(VOL, Fraction(units)) == volume * 1_000_000


def test_package_and_allowance() -> None:
    c = pricing.UsageComponent(service="sms", model="package", price=Decimal("2"),
                               package_size=Decimal(100), included=Decimal(50))
    assert pricing.billable_units(c, 50) == 0
    assert pricing.price_units(c, pricing.billable_units(c, 51)) == 2_000_000
    assert pricing.price_units(c, pricing.billable_units(c, 250)) == 4_000_000


def usage_net(component: pricing.UsageComponent, units: int, billed_before: int) -> int:
    """The component line of ``units`` more units in a cycle already billed for
    ``billed_before`` on a final invoice."""
    plan = Subscription(1, Product("p", "Plan", "EUR", 0, usage_pricing=(component,)),
                        dt.datetime(2025, 1, 1, tzinfo=UTC), None)
    draft = compute(BillingInput(
        account=Account("A", "n", "EUR", "UTC", 1, {"country": "FR"}), currency="EUR",
        usage=(UsageGroup("EUR", "data", "", 1, 0, Decimal(units)),) if units else (),
        subscriptions=(plan,), adjustments=(), discounts=(),
        tax_rates=(TaxRate("FR", "standard", "S", Decimal(20), dt.date(2000, 1, 1)),),
        bill_recurring=not billed_before,
        billed_quantity={"data": Decimal(billed_before)} if billed_before else {}),
        cycle("2026-01", 1, "UTC"), Settings(seller={"country": "FR"}))
    (line,) = [ln for ln in draft.lines if ln.subscription_id is not None]
    return line.net_micros


@pytest.mark.parametrize(("component", "first", "late", "first_net", "late_net"), [
    # 5 included: 10 units cost 5 × 1.00, 22 cost 10 × 1.00 + 7 × 0.50: 8.50 more, not
    # 12 − 5 included at the first tier's price again (7.00)
    (msgspec.structs.replace(GRAD, included=Decimal(5)), 10, 12, 5_000_000, 8_500_000),
    # volume: 25 units all at 0.25 cost less than 10 at 1.00: the late usage is a credit
    (VOL, 10, 15, 10_000_000, -3_750_000),
    # started packages of 100, 50 free: 120 is one package, 260 three: two more
    (pricing.UsageComponent(service="data", model="package", price=Decimal("2"),
                            package_size=Decimal(100), included=Decimal(50)),
     120, 140, 2_000_000, 4_000_000),
])
def test_late_usage_is_priced_on_the_cycle_total(component: pricing.UsageComponent,
                                                 first: int, late: int, first_net: int,
                                                 late_net: int) -> None:
    assert usage_net(component, first, 0) == first_net
    assert usage_net(component, late, first) == late_net
    assert first_net + late_net == usage_net(component, first + late, 0)  # as if on time


def test_proration_start_on_last_day_of_leap_february() -> None:
    feb = cycle("2028-02", 1, "UTC")
    assert feb.days == 29
    assert active_days(feb, dt.datetime(2028, 2, 29, 15, tzinfo=UTC), None, "UTC") == 1
    assert prorated(29_000_000, 1, feb.days) == 1_000_000
    assert cycle("2026-02", 1, "UTC").days == 28


def test_change_mid_period_bills_each_day_once() -> None:
    jan = cycle("2026-01", 1, "Europe/Paris")
    change = dt.datetime(2026, 1, 15, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    old = active_days(jan, dt.datetime(2025, 6, 1, tzinfo=UTC), change, "Europe/Paris")
    new = active_days(jan, change, None, "Europe/Paris")
    assert (old, new) == (14, 17) and old + new == jan.days


def test_cycle_follows_billing_day_and_timezone() -> None:
    c = cycle("2026-03", 15, "America/New_York")
    assert c.start == dt.datetime(2026, 3, 15, 4, tzinfo=UTC)  # EDT from 8 March
    assert c.end == dt.datetime(2026, 4, 15, 4, tzinfo=UTC)
    assert cycle("2026-12", 1, "UTC").end == dt.datetime(2027, 1, 1, tzinfo=UTC)


@settings(max_examples=300)
@given(cents=st.integers(-10**9, 10**9), rate=st.sampled_from(
    [Decimal("20"), Decimal("5.5"), Decimal("19"), Decimal("7.7"), Decimal("0"), Decimal("21")]))
def test_tax_inclusive_round_trip(cents: int, rate: Decimal) -> None:
    gross = cents * 10_000
    s = split_inclusive(gross, rate, "EUR", "half-up")
    assert s.net + s.tax + s.rounding == gross  # the customer pays the gross exactly
    assert s.tax == tax_on(s.net, rate, "EUR", "half-up")  # EN 16931 BR-CO-17
    assert abs(s.rounding) <= 10_000 and s.net % 10_000 == 0


@given(total=st.integers(-10**6, 10**6), weights=st.lists(st.integers(-10**6, 10**6),
                                                          min_size=1, max_size=8))
def test_allocation_sums_exactly(total: int, weights: list[int]) -> None:
    shares = pricing.allocate_signed(total * 100, weights, 100)
    assert sum(shares) == total * 100 and all(s % 100 == 0 for s in shares)


@given(micros=st.integers(-10**12, 10**12))
def test_round_minor_is_within_half_a_unit(micros: int) -> None:
    r = round_minor(micros, "EUR", "half-even")
    assert abs(r - micros) <= 5_000 and r % 10_000 == 0


@pytest.mark.parametrize(("quantity", "text"), [
    (Decimal(22) / 31, "0.7097"), (Decimal(1) / 31, "0.0323"), (Decimal(31) / 31, "1"),
    (Decimal("427"), "427"), (Decimal("2.50000"), "2.5"), (-Decimal(22) / 31, "-0.7097"),
    (7, "7"), (Decimal("0.00003"), "0.00003"), (Decimal("-0.0000123456"), "-0.00001235"),
    (Decimal("0.00004999"), "0.00004999"), (Decimal("0.00005"), "0.0001"), (Decimal(0), "0"),
])
def test_quantities_print_with_at_most_four_decimals(quantity: Decimal | int, text: str) -> None:
    assert quantity_text(quantity) == text


def test_transition_cycle_after_a_billing_day_change() -> None:
    """Day 15 → 1: the invoiced cycle ended on 15 February, February's cycle starts there
    and a full plan is prorated over the 28 days of the normal cycle; no overlap, no change."""
    feb = cycle("2026-02", 1, "UTC")
    moved = after(feb, cycle("2026-01", 15, "UTC").end, "UTC")
    assert (moved.start_local, moved.end_local) == (dt.date(2026, 2, 15), dt.date(2026, 3, 1))
    assert moved.start == dt.datetime(2026, 2, 15, tzinfo=UTC) and moved.end == feb.end
    days = active_days(moved, dt.datetime(2025, 6, 1, tzinfo=UTC), None, "UTC")
    assert (days, moved.month_days) == (14, 28)
    assert prorated(28_000_000, days, moved.month_days) == 14_000_000
    assert after(feb, cycle("2026-01", 1, "UTC").end, "UTC") == feb
    # day 1 → 15: the invoiced cycle ended on 1 February, February's runs from there to
    # 15 March: the fortnight between is billed, not skipped (42 of 28 days)
    later = cycle("2026-02", 15, "UTC")
    longer = after(later, cycle("2026-01", 1, "UTC").end, "UTC")
    assert (longer.start_local, longer.end_local) == (dt.date(2026, 2, 1), dt.date(2026, 3, 15))
    days = active_days(longer, dt.datetime(2025, 6, 1, tzinfo=UTC), None, "UTC")
    assert (days, longer.month_days) == (42, 28)
    assert prorated(28_000_000, days, longer.month_days) == 42_000_000
    # a timezone change may overlap by hours: the started day still counts, no proration
    paris = cycle("2026-02", 1, "Europe/Paris")
    shifted = after(paris, cycle("2026-01", 1, "America/New_York").end, "Europe/Paris")
    assert shifted.start_local == paris.start_local and shifted.start > paris.start
