"""Asterisk Master.csv and mapped CSV CDRs (adapters.formats.csvcdr)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from billing_oss.adapters.formats import decode_bytes
from billing_oss.adapters.formats.csvcdr import ASTERISK_TIME, _parse_time
from billing_oss.core.errors import Reason
from tests.conftest import VECTORS

MASTER = (
    '"","1001","33622222222","from-internal","""Alice"" <1001>","SIP/1001-0001",'
    '"SIP/trunk-0002","Dial","SIP/trunk/33622222222,60","2026-01-15 10:20:00",'
    '"2026-01-15 10:20:30","2026-01-15 10:22:05",125,95,"ANSWERED","DOCUMENTATION",'
    '"1768472400.1",""\n'
    '"","1002","100","from-internal","","SIP/1002-0003","","Dial","SIP/100",'
    '"2026-01-15 11:00:00","","2026-01-15 11:00:20",20,0,"NO ANSWER","DOCUMENTATION",'
    '"1768476000.2",""\n'
)


def test_asterisk_master_csv() -> None:
    decoded = decode_bytes("csv", MASTER.encode(), source="pbx")
    assert decoded.error is None and decoded.problems == []
    a, b = decoded.records
    assert (a.calling, a.called, a.duration_s) == ("1001", "33622222222", 95)
    assert a.event_time == "2026-01-15T10:20:30Z"  # answer column
    assert a.record_key.startswith("sha1:")  # 18 columns: no linkedid, the uniqueid repeats
    assert a.attrs["uniqueid"] == "1768472400.1"
    assert b.event_time == "2026-01-15T11:00:00Z"  # unanswered: start column
    assert b.duration_s == 0 and b.attrs["disposition"] == "NO ANSWER"


def test_source_timezone() -> None:
    decoded = decode_bytes("csv", MASTER.encode(), source="pbx",
                           options={"timezone": "Europe/Paris"})
    assert decoded.records[0].event_time == "2026-01-15T09:20:30Z"


def test_without_uniqueid_key_is_stable_hash() -> None:
    rows = [row[:16] for row in csv.reader(io.StringIO(MASTER))]
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    short = out.getvalue()
    one = decode_bytes("csv", short.encode(), source="pbx").records
    two = decode_bytes("csv", short.encode(), source="pbx").records
    assert one[0].record_key.startswith("sha1:") and one == two
    assert one[0].record_key != one[1].record_key


def test_custom_mapping_with_header() -> None:
    text = "id,from,to,begin,secs\nk1,331,332,2026-01-15T10:20:30,61\n"
    decoded = decode_bytes("csv", text.encode(), source="x", options={
        "columns": ["id", "from", "to", "begin", "secs"],
        "mapping": {"calling": "from", "called": "to", "duration_s": "secs",
                    "event_time": ["begin"], "record_key": "id"},
        "time_format": "%Y-%m-%dT%H:%M:%S",
    })
    assert decoded.problems == []
    (rec,) = decoded.records
    assert (rec.record_key, rec.calling, rec.called, rec.duration_s) == ("k1", "331", "332", 61)


def test_bad_line_is_a_problem_with_its_line_number() -> None:
    text = MASTER + (
        '"","1003","1","c","","SIP/x","","Dial","","garbage","","",1,x,"A","D","u3",""\n')
    decoded = decode_bytes("csv", text.encode(), source="pbx")
    assert len(decoded.records) == 2
    (problem,) = decoded.problems
    assert problem.offset == 3 and problem.reason is Reason.BAD_FIELD
    assert "line 3" in problem.detail


ASTERISK = VECTORS.parent / "asterisk"


def test_asterisk12_layout_by_column_count_keys_every_leg() -> None:
    decoded = decode_bytes("csv", (ASTERISK / "master_a13_forked.csv").read_bytes(),
                           source="pbx")
    assert decoded.problems == [] and len(decoded.records) == 9
    keys = [r.record_key for r in decoded.records]
    assert len(set(keys)) == 9 and keys[0] == "1768472400.16:40"
    assert sum(r.duration_s or 0 for r in decoded.records) == 420
    forked = [r for r in decoded.records if r.attrs["uniqueid"] == "1768472400.16"]
    assert [r.attrs["disposition"] for r in forked] == ["ANSWERED", "NO ANSWER"]
    assert decoded.records[6].attrs["linkedid"] == "1768474800.30"


def test_18_columns_with_repeated_uniqueid_keep_every_leg() -> None:
    decoded = decode_bytes("csv", (ASTERISK / "master_18_forked.csv").read_bytes(),
                           source="pbx")
    assert decoded.problems == [] and len(decoded.records) == 7
    assert len({r.record_key for r in decoded.records}) == 7
    assert all(r.record_key.startswith("sha1:") for r in decoded.records)
    assert sum(r.duration_s or 0 for r in decoded.records) == 348
    again = decode_bytes("csv", (ASTERISK / "master_18_forked.csv").read_bytes(),
                         source="pbx")
    assert [r.record_key for r in again.records] == [r.record_key for r in decoded.records]


def test_layouts_mix_per_line_and_other_counts_are_problems() -> None:
    new = (ASTERISK / "master_a13_forked.csv").read_text().splitlines()[0]
    header = ",".join(
        ["accountcode", "src", "dst", "dcontext", "clid", "channel", "dstchannel", "lastapp",
         "lastdata", "start", "answer", "end", "duration", "billsec", "disposition",
         "amaflags", "uniqueid", "userfield", "peeraccount", "linkedid", "sequence"])
    seven = '"","1003","1","c","","SIP/x","x"'
    text = "\n".join([header, MASTER.splitlines()[0], new, seven, ""])
    decoded = decode_bytes("csv", text.encode(), source="pbx")
    assert [r.attrs["line"] for r in decoded.records] == [2, 3]
    assert decoded.records[1].record_key == "1768472400.16:40"
    (problem,) = decoded.problems
    assert problem.offset == 4 and "7 columns" in problem.detail


@given(st.text(alphabet="0123456789 -:T.+", min_size=17, max_size=21)
       | st.datetimes().map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S")))
def test_fast_time_parse_accepts_what_strptime_accepts(text: str) -> None:
    def outcome(parse: Callable[[], dt.datetime]) -> dt.datetime | None:
        try:
            return parse()
        except ValueError:
            return None

    assert outcome(lambda: _parse_time(text, ASTERISK_TIME)) == outcome(
        lambda: dt.datetime.strptime(text, ASTERISK_TIME))
