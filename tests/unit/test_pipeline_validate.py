"""Record validation: every problem is BAD_FIELD and names its field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing_oss.core.errors import Reason
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline.validate import validate


def record(**fields: object) -> UsageRecord:
    base: dict[str, object] = {"record_key": "k1", "source": "s", "kind": "voice",
                               "event_time": "2026-01-15T10:20:30Z", "duration_s": 61,
                               "calling": "33611111111", "called": "4930123"}
    base.update(fields)
    return UsageRecord(**base)  # type: ignore[arg-type]


def test_valid_record_gets_its_utc_time() -> None:
    when, problem = validate(record(event_time="2026-01-15T11:20:30+01:00"))
    assert problem is None and when == datetime(2026, 1, 15, 10, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize(("fields", "field"), [
    ({"record_key": ""}, "record_key"),
    ({"record_key": "x" * 300}, "record_key"),
    ({"event_time": "2026-01-15T10:20:30"}, "event_time"),
    ({"event_time": "yesterday"}, "event_time"),
    ({"event_time": "1970-01-01T00:00:00Z"}, "event_time"),
    ({"duration_s": -1}, "duration_s"),
    ({"duration_s": None}, "duration_s"),
    ({"volume_up": 2**63}, "volume_up"),
    ({"calling": "+33611"}, "calling"),
    ({"called": "٣٣٦"}, "called"),  # non-ASCII digits
    ({"charge": "1e400x"}, "charge"),
    ({"charge": "NaN"}, "charge"),
    ({"quantity": "abc"}, "quantity"),
    ({"charge": "1e999999"}, "charge"),  # finite, but no numeric column takes it
    ({"charge": "0e999999"}, "charge"),
    ({"charge": "1000000000000000"}, "charge"),
    ({"quantity": "1e-1001"}, "quantity"),  # more decimals than any sender writes
    ({"quantity": "1e-999999"}, "quantity"),
    ({"record_key": "k\x00"}, "record_key"),
    ({"source": "s" * 300}, "source"),
    ({"source": "s\x00"}, "source"),
    ({"unit": "\x00"}, "unit"),
    ({"attrs": {"a": [{"b": "\x00"}]}}, "attrs"),
    ({"attrs": {"\x00": 1}}, "attrs"),
    ({"partial_seq": 1, "attrs": {"charging_id": "c" * 300}}, "attrs.charging_id"),
    ({"partial_seq": 0}, "partial_seq"),
    ({"kind": "data", "duration_s": None}, "volume_up"),
])
def test_bad_fields_are_named(fields: dict[str, object], field: str) -> None:
    _, problem = validate(record(**fields))
    assert problem is not None and problem.reason == Reason.BAD_FIELD
    assert problem.detail.startswith(f"{field}:")


@pytest.mark.parametrize("fields", [
    {"charge": "999999999999999.999999"}, {"charge": "-1.5"}, {"charge": "1e3"},
    {"quantity": "0.000000000001"}, {"attrs": {"a": ["b", 1, None]}},
    # a meter difference of JSON floats, a network's charge of 7 places, trailing zeros
    {"quantity": "34.5600000000002"}, {"charge": "0.0012345"}, {"charge": "1.5000000"},
    {"record_key": "k" * 256},
])
def test_edge_values_that_fit_are_valid(fields: dict[str, object]) -> None:
    assert validate(record(**fields))[1] is None
