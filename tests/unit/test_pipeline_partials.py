"""Partial-record groups: completeness and the merge."""

from __future__ import annotations

import pytest

from billing_oss.core.closing_causes import BEARER_PARTIAL, CALL_PARTIAL
from billing_oss.core.money import format_outcome
from billing_oss.core.records import UsageRecord
from billing_oss.server.pipeline import partials


def part(seq: int, **attrs: object) -> UsageRecord:
    return UsageRecord(record_key=f"c1-{seq}", source="s", kind="data",
                       event_time=f"2026-01-15T10:0{seq}:00Z", volume_up=seq, volume_down=10 * seq,
                       msisdn="33611111111", partial_seq=seq, attrs={"charging_id": 42, **attrs})


def test_missing_parts() -> None:
    assert partials.missing([(1, False), (2, False)]) is None  # last not seen: unknown
    assert partials.missing([(1, False), (3, True)]) == [2]
    assert partials.missing([(2, False), (1, False), (3, True)]) == []


def test_last_part_from_flag_or_closing_cause() -> None:
    assert partials.is_last(part(1, partial_last=True))
    assert not partials.is_last(part(1, cause_for_record_closing="partialRecord"))
    assert partials.is_last(part(1, cause_for_record_closing="normalRelease"))
    assert not partials.is_last(part(1))


@pytest.mark.parametrize("cause", [16, "17", 18, 19, "19", "maxChangeCond", "servingNodeChange",
                                   26, "aPNAMBRChange", "partialRecordCallReestablishment"])
def test_every_more_parts_cause_keeps_the_group_open(cause: object) -> None:
    assert not partials.is_last(part(1, cause_for_record_closing=cause))


def test_the_pipeline_reads_closing_causes_as_the_3gpp_decoder_does() -> None:
    for number, name in BEARER_PARTIAL.items():
        assert not partials.is_last(part(1, cause_for_record_closing=number))
        assert not partials.is_last(part(1, cause_for_record_closing=name))
    for name in CALL_PARTIAL.values():
        assert not partials.is_last(part(1, cause_for_record_closing=name))
    for closing in (0, "0", 4, 5, 27, "abnormalRelease", True):
        assert partials.is_last(part(1, cause_for_record_closing=closing))


def test_merge_sums_counters_and_keeps_the_first_start() -> None:
    merged = partials.merge(partials.group_key(part(1)), [part(3), part(1), part(2)])
    assert merged.record_key == "42/merged" and merged.partial_seq is None
    assert (merged.volume_up, merged.volume_down) == (6, 60)
    assert merged.event_time == "2026-01-15T10:01:00Z"
    assert merged.attrs["partial_parts"] == ["c1-1", "c1-2", "c1-3"]


def test_decimal_strings_are_exact() -> None:
    assert format_outcome(1_234_500) == "1.2345"
    assert format_outcome(0) == "0.00"
    assert format_outcome(-5) == "-0.000005"
    assert format_outcome(2**63 - 1) == "9223372036854.775807"


def test_parts_from_two_gateways_with_one_charging_id_stay_apart() -> None:
    a = part(1, merge_key="pgw:10.0.0.1:42")
    b = part(1, merge_key="pgw:10.0.0.2:42")
    assert partials.group_key(a) != partials.group_key(b)
    assert partials.group_key(part(2, merge_key="pgw:10.0.0.1:42")) == partials.group_key(a)
