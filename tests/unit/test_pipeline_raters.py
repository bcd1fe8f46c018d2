"""The pipeline's rater, built from stored rows: the native kernel must say exactly what the
reference says (charges, failures and their details), its charges cite the stored version,
and account changes reach it in place, without a rebuild."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from billing_oss.core.errors import Reason
from billing_oss.core.ports import Charge, Failure
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.raters import apply_account_rows, build_rater
from billing_oss.server.rating import Accounts, ReferenceRater
from billing_oss.server.store.rating_repo import AccountRows, SubscriptionRow, VersionRow
from tests.conftest import REPO

DEMO = json.loads((REPO / "config/demo-catalog.json").read_text())
JAN = datetime(2026, 1, 1, tzinfo=UTC)
VERSIONS = [VersionRow(tariff_version_id=11, tariff_id="retail", currency="EUR",
                       effective_from=JAN, definition=DEMO["tariffs"][0]["versions"][0])]


def subscribed(account_id: str) -> SubscriptionRow:
    return SubscriptionRow(account_id=account_id, tariff_id="retail", valid_from=JAN,
                           valid_to=None)


def directory() -> Accounts:
    accounts = Accounts()
    apply_account_rows(accounts, AccountRows(
        generation=1, changed=None,
        identifiers=[("33611111111", "A1"), ("208011234567890", "A1"), ("33622222222", "A2")],
        subscriptions=[subscribed("A1")]))  # A2 has no subscription: not resolved
    return accounts


ACCOUNTS = directory()
RATER = build_rater(VERSIONS, ACCOUNTS)
REFERENCE = ReferenceRater(RATER.catalog, accounts=ACCOUNTS,
                           version_ids={("retail", 1_767_225_600_000_000): 11})

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
    calling=st.sampled_from([None, "33611111111", "33600000000", "33622222222"]),
    called=st.sampled_from([None, "", "33612345678", "4915112345", "999", "3361"]),
    msisdn=st.sampled_from([None, "33611111111", "1"]),
    imsi=st.sampled_from([None, "208011234567890"]),
)


def voice(calling: str, called: str | None = "33612345678",
          when: str = "2026-01-14T10:00:00Z") -> UsageRecord:
    return UsageRecord(record_key="k", source="t", kind="voice", event_time=when,
                       duration_s=60, calling=calling, called=called)


@settings(max_examples=200, deadline=None)
@given(st.lists(records, max_size=40))
def test_native_says_what_the_reference_says(batch: list[UsageRecord]) -> None:
    assert RATER.rate(batch) == REFERENCE.rate(batch)


def test_a_charge_names_the_stored_version() -> None:
    [charge] = RATER.rate([voice("33611111111")])
    assert isinstance(charge, Charge)
    assert (charge.tariff_version_id, charge.zone) == (11, "national")
    assert (charge.tariff_id, charge.tariff_version) == ("retail", "retail@2026-01-01T00:00:00Z")


def test_failures_name_the_values_behind_them() -> None:
    unknown, no_zone, no_tariff, unsubscribed = RATER.rate([
        voice("33600000000"), voice("33611111111", "999"),
        voice("33611111111", when="2025-12-31T10:00:00Z"), voice("33622222222")])
    assert isinstance(unknown, Failure) and isinstance(no_zone, Failure)
    assert unknown.detail == ("UNKNOWN_ACCOUNT: no account has the identifier "
                              "(calling '33600000000')")
    assert no_zone.detail == "NO_ZONE: no zone prefix matches called '999'"
    assert isinstance(no_tariff, Failure) and no_tariff.detail.startswith(
        "NO_TARIFF: account A1 has no ")
    assert isinstance(unsubscribed, Failure) and unsubscribed.reason is Reason.UNKNOWN_ACCOUNT


def compiles() -> float:
    """Tariff compilations so far in this process."""
    value = REGISTRY.get_sample_value("billing_rating_compile_seconds_count")
    assert value is not None
    return value


def test_account_changes_reach_the_rater_in_place_without_a_compile() -> None:
    accounts = directory()
    rater = build_rater(VERSIONS, accounts)
    before = compiles()
    # B1 is new and takes A1's second identifier; A1 keeps its first; A2 gets a plan.
    apply_account_rows(accounts, AccountRows(
        generation=2, changed=["A1", "A2", "B1"],
        identifiers=[("33611111111", "A1"), ("33622222222", "A2"), ("33633333333", "B1"),
                     ("208011234567890", "B1")],
        subscriptions=[subscribed("A1"), subscribed("A2"), subscribed("B1")]))
    data = UsageRecord(record_key="d", source="t", kind="data",
                       event_time="2026-01-14T10:00:00Z", volume_up=1024,
                       imsi="208011234567890")
    outcomes = rater.rate([voice("33611111111"), voice("33622222222"), voice("33633333333"),
                           data])
    assert [o.account_id for o in outcomes] == ["A1", "A2", "B1", "B1"]
    assert all(isinstance(o, Charge) for o in outcomes), outcomes
    # B1 closed: its identifiers go; nobody else's do.
    apply_account_rows(accounts, AccountRows(generation=3, changed=["B1"], identifiers=[],
                                             subscriptions=[]))
    gone, kept = rater.rate([voice("33633333333"), voice("33611111111")])
    assert isinstance(gone, Failure) and gone.reason is Reason.UNKNOWN_ACCOUNT
    assert isinstance(kept, Charge) and kept.account_id == "A1"
    assert compiles() == before
