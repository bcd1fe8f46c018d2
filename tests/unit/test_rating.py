"""Rating semantics (DESIGN.md §5) on both raters, and the kernel held equal to the reference."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure, Rater
from billing_oss.core.records import UsageRecord
from billing_oss.server.catalog import Catalog, catalog_from_dict
from billing_oss.server.rating import NativeRater, ReferenceRater
from tests.unit.rating_cases import scenarios

RATERS: list[Callable[[Catalog], Rater]] = [ReferenceRater, NativeRater]

BASE: dict[str, Any] = {
    "currency": "EUR",
    "tariffs": [
        {
            "id": "retail",
            "versions": [
                {
                    "effective_from": "2026-01-01T00:00:00Z",
                    "timezone": "Europe/Paris",
                    "zones": {"national": ["3361", "3362"], "mobile": ["336"], "de": ["49"]},
                    "time_bands": [
                        {
                            "name": "peak",
                            "days": ["mon", "tue", "wed", "thu", "fri"],
                            "from": "08:00",
                            "to": "20:00",
                        },
                        {"name": "night", "from": "02:00", "to": "03:00"},
                        {"name": "offpeak", "default": True},
                    ],
                    "rates": [
                        {
                            "kind": "voice",
                            "zone": "national",
                            "band": "peak",
                            "connect_fee": "0.10",
                            "steps": [
                                {"from": 0, "price": "0.20", "unit": 60, "increment": 60},
                                {"from": 60, "price": "0.10", "unit": 60, "increment": 1},
                            ],
                            "minimum_charge": "0.15",
                            "maximum_charge": None,
                            "rounding": {"decimals": 4, "method": "half-up"},
                        },
                        {
                            "kind": "voice",
                            "zone": "national",
                            "band": "*",
                            "connect_fee": "0",
                            "steps": [{"from": 0, "price": "0.06", "unit": 60, "increment": 1}],
                        },
                        {
                            "kind": "voice",
                            "zone": "*",
                            "band": "night",
                            "connect_fee": "0",
                            "steps": [{"from": 0, "price": "0.01", "unit": 60, "increment": 60}],
                        },
                        {
                            "kind": "sms",
                            "zone": "*",
                            "band": "*",
                            "connect_fee": "0",
                            "steps": [{"from": 0, "price": "0.05", "unit": 1, "increment": 1}],
                        },
                        {
                            "kind": "data",
                            "zone": "*",
                            "band": "*",
                            "connect_fee": "0",
                            "steps": [
                                {"from": 0, "price": "0.01", "unit": 1048576, "increment": 1024}
                            ],
                            "maximum_charge": "5",
                        },
                    ],
                },
                {
                    "effective_from": "2026-07-01T00:00:00+02:00",
                    "timezone": "Europe/Paris",
                    "zones": {"national": ["336"]},
                    "rates": [
                        {
                            "kind": "voice",
                            "zone": "national",
                            "band": "*",
                            "connect_fee": "0",
                            "steps": [{"from": 0, "price": "1", "unit": 1, "increment": 1}],
                        }
                    ],
                },
            ],
        }
    ],
    "accounts": [
        {"id": "A1", "identifiers": ["33611111111", "208011234567890"], "tariff": "retail"}
    ],
}


@pytest.fixture(params=RATERS, ids=["reference", "native"])
def rater(request: pytest.FixtureRequest) -> Rater:
    factory: Callable[[Catalog], Rater] = request.param
    return factory(catalog_from_dict(BASE))


def voice(
    when: str, seconds: int | None, called: str | None = "33612345678", calling: str = "33611111111"
) -> UsageRecord:
    return UsageRecord(
        record_key="k",
        source="t",
        kind="voice",
        event_time=when,
        duration_s=seconds,
        calling=calling,
        called=called,
    )


def one(rater: Rater, record: UsageRecord) -> Charge | Failure:
    [outcome] = rater.rate([record])
    return outcome


def amount(rater: Rater, record: UsageRecord) -> int:
    outcome = one(rater, record)
    assert isinstance(outcome, Charge), outcome
    return outcome.amount_micros


def reason(rater: Rater, record: UsageRecord) -> Reason:
    outcome = one(rater, record)
    assert isinstance(outcome, Failure), outcome
    return outcome.reason


def test_steps_connect_fee_and_per_call_rounding(rater: Rater) -> None:
    # 0.10 + 60 s at 0.20/min + 1 s at 0.10/min = 0.3016666.. -> 0.3017 (4 decimals, half-up)
    outcome = one(rater, voice("2026-01-15T10:20:30Z", 61))
    assert isinstance(outcome, Charge)
    assert outcome.amount_micros == 301_700
    assert (outcome.zone, outcome.band, outcome.tariff_version) == (
        "national",
        "peak",
        "retail@2026-01-01T00:00:00Z",
    )
    assert (outcome.account_id, outcome.currency) == ("A1", "EUR")


def test_first_increment_is_billed_whole_and_minimum_applies(rater: Rater) -> None:
    # 1 s rounds up to the 60 s increment: 0.10 + 0.20 = 0.30
    assert amount(rater, voice("2026-01-15T10:00:00Z", 1)) == 300_000


def test_zero_usage_costs_nothing_not_the_connect_fee(rater: Rater) -> None:
    assert amount(rater, voice("2026-01-15T10:00:00Z", 0)) == 0


def test_band_uses_local_time_of_the_version(rater: Rater) -> None:
    # 07:30 UTC is 08:30 in Paris (winter): peak. 19:30 UTC is 20:30: offpeak ("*" rate).
    assert one(rater, voice("2026-01-15T07:30:00Z", 60)).band == "peak"  # type: ignore[union-attr]
    late = one(rater, voice("2026-01-15T19:30:00Z", 60))
    assert isinstance(late, Charge) and late.band == "offpeak"
    assert late.amount_micros == 60_000


def test_band_on_spring_forward_day(rater: Rater) -> None:
    # 2026-03-29 Paris jumps 02:00 -> 03:00 at 01:00 UTC. 00:30 UTC = 01:30 local (offpeak),
    # 01:30 UTC = 03:30 local: the "night" band 02:00-03:00 never happens that day.
    assert one(rater, voice("2026-03-29T00:30:00Z", 60)).band == "offpeak"  # type: ignore[union-attr]
    assert one(rater, voice("2026-03-29T01:30:00Z", 60)).band == "offpeak"  # type: ignore[union-attr]
    assert one(rater, voice("2026-03-28T01:30:00Z", 60)).band == "night"  # type: ignore[union-attr]
    assert one(rater, voice("2026-03-30T00:30:00Z", 60)).band == "night"  # type: ignore[union-attr]


def test_longest_prefix_and_rate_precedence(rater: Rater) -> None:
    # 3361... is national (longer than mobile 336); national+peak beats national+*;
    # mobile has no voice rate of its own except "*"+night.
    assert one(rater, voice("2026-01-15T10:00:00Z", 60, called="33623")).zone == "national"  # type: ignore[union-attr]
    assert reason(rater, voice("2026-01-15T10:00:00Z", 60, called="33655")) == Reason.NO_RATE
    night = one(rater, voice("2026-01-15T01:30:00Z", 60, called="33655"))
    assert isinstance(night, Charge) and (night.zone, night.band) == ("mobile", "night")
    assert reason(rater, voice("2026-01-15T10:00:00Z", 60, called="44")) == Reason.NO_ZONE
    assert reason(rater, voice("2026-01-15T10:00:00Z", 60, called=None)) == Reason.NO_ZONE


def test_version_effective_at_event_time(rater: Rater) -> None:
    assert reason(rater, voice("2025-12-31T23:59:59Z", 60)) == Reason.NO_TARIFF
    before = one(rater, voice("2026-06-30T21:59:59Z", 10))
    after = one(rater, voice("2026-06-30T22:00:00Z", 10))
    assert isinstance(before, Charge) and before.tariff_version == "retail@2026-01-01T00:00:00Z"
    assert isinstance(after, Charge) and after.tariff_version == "retail@2026-06-30T22:00:00Z"
    assert after.amount_micros == 10_000_000


def test_unknown_account_and_bad_fields(rater: Rater) -> None:
    assert reason(rater, voice("2026-01-15T10:00:00Z", 60, calling="0")) == Reason.UNKNOWN_ACCOUNT
    assert reason(rater, voice("2026-01-15T10:00:00Z", None)) == Reason.BAD_FIELD
    assert reason(rater, voice("not a time", 60)) == Reason.BAD_FIELD


def test_data_without_called_uses_wildcard_zone_and_maximum(rater: Rater) -> None:
    record = UsageRecord(
        record_key="d",
        source="t",
        kind="data",
        event_time="2026-01-15T10:00:00Z",
        volume_up=1_000_000,
        volume_down=48_576,
        imsi="208011234567890",
    )
    outcome = one(rater, record)
    assert isinstance(outcome, Charge) and outcome.zone is None
    assert outcome.amount_micros == 10_000  # exactly 1 MiB at 0.01
    huge = UsageRecord(
        record_key="h",
        source="t",
        kind="data",
        event_time="2026-01-15T10:00:00Z",
        volume_down=10**13,
        msisdn="33611111111",
    )
    assert amount(rater, huge) == 5_000_000


def test_overflow_is_reported_not_wrapped() -> None:
    data = copy.deepcopy(BASE)
    data["tariffs"][0]["versions"][0]["rates"][4] = {
        "kind": "data",
        "zone": "*",
        "band": "*",
        "steps": [{"from": 0, "price": "9000000000000", "unit": 1, "increment": 1}],
    }
    for factory in RATERS:
        rater = factory(catalog_from_dict(data))
        record = UsageRecord(
            record_key="o",
            source="t",
            kind="data",
            event_time="2026-01-15T10:00:00Z",
            volume_up=10**13,
            imsi="208011234567890",
        )
        assert reason(rater, record) == Reason.OVERFLOW
        record = UsageRecord(
            record_key="o",
            source="t",
            kind="data",
            event_time="2026-01-15T10:00:00Z",
            volume_up=1,
            imsi="208011234567890",
        )
        assert amount(rater, record) == 9 * 10**18


@pytest.mark.parametrize(
    ("method", "expected"),
    [("half-up", [1, 2, 3]), ("half-even", [0, 2, 2]), ("up", [1, 2, 3]), ("down", [0, 1, 2])],
)
def test_rounding_methods(method: str, expected: list[int]) -> None:
    data = copy.deepcopy(BASE)
    data["tariffs"][0]["versions"][0]["rates"][3] = {
        "kind": "sms",
        "zone": "*",
        "band": "*",
        "steps": [{"from": 0, "price": "0.5", "unit": 1, "increment": 1}],
        "rounding": {"decimals": 0, "method": method},
    }
    for fee, want in zip(("0", "1", "2"), expected, strict=True):
        data["tariffs"][0]["versions"][0]["rates"][3]["connect_fee"] = fee
        for factory in RATERS:
            rater = factory(catalog_from_dict(data))
            record = UsageRecord(
                record_key="s",
                source="t",
                kind="sms",
                event_time="2026-01-15T10:00:00Z",
                calling="33611111111",
                called="49",
            )
            assert amount(rater, record) == want * 1_000_000, (method, fee, factory)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_kernel_agrees_with_reference(scenario: tuple[dict[str, Any], list[UsageRecord]]) -> None:
    catalog, batch = scenario
    checked = catalog_from_dict(catalog)
    expected = ReferenceRater(checked).rate(batch)
    assert NativeRater(checked).rate(batch) == expected


@settings(max_examples=100, deadline=None)
@given(
    prefixes=st.lists(
        st.text("0129", min_size=1, max_size=18), min_size=1, max_size=40, unique=True
    ),
    numbers=st.lists(st.text("0129x", max_size=22), min_size=1, max_size=40),
)
def test_lpm_matches_longest_prefix(prefixes: list[str], numbers: list[str]) -> None:
    from array import array

    from billing_oss.native.rating import Lpm

    lpm = Lpm(prefixes, array("i", range(len(prefixes))))
    for number in numbers:
        matches = [i for i, p in enumerate(prefixes) if number.startswith(p)]
        best = max(matches, key=lambda i: len(prefixes[i])) if matches else -1
        assert lpm.lookup(number.encode()) == (best if number else -2)
