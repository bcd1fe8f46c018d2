"""One account's invoice for one cycle and currency, computed from what the bill run read.

Order of work: lines (usage groups, periodic usage pricing, prorated recurring fees,
adjustments) with their exact amounts; line discounts; each line rounded once to the
currency's minor unit with the configured method; tax category per line; invoice-scope
discounts as document allowances per category; tax per category on its net sum. Every
total is a sum of rounded figures, so totals equal the sums of lines and categories exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from typing import cast

from billing_oss.core.rounding import Method, minor_step, round_minor
from billing_oss.server.billing.model import (
    Allowance,
    BillingInput,
    Discount,
    InvoiceDraft,
    Line,
    Settings,
    Subscription,
    Totals,
)
from billing_oss.server.billing.periods import Cycle, active_days, prorated
from billing_oss.server.catalog import pricing
from billing_oss.server.catalog.tax import (
    REVERSE_CHARGE_NOTE,
    CategoryTotal,
    Party,
    rate_for,
    split_inclusive,
    summarise,
    treatment,
)

UNITS = {"voice": "s", "data": "byte", "sms": "message", "event": "unit"}


class _Draft:
    """A line before rounding: exact gross, what it is, where it comes from."""

    def __init__(self, kind: str, service: str, description: str, quantity: Decimal, unit: str,
                 gross: Fraction, tax_class: str, **extra: object) -> None:
        self.kind, self.service, self.description = kind, service, description
        self.quantity, self.unit, self.gross, self.tax_class = quantity, unit, gross, tax_class
        self.extra = extra
        self.discount = Fraction(0)


def compute(data: BillingInput, cycle: Cycle, settings: Settings) -> InvoiceDraft:
    method = cast(Method, settings.rounding)
    currency = data.currency
    drafts = [*_usage_lines(data, settings), *_component_lines(data, cycle),
              *_recurring_lines(data, cycle), *_adjustment_lines(data)]
    line_discounts = [d for d in data.discounts if d.scope == "line" and _in(d, currency)]
    for draft in drafts:
        _apply_line_discounts(draft, line_discounts)

    how = treatment(_party(settings.seller), data.account.party)
    tax_day = cycle.end_local.fromordinal(cycle.end_local.toordinal() - 1)
    rates = {d.tax_class: rate_for(data.tax_rates, how, d.tax_class, tax_day) for d in drafts}
    amounts = [round_minor(d.gross - d.discount, currency, method) for d in drafts]

    doc_discounts = [d for d in data.discounts if d.scope == "invoice" and _in(d, currency)]
    if data.account.tax_inclusive:
        nets, inclusive, allowances, taxes = _inclusive(drafts, amounts, rates, doc_discounts,
                                                        currency, method)
    else:
        nets, inclusive = amounts, [None] * len(amounts)
        allowances = _allowances(drafts, nets, rates, doc_discounts, currency, method)
        taxes = summarise(
            [(*rates[d.tax_class], n) for d, n in zip(drafts, nets, strict=True)],
            [(a.tax_category, a.tax_rate, a.amount_micros) for a in allowances],
            currency, method,
        )

    lines = tuple(
        Line(
            line_no=i + 1, kind=d.kind, service=d.service, description=d.description,
            quantity=d.quantity, unit=d.unit, charges=cast(int, d.extra.get("charges", 0)),
            gross_micros=int(d.gross), discount_micros=int(d.discount), net_micros=net,
            tax_category=rates[d.tax_class][0], tax_rate=rates[d.tax_class][1],
            inclusive_micros=inc, zone=cast(str | None, d.extra.get("zone")),
            subscription_id=cast(int | None, d.extra.get("subscription_id")),
            adjustment_id=cast(int | None, d.extra.get("adjustment_id")),
            detail=cast(dict[str, object], d.extra.get("detail", {})),
        )
        for i, (d, net, inc) in enumerate(zip(drafts, nets, inclusive, strict=True))
    )
    line_total = sum(line.net_micros for line in lines)
    allowance_total = sum(a.amount_micros for a in allowances)
    tax_total = sum(t.tax for t in taxes)
    rounding = sum(t.rounding for t in taxes)
    net = line_total - allowance_total
    totals = Totals(line_total, allowance_total, net, tax_total, net + tax_total, rounding,
                    net + tax_total + rounding)
    return InvoiceDraft(
        account_id=data.account.account_id, currency=currency, period=cycle.period,
        period_start=cycle.start, period_end=cycle.end,
        tax_inclusive=data.account.tax_inclusive, reverse_charge=how.reverse_charge,
        rounding_method=method, lines=lines, allowances=tuple(allowances), taxes=tuple(taxes),
        totals=totals, seller=settings.seller,
        # the timezone dates the period as the customer reads it (its cycle's local days)
        buyer={"account_id": data.account.account_id, "name": data.account.name,
               **data.account.attrs, "timezone": data.account.timezone},
        notes=(REVERSE_CHARGE_NOTE,) if how.reverse_charge and lines else (),
    )


def _party(seller: dict[str, object]) -> Party:
    vat_id = seller.get("vat_id")
    return Party(country=str(seller.get("country", "")), vat_id=str(vat_id) if vat_id else None)


def _in(discount: Discount, currency: str) -> bool:
    return discount.currency is None or discount.currency == currency


def _usage_lines(data: BillingInput, settings: Settings) -> Iterable[_Draft]:
    for g in sorted(data.usage, key=lambda g: (g.service, g.zone)):
        label = f"{g.service.capitalize()}{' — ' + g.zone if g.zone else ''}"
        unit = g.unit or UNITS.get(g.service, "unit")
        yield _Draft("usage", g.service, label, g.quantity, unit,
                     Fraction(g.amount_micros), settings.usage_tax_class,
                     charges=g.charges, zone=g.zone,
                     **({"detail": {"tariff_prices": list(g.prices)}} if g.prices else {}))


def _component_lines(data: BillingInput, cycle: Cycle) -> Iterable[_Draft]:
    """Periodic pricing of the cycle's total usage per service; the product active last in
    the cycle prices a service when several do. Usage arriving after the cycle's invoice was
    finalised is priced as what the cycle's total costs more than the usage already billed,
    so the included allowance and the cheaper tiers count once per cycle."""
    components: dict[str, tuple[Subscription, pricing.UsageComponent]] = {}
    for sub in sorted(data.subscriptions, key=lambda s: s.valid_from):
        if active_days(cycle, sub.valid_from, sub.valid_to, data.account.timezone) == 0:
            continue
        for c in sub.product.usage_pricing:
            components[c.service] = (sub, c)
    for service, (sub, c) in sorted(components.items()):
        groups = [g for g in data.usage if g.service == service and g.currency == data.currency]
        if sub.product.currency != data.currency:
            continue
        before = Fraction(data.billed_quantity.get(service, Decimal(0)))
        total = before + sum((Fraction(g.quantity) for g in groups), Fraction(0))
        units_before = pricing.billable_units(c, before)
        units = pricing.billable_units(c, total) - units_before
        price = (pricing.price_units(c, units + units_before)
                 - pricing.price_units(c, units_before))
        all_units = total / c.unit_size
        if not groups and not price:
            continue  # no usage of the service on this invoice: a zero line is noise
        slices = pricing.slices(c, units_before, units)
        yield _Draft(
            "usage", service, f"{sub.product.name}: {service} ({c.model.replace('_', '-')})",
            Decimal(units.numerator) / Decimal(units.denominator), c.unit, price,
            sub.product.tax_class, subscription_id=sub.subscription_id,
            detail={"model": c.model, "included": str(c.included),
                    "total_units": str(Decimal(all_units.numerator) / all_units.denominator),
                    "zones": sorted(g.zone for g in groups),
                    # what the invoice prints: quantity × price per slice, summing to the
                    # line's exact amount (left out where they would not)
                    **({"slices": [s.as_json() for s in slices]}
                       if sum(s.amount for s in slices) == price else {}),
                    **({"billed_before_units": _decimal(units_before)} if before else {})},
        )


def _decimal(units: Fraction) -> str:
    return str(Decimal(units.numerator) / Decimal(units.denominator))


def _recurring_lines(data: BillingInput, cycle: Cycle) -> Iterable[_Draft]:
    if not data.bill_recurring:
        return
    for sub in sorted(data.subscriptions, key=lambda s: (s.valid_from, s.subscription_id)):
        p = sub.product
        if p.currency != data.currency or p.recurring_fee_micros == 0:
            continue
        days = active_days(cycle, sub.valid_from, sub.valid_to, data.account.timezone)
        if days == 0:
            continue
        # Over the normal cycle's days: a shorter transition cycle bills its days only.
        month = cycle.month_days
        note = "" if days == month else f" ({days}/{month} days)"
        yield _Draft(
            "recurring", "subscription", f"{p.name}{note}", Decimal(days) / month,
            "month", prorated(p.recurring_fee_micros, days, month), p.tax_class,
            subscription_id=sub.subscription_id,
            detail={"days": days, "cycle_days": month,
                    "fee_micros": p.recurring_fee_micros, "product": p.product_id},
        )


def _adjustment_lines(data: BillingInput) -> Iterable[_Draft]:
    for a in data.adjustments:
        if a.currency == data.currency:
            yield _Draft("adjustment", "adjustment", a.description, Decimal(1), "unit",
                         Fraction(a.amount_micros), a.tax_class, adjustment_id=a.adjustment_id)


def _apply_line_discounts(draft: _Draft, discounts: list[Discount]) -> None:
    """Discounts reduce positive lines of their service only, never below zero."""
    if draft.gross <= 0 or draft.kind == "adjustment":
        return
    for d in discounts:
        if d.service is not None and d.service != draft.service:
            continue
        left = draft.gross - draft.discount
        off = min(left, _discount_amount(d, left))
        if off > 0:
            draft.discount += off
            detail = cast(dict[str, list[object]], draft.extra.setdefault("detail", {}))
            detail.setdefault("discounts", []).append(
                {"discount_id": d.discount_id, "micros": int(off),
                 "reason": d.description or f"{d.kind} discount"})


def _discount_amount(d: Discount, base: Fraction) -> Fraction:
    if d.kind == "percentage":
        return pricing.percentage(base, d.percent or Decimal(0))
    if d.kind == "fixed":
        return pricing.fixed(base, d.amount_micros or 0)
    return pricing.volume(base, d.tiers)


def _allowances(drafts: list[_Draft], nets: list[int], rates: dict[str, tuple[str, Decimal]],
                discounts: list[Discount], currency: str, method: Method) -> list[Allowance]:
    """Invoice-scope discounts on positive category sums, split over categories in
    proportion, each share rounded (fixed ones allocated so the shares sum exactly).
    Adjustments are no discount base, but a category's credits cap its allowances: a
    discount never takes a category's net below zero (it does not create a credit)."""
    base: dict[tuple[str, Decimal], int] = defaultdict(int)
    after: dict[tuple[str, Decimal], int] = defaultdict(int)
    for d, n in zip(drafts, nets, strict=True):
        after[rates[d.tax_class]] += n
        if d.kind != "adjustment":
            base[rates[d.tax_class]] += n
    keys = sorted(k for k, v in base.items() if v > 0)
    room = {k: max(0, min(base[k], after[k])) for k in keys}
    out: list[Allowance] = []
    for disc in discounts:
        given = {k: sum(a.amount_micros for a in out if (a.tax_category, a.tax_rate) == k)
                 for k in keys}
        total_base = sum(base[k] - given[k] for k in keys)
        room_left = [room[k] - given[k] for k in keys]
        if total_base <= 0 or sum(room_left) <= 0:
            break
        wanted = min(Fraction(total_base), _discount_amount(disc, Fraction(total_base)))
        total = min(round_minor(wanted, currency, method), sum(room_left))
        # in proportion to what each category can still bear: no share exceeds its room
        shares = pricing.allocate(total, room_left, minor_step(currency))
        for k, share in zip(keys, shares, strict=True):
            if share:
                out.append(Allowance(len(out) + 1, disc.discount_id,
                                     disc.description or f"{disc.kind} discount", share, *k))
    return out


def _inclusive(drafts: list[_Draft], gross: list[int], rates: dict[str, tuple[str, Decimal]],
               discounts: list[Discount], currency: str, method: Method,
               ) -> tuple[list[int], list[int | None], list[Allowance], list[CategoryTotal]]:
    """Tax-inclusive: line amounts are gross; each category's gross is split once into net
    and tax, the net allocated back over the lines in proportion to their gross."""
    step = minor_step(currency)
    by_cat: dict[tuple[str, Decimal], list[int]] = defaultdict(list)
    for i, d in enumerate(drafts):
        by_cat[rates[d.tax_class]].append(i)
    gross_allowances = _allowances(drafts, gross, rates, discounts, currency, method)
    nets = [0] * len(drafts)
    allowances: list[Allowance] = []
    taxes: list[CategoryTotal] = []
    for key in sorted(by_cat):
        idx = by_cat[key]
        cat_gross = sum(gross[i] for i in idx)
        before = split_inclusive(cat_gross, key[1], currency, method)
        shares = pricing.allocate_signed(before.net, [gross[i] for i in idx], step)
        for i, share in zip(idx, shares, strict=True):
            nets[i] = share
        off = sum(a.amount_micros for a in gross_allowances if (a.tax_category, a.tax_rate) == key)
        after = split_inclusive(cat_gross - off, key[1], currency, method) if off else before
        net_off = sum(nets[i] for i in idx) - after.net
        if net_off:
            reason = "; ".join(a.reason for a in gross_allowances
                               if (a.tax_category, a.tax_rate) == key)
            allowances.append(Allowance(len(allowances) + 1, None, reason, net_off, *key))
        taxes.append(CategoryTotal(key[0], key[1], after.net, after.tax, after.rounding,
                                   REVERSE_CHARGE_NOTE if key[0] == "AE" else None))
    return nets, list(gross), allowances, taxes
