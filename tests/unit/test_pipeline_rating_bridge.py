"""The rating bridge reads charges straight from the native kernel's columns; it must say
exactly what the rater's own outcomes say, for charges and failures alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.raters import CatalogSnapshot, SubscriptionRow, VersionRow
from billing_oss.server.pipeline.rating_bridge import build_rater
from tests.conftest import REPO

DEMO = json.loads((REPO / "config/demo-catalog.json").read_text())
SNAPSHOT = CatalogSnapshot(
    generation=3,
    versions=[VersionRow(tariff_version_id=11, tariff_id="retail", currency="EUR",
                         effective_from=datetime(2026, 1, 1, tzinfo=UTC),
                         definition=DEMO["tariffs"][0]["versions"][0])],
    identifiers={"33611111111": "A1", "208011234567890": "A1"},
    subscriptions=[SubscriptionRow(account_id="A1", tariff_id="retail",
                                   valid_from=datetime(2026, 1, 1, tzinfo=UTC), valid_to=None)],
)
RATER = build_rater(SNAPSHOT)

records = st.builds(
    UsageRecord,
    record_key=st.text(min_size=1, max_size=8),
    source=st.just("t"),
    kind=st.sampled_from(["voice", "sms", "data", "event"]),
    event_time=st.sampled_from(["2026-01-14T10:00:00Z", "2026-01-17T23:59:59+01:00",
                                "2025-12-31T10:00:00Z", "not a time", "2026-03-29T01:30:00Z"]),
    duration_s=st.none() | st.integers(0, 10**6),
    volume_up=st.none() | st.integers(0, 10**9),
    volume_down=st.none() | st.integers(0, 10**9),
    calling=st.sampled_from([None, "33611111111", "33600000000"]),
    called=st.sampled_from([None, "", "33612345678", "4915112345", "999", "3361"]),
    msisdn=st.sampled_from([None, "33611111111", "1"]),
    imsi=st.sampled_from([None, "208011234567890"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=40))
def test_columns_path_equals_outcomes_path(batch: list[UsageRecord]) -> None:
    assert RATER._rate_columns(RATER._rater, batch) == RATER._rate_outcomes(batch)  # type: ignore[attr-defined]


def test_a_charge_names_the_stored_version() -> None:
    [charge] = RATER.rate([UsageRecord(record_key="k", source="t", kind="voice",
                                       event_time="2026-01-14T10:00:00Z", duration_s=60,
                                       calling="33611111111", called="33612345678")])
    assert charge.tariff_version_id == 11 and charge.zone == "national"  # type: ignore[union-attr]


def test_failures_name_the_values_behind_them() -> None:
    def voice(calling: str, called: str | None, when: str = "2026-01-14T10:00:00Z") -> UsageRecord:
        return UsageRecord(record_key="k", source="t", kind="voice", event_time=when,
                           duration_s=60, calling=calling, called=called)

    unknown, no_zone, no_tariff = RATER.rate([
        voice("33600000000", "33612345678"), voice("33611111111", "999"),
        voice("33611111111", "33612345678", when="2025-12-31T10:00:00Z")])
    assert unknown.detail == ("UNKNOWN_ACCOUNT: no account has the identifier "  # type: ignore[union-attr]
                              "(calling '33600000000')")
    assert no_zone.detail == "NO_ZONE: no zone prefix matches called '999'"  # type: ignore[union-attr]
    assert no_tariff.detail.startswith("NO_TARIFF: account A1 has no ")  # type: ignore[union-attr]
