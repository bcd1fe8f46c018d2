"""A catalog's billing sections (products, tax rates, discounts): what they become, and every
error naming the path of the bad field."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing_oss.core.errors import CatalogError
from billing_oss.server.catalog import billing_from_dict, catalog_from_dict, load_catalog
from billing_oss.server.catalog.pricing import Tier, VolumeTier
from tests.unit.test_rating import BASE

SECTIONS: dict[str, Any] = {
    "products": [
        {"id": "plan", "name": "Plan", "recurring_fee": "9.99",
         "usage_pricing": [{"service": "data", "model": "graduated", "unit": "MB",
                            "unit_size": 1000000, "included": "50",
                            "tiers": [{"up_to": "1000", "price": "0.02"}, {"price": "0.01"}]}]},
        {"id": "usd-plan", "currency": "USD", "recurring_fee": "5", "tax_class": "reduced"},
    ],
    "tax_rates": [
        {"jurisdiction": "FR", "rate": "20", "valid_from": "2014-01-01"},
        {"jurisdiction": "DE", "rate": "16", "valid_from": "2020-07-01",
         "valid_to": "2021-01-01"},
        {"jurisdiction": "DE", "rate": "19", "valid_from": "2021-01-01"},
        {"jurisdiction": "FR", "tax_class": "exempt", "category": "E", "rate": "0",
         "valid_from": "2014-01-01"},
    ],
    "discounts": [
        {"code": "TENPC", "kind": "percentage", "scope": "line", "service": "subscription",
         "percent": "10", "valid_from": "2026-01-01", "valid_to": "2027-01-01"},
        {"code": "FIVE-OFF", "kind": "fixed", "amount": "5.00", "account_id": "A1"},
        {"code": "VOLUME", "kind": "volume", "currency": "EUR",
         "tiers": [{"from": "100", "percent": "2"}, {"from": "1000", "percent": "5.5"}]},
    ],
}


def catalog(change: Callable[[dict[str, Any]], object] = lambda d: None) -> dict[str, Any]:
    data = {**copy.deepcopy(BASE), **copy.deepcopy(SECTIONS)}
    change(data)
    return data


def test_sections_become_exact_values() -> None:
    billing = catalog_from_dict(catalog()).billing
    plan, usd = billing.products
    assert (plan.currency, plan.recurring_fee_micros, plan.name) == ("EUR", 9_990_000, "Plan")
    assert plan.usage_pricing[0].tiers == (Tier(Decimal(1000), Decimal("0.02")),
                                           Tier(None, Decimal("0.01")))
    assert (usd.name, usd.currency, usd.tax_class) == ("usd-plan", "USD", "reduced")
    assert [(r.jurisdiction, r.rate, r.valid_to) for r in billing.tax_rates][:2] == [
        ("FR", Decimal(20), None), ("DE", Decimal(16), dt.date(2021, 1, 1))]
    assert billing.tax_rates[0].category == "S" and billing.tax_rates[3].category == "E"
    ten, five, volume = billing.discounts
    assert (ten.percent, ten.currency, ten.valid_from) == (Decimal(10), None, dt.date(2026, 1, 1))
    assert (five.amount_micros, five.currency, five.scope) == (5_000_000, "EUR", "invoice")
    assert five.valid_from == dt.date.min
    assert volume.tiers == (VolumeTier(100_000_000, Decimal(2)),
                            VolumeTier(1_000_000_000, Decimal("5.5")))
    assert billing_from_dict(catalog()) == billing


def product(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = d["products"][i]
    return found


def component(d: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = d["products"][0]["usage_pricing"][0]
    return found


def rate(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = d["tax_rates"][i]
    return found


def discount(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = d["discounts"][i]
    return found


CASES: list[tuple[str, Callable[[dict[str, Any]], object], str, str]] = [
    ("float money", lambda d: product(d).update(recurring_fee=9.99),
     "products[0].recurring_fee", "Expected `str`"),
    ("below a micro-unit", lambda d: product(d).update(recurring_fee="1.0000001"),
     "products[0].recurring_fee", "Expected `str` matching"),
    ("negative fee", lambda d: product(d).update(recurring_fee="-1"),
     "products[0].recurring_fee", "Expected `str` matching"),
    ("unknown key", lambda d: component(d).update(colour="red"),
     "products[0].usage_pricing[0].colour", "unknown key"),
    ("unknown currency", lambda d: product(d, 1).update(currency="ABC"),
     "products[1].currency", "unknown ISO 4217 currency"),
    ("product twice", lambda d: product(d, 1).update(id="plan"), "products[1].id", "twice"),
    ("service twice", lambda d: product(d)["usage_pricing"].append(dict(component(d))),
     "products[0].usage_pricing[1].service", "a second component"),
    ("closed last tier", lambda d: component(d)["tiers"][1].update(up_to="2000"),
     "products[0].usage_pricing[0].tiers[1].up_to", "open-ended"),
    ("open middle tier", lambda d: component(d)["tiers"].insert(0, {"price": "1"}),
     "products[0].usage_pricing[0].tiers[0].up_to", "only the last"),
    ("descending tiers", lambda d: component(d)["tiers"].insert(1, {"up_to": "10", "price": "1"}),
     "products[0].usage_pricing[0].tiers[1].up_to", "above the previous"),
    ("tiers on per_unit", lambda d: component(d).update(model="per_unit"),
     "products[0].usage_pricing[0].tiers", "no tiers"),
    ("zero package", lambda d: component(d).update(package_size="0"),
     "products[0].usage_pricing[0].package_size", "above 0"),
    ("standard rate zero", lambda d: rate(d).update(rate="0"), "tax_rates[0].rate", "above 0"),
    ("reverse charge taxed", lambda d: rate(d).update(category="AE"), "tax_rates[0].rate",
     "rate 0"),
    ("rate over 100", lambda d: rate(d).update(rate="120"), "tax_rates[0].rate", "at most 100"),
    ("unknown category", lambda d: rate(d).update(category="X"), "tax_rates[0].category",
     "Invalid enum value 'X'"),
    ("not a date", lambda d: rate(d).update(valid_from="2014-13-01"),
     "tax_rates[0].valid_from", "Invalid"),
    ("empty period", lambda d: rate(d, 1).update(valid_to="2020-07-01"),
     "tax_rates[1].valid_to", "after valid_from"),
    ("overlapping periods", lambda d: rate(d, 2).update(valid_from="2020-12-01"),
     "tax_rates[2].valid_from", "overlaps DE/standard 16% from 2020-07-01 to 2021-01-01 "
     "(tax_rates[1])"),
    ("no percent", lambda d: discount(d).pop("percent"), "discounts[0].percent", "needs"),
    ("two amounts", lambda d: discount(d, 1).update(percent="5"), "discounts[1].percent",
     "takes no"),
    ("invoice with service", lambda d: discount(d).update(scope="invoice"),
     "discounts[0].service", "scope line"),
    ("zero percent", lambda d: discount(d).update(percent="0"), "discounts[0].percent",
     "above 0"),
    ("descending volume", lambda d: discount(d, 2)["tiers"][1].update(**{"from": "50"}),
     "discounts[2].tiers[1].from", "ascend"),
    ("code twice", lambda d: discount(d, 2).update(code="TENPC"), "discounts[2].code", "twice"),
    ("unknown product", lambda d: d["accounts"][0].update(product="gold"),
     "accounts[0].product", "not defined"),
]


@pytest.mark.parametrize(("change", "path", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_invalid_section_names_the_path(change: Callable[[dict[str, Any]], object], path: str,
                                        message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        catalog_from_dict(catalog(change))
    assert caught.value.path == path
    assert message in caught.value.message


def test_fixed_discount_takes_the_catalog_currency() -> None:
    data = catalog(lambda d: d.update(currency="CHF"))
    assert catalog_from_dict(data).billing.discounts[1].currency == "CHF"


def test_toml_file_with_native_dates(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('currency = "EUR"\n' + _tariff_toml() + """
[[tax_rates]]
jurisdiction = "FR"
rate = "20"
valid_from = 2014-01-01

[[discounts]]
code = "SPRING"
kind = "percentage"
percent = "15"
valid_from = 2026-03-01
valid_to = 2026-06-01

[[products]]
id = "plan"
recurring_fee = "9.99"
""")
    billing = load_catalog(path).billing
    assert billing.tax_rates[0].valid_from == dt.date(2014, 1, 1)
    assert billing.discounts[0].valid_to == dt.date(2026, 6, 1)
    assert billing.products[0].recurring_fee_micros == 9_990_000
    json_path = tmp_path / "catalog.json"
    json_path.write_text(json.dumps({
        "currency": "EUR", "tariffs": BASE["tariffs"][:1],
        "tax_rates": [{"jurisdiction": "FR", "rate": "20", "valid_from": "2014-01-01"}],
        "discounts": [{"code": "SPRING", "kind": "percentage", "percent": "15",
                       "valid_from": "2026-03-01", "valid_to": "2026-06-01"}],
        "products": [{"id": "plan", "recurring_fee": "9.99"}]}))
    assert load_catalog(json_path).billing == billing


def _tariff_toml() -> str:
    version = BASE["tariffs"][0]["versions"][0]
    return (f'[[tariffs]]\nid = "{BASE["tariffs"][0]["id"]}"\n'
            f"versions = [{_inline(version)}]\n")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()
                               if v is not None) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
