"""A delivery's outcome kept by column in source_offsets reads back as it was answered."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from billing_oss.core.contract import Counts, Outcome, RecordResult
from billing_oss.server.pipeline import stored_outcomes

_text = st.one_of(st.none(), st.sampled_from(["0.01", "EUR", "BAD_FIELD", "x"]), st.text())
results = st.builds(
    RecordResult, record_key=st.one_of(st.none(), st.text()),
    status=st.sampled_from(["charged", "suspense", "duplicate", "filtered", "pending"]),
    reason=_text, detail=_text, amount=_text, currency=_text)
outcomes = st.builds(Outcome, position=st.text(), replay=st.just(False),
                     counts=st.builds(Counts, charged=st.integers(0, 10**6)),
                     results=st.lists(results, max_size=30))


@given(outcomes)
def test_an_outcome_reads_back_the_same(outcome: Outcome) -> None:
    assert stored_outcomes.decode(stored_outcomes.encode(outcome)) == outcome


def test_a_message_of_charged_records_at_one_price_keeps_each_value_once() -> None:
    outcome = Outcome(position="p", replay=False, counts=Counts(in_=100, charged=100), results=[
        RecordResult(record_key=f"k-{i}", status="charged", amount="0.0158", currency="EUR")
        for i in range(100)])
    stored = stored_outcomes.encode(outcome)
    assert stored.count(b"0.0158") == 1 and stored.count(b"EUR") == 1
    assert len(stored) * 3 < len(msgspec.json.encode(outcome))
    assert stored_outcomes.decode(stored) == outcome


def test_an_outcome_stored_as_objects_still_reads() -> None:
    outcome = Outcome(position="p", replay=False, counts=Counts(in_=2, charged=1, suspense=1),
                      results=[RecordResult(record_key="a", status="charged", amount="0.01",
                                            currency="EUR"),
                               RecordResult(record_key="b", status="suspense",
                                            reason="UNKNOWN_ACCOUNT", detail="no account")])
    assert stored_outcomes.decode(msgspec.json.encode(outcome)) == outcome
