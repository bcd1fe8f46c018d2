"""A subscription history decides the tariff by event time, on both raters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog import Catalog, Plan, catalog_from_definitions
from billing_oss.server.rating import NativeRater, ReferenceRater

RATERS: list[Callable[[Catalog], Rater]] = [ReferenceRater, NativeRater]


def tariff(tariff_id: str, price: str) -> dict[str, Any]:
    return {"id": tariff_id, "versions": [{
        "effective_from": "2026-01-01T00:00:00Z", "timezone": "UTC",
        "zones": {"national": ["336"]},
        "time_bands": [{"name": "all", "default": True}],
        "rates": [{"kind": "voice", "zone": "*", "band": "*", "connect_fee": "0",
                   "steps": [{"from": 0, "price": price, "unit": 60, "increment": 1}]}]}]}


def us(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()) * 1_000_000


# A1: retail in January, then a gap of one day, then business from February 2nd on.
PLANS = {"A1": [Plan(us("2026-01-01T00:00:00"), us("2026-02-01T00:00:00"), "retail"),
                Plan(us("2026-02-02T00:00:00"), None, "business")]}


@pytest.fixture(params=RATERS, ids=["reference", "native"])
def rater(request: pytest.FixtureRequest) -> Rater:
    catalog = catalog_from_definitions(
        "EUR", [tariff("retail", "0.60"), tariff("business", "0.30")],
        {"33611111111": ("A1", "business")}, PLANS)
    factory: Callable[[Catalog], Rater] = request.param
    return factory(catalog)


def call(when: str) -> UsageRecord:
    return UsageRecord(record_key=when, source="t", kind="voice", event_time=when,
                       duration_s=60, calling="33611111111", called="33612345678")


@pytest.mark.parametrize(("when", "expected"), [
    ("2026-01-31T23:59:59Z", ("retail", 600_000)),
    ("2026-02-01T00:00:00Z", Reason.NO_TARIFF),  # between subscriptions
    ("2026-02-02T00:00:00Z", ("business", 300_000)),
    ("2027-06-01T12:00:00Z", ("business", 300_000)),
    ("2025-12-31T23:59:59Z", Reason.NO_TARIFF),  # before the first
])
def test_tariff_of_the_plan_in_force_at_event_time(
    rater: Rater, when: str, expected: tuple[str, int] | Reason
) -> None:
    [outcome] = rater.rate([call(when)])
    if isinstance(expected, Reason):
        assert isinstance(outcome, Failure) and outcome.reason == expected
        assert outcome.account_id == "A1"
    else:
        assert isinstance(outcome, Charge)
        assert (outcome.tariff_id, outcome.amount_micros) == expected


def test_plans_naming_an_unknown_tariff_are_refused() -> None:
    from billing_oss.core.errors import CatalogError

    with pytest.raises(CatalogError, match="gold"):
        catalog_from_definitions("EUR", [tariff("retail", "1")], {"1": ("A1", "retail")},
                                 {"A1": [Plan(0, None, "gold")]})
