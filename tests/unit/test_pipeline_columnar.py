"""The columnar path of 3GPP ingest against its twin, the object path (prepare + build_rows).

Generated 32.297 files (calls, SMS, packet records, partial parts, decode rejects, records
repeated inside a batch, missing optional fields), rated against the demo tariffs with
accounts drawn from the records' own numbers: both paths must give the same COPY payloads
byte for byte, the same suspense rows, statuses, counts and totals.
"""

from __future__ import annotations

import io
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_oss.adapters.formats.threegpp import Cdr3gppFile, NativeChunk
from billing_oss.core.ports import Rater
from billing_oss.native import columnar as native
from billing_oss.native._records import RecordBatch
from billing_oss.server.catalog.loader import catalog_from_dict
from billing_oss.server.catalog.model import Account, Plan
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.pipeline import writer
from billing_oss.server.pipeline.batch import WriteBatch, prepare
from billing_oss.server.pipeline.columnar import prepare_columns
from billing_oss.server.pipeline.rows import build_rows
from billing_oss.server.rating import Accounts, NativeRater
from billing_oss.server.store import copy_payload
from tests.generators.threegpp_files import encode_record, write_3gpp_file
from tests.unit.cdr_strategies import records

REPO = Path(__file__).resolve().parents[2]
CATALOG = catalog_from_dict(read_catalog_file(REPO / "config" / "demo-catalog.json"))
SOURCE = "msc-1"
FILE_ID = 42


def _position(start: int) -> Any:
    return lambda index: f"f.cdr#{start + index}"


def _object_path(items: list[Any], rater: Rater, start: int, ids: list[int]) -> WriteBatch:
    batch = prepare(items, rater, SOURCE, _position(start))
    batch.rows = build_rows(batch, ids, FILE_ID)
    return batch


def _rater(identifiers: list[str]) -> NativeRater:
    rater = NativeRater(CATALOG)
    plan = "retail"
    rater.accounts = Accounts({ident: Account(f"acct-{i % 3}", plan)
                               for i, ident in enumerate(identifiers)})
    return rater


def _chunks(data: bytes, batch_size: int) -> tuple[list[NativeChunk], list[list[Any]]]:
    columns = list(Cdr3gppFile(io.BytesIO(data), source=SOURCE, size=len(data),
                               batch_size=batch_size).column_batches())
    objects = [chunk.objects() for chunk in columns]
    return columns, objects


def _settled(batch: WriteBatch) -> tuple[dict[str, int], dict[str, int], list[Any]]:
    """Counts, totals and per-entry statuses once every key is claimed (the writer's rule)."""
    assert batch.rows is not None
    batch.reset()
    writer.settle(batch, batch.rows)
    writer._count(batch)
    return batch.counts, batch.totals, [(e.position, e.status) for e in batch.entries
                                       if e.status != "charged"]


def assert_same(columnar: WriteBatch, objects: WriteBatch) -> None:
    a, b = columnar.rows, objects.rows
    assert a is not None and b is not None
    assert a.usage_columns == b.usage_columns
    assert a.payloads == b.payloads
    assert list(a.keys) == list(b.keys)
    assert list(a.usage) == list(b.usage)
    assert list(a.charges) == list(b.charges)
    assert a.suspense + a.rejects == b.suspense + b.rejects
    assert a.totals == b.totals
    assert Counter(a.rollup.daily) == Counter(b.rollup.daily)
    assert Counter(a.rollup.monthly) == Counter(b.rollup.monthly)
    assert Counter(a.rollup.hourly) == Counter(b.rollup.hourly)
    assert columnar.size == objects.size
    assert writer.months(columnar) == writer.months(objects)
    assert _settled(columnar) == _settled(objects)


def _identifiers(values: list[dict[str, Any]], pick: list[bool]) -> list[str]:
    out = []
    for v, take in zip(values, pick, strict=False):
        if take:
            out += [v[k] for k in ("callingNumber", "servedMSISDN", "servedIMSI") if k in v]
    return out


# 2026-01-01 .. 2030: after the demo tariff takes effect, so that most records are charged
_RATED_TIMES = st.tuples(st.integers(1_767_225_600, 1_900_000_000), st.sampled_from([0, 60]))


@st.composite
def chargeable(draw: Any) -> tuple[str, dict[str, Any]]:
    """A record of ``records()`` that the demo tariff prices, most of the time."""
    name, v = draw(records())
    for key in ("answerTime", "seizureTime", "recordOpeningTime", "originationTime",
                "deliveryTime"):
        if key in v and draw(st.integers(0, 9)):
            v[key] = draw(_RATED_TIMES)
    if name == "moCallRecord" and draw(st.integers(0, 9)):
        v["calledNumber"] = "336" + draw(st.text("0123456789", min_size=1, max_size=9))
    if "sequenceNumber" in v and draw(st.integers(0, 3)):
        del v["sequenceNumber"]
    if "recordSequenceNumber" in v and draw(st.integers(0, 3)):
        del v["recordSequenceNumber"]
    return name, v


@st.composite
def files(draw: Any) -> tuple[bytes, list[str], int]:
    drawn = draw(st.lists(chargeable(), min_size=1, max_size=10))
    encoded = [encode_record(name, v) for name, v in drawn]
    # repeats inside the file (a key twice in a batch) and records the decoder refuses
    for _ in range(draw(st.integers(0, 2))):
        encoded.insert(draw(st.integers(0, len(encoded))),
                       encoded[draw(st.integers(0, len(encoded) - 1))])
    if draw(st.booleans()):
        encoded.insert(draw(st.integers(0, len(encoded))), b"\xa0\x03\x80\x01\x00")
    pick = draw(st.lists(st.integers(0, 7).map(bool), min_size=len(drawn),
                         max_size=len(drawn)))
    buf = io.BytesIO()
    write_3gpp_file(buf, encoded, sequence_number=1)
    return buf.getvalue(), _identifiers([v for _, v in drawn], pick), draw(st.integers(1, 6))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files())
def test_columnar_path_matches_the_object_path(case: tuple[bytes, list[str], int]) -> None:
    data, identifiers, batch_size = case
    rater = _rater(identifiers)
    columns, objects = _chunks(data, batch_size)
    start = 0
    for chunk, items in zip(columns, objects, strict=True):
        ids = list(range(1000 + start, 1000 + start + len(items)))
        assert_same(prepare_columns(chunk, rater, SOURCE, _position(start), ids, FILE_ID),
                     _object_path(items, rater, start, ids))
        start += len(items)


def _plain_calls(n: int) -> list[bytes]:
    base = {"recordType": 0, "servedIMSI": "208011234567890", "callingNumber": "33611111111",
            "calledNumber": "33612345678", "recordingEntity": "33609000001",
            "answerTime": (1767600000, 60), "callDuration": 61, "causeForTerm": 0}
    return [encode_record("moCallRecord", {**base, "callReference": i.to_bytes(4, "big")})
            for i in range(n)]


def _file(records_: list[bytes]) -> bytes:
    buf = io.BytesIO()
    write_3gpp_file(buf, records_, sequence_number=1)
    return buf.getvalue()


def test_a_plan_change_inside_a_batch_rates_each_record_on_its_plan() -> None:
    """Accounts on one tariff are resolved once per batch; an account with a subscription
    history is resolved record by record, on the plan in force at each event."""
    switch_us = 1767600000 * 10**6 + 30 * 10**6  # the fourth call answers after the switch
    rater = NativeRater(CATALOG)
    moved = Account("acct-moved", None, (Plan(0, switch_us, "retail"),
                                         Plan(switch_us, None, "business")))
    rater.accounts = Accounts({"33611111111": moved})
    calls = [encode_record("moCallRecord", {
        "recordType": 0, "servedIMSI": "208011234567890", "callingNumber": "33611111111",
        "calledNumber": "33612345678", "recordingEntity": "33609000001",
        "answerTime": (1767600000 + 10 * i, 60), "callDuration": 61, "causeForTerm": 0,
        "callReference": i.to_bytes(4, "big")}) for i in range(6)]
    (chunk,), (items,) = _chunks(_file(calls), 16)
    ids = list(range(1, 7))
    columns = prepare_columns(chunk, rater, SOURCE, _position(0), ids, FILE_ID)
    assert_same(columns, _object_path(items, rater, 0, ids))
    carried = columns.carried
    assert carried is not None and carried.count == 6
    business, retail = (rater.compiled.tariff_index[t] for t in ("business", "retail"))
    assert list(carried.tariff) == [retail] * 3 + [business] * 3


def test_plain_records_are_carried_and_the_rest_are_objects() -> None:
    recs = _plain_calls(5)
    recs.insert(2, b"\xa0\x03\x80\x01\x00")  # a record the decoder refuses
    rater = _rater(["33611111111"])
    (chunk,), (items,) = _chunks(_file(recs), 16)
    ids = list(range(1, 7))
    batch = prepare_columns(chunk, rater, SOURCE, _position(0), ids, FILE_ID)
    assert batch.carried is not None and batch.carried.count == 5
    assert len(batch.entries) == 1 and batch.entries[0].record is None
    assert_same(batch, _object_path(items, rater, 0, ids))


def test_a_key_twice_in_a_batch_goes_the_object_path() -> None:
    recs = _plain_calls(3)
    rater = _rater(["33611111111"])
    (chunk,), (items,) = _chunks(_file([*recs, recs[1]]), 16)
    ids = list(range(1, 5))
    batch = prepare_columns(chunk, rater, SOURCE, _position(0), ids, FILE_ID)
    assert batch.carried is None
    assert_same(batch, _object_path(items, rater, 0, ids))
    assert batch.rows is not None and len(batch.rows.duplicates) == 1


def test_expand_gives_the_object_path_with_the_same_usage_ids() -> None:
    rater = _rater(["33611111111"])
    (chunk,), (items,) = _chunks(_file(_plain_calls(4)), 16)
    ids = [7, 9, 11, 13]
    batch = prepare_columns(chunk, rater, SOURCE, _position(0), ids, FILE_ID)
    assert batch.carried is not None
    batch.expand()
    assert batch.carried is None and len(batch.entries) == 4
    assert batch.rows is not None
    assert [key[4] for key in batch.rows.keys] == ids
    assert batch.rows.payloads == _object_path(items, rater, 0, ids).rows.payloads  # type: ignore[union-attr]


def test_too_few_usage_ids_is_an_error() -> None:
    rater = _rater(["33611111111"])
    (chunk,), _ = _chunks(_file(_plain_calls(3)), 16)
    with pytest.raises(ValueError, match="usage ids"):
        prepare_columns(chunk, rater, SOURCE, _position(0), [1, 2], FILE_ID)


def test_payload_decode_reads_back_what_encode_wrote() -> None:
    rows = [("a", None, 5, 2**62), ("ü", "x", -1, 0)]
    assert copy_payload.decode(copy_payload.encode(rows, "ttqq"), "ttqq") == rows


def test_native_steps_refuse_short_columns_and_bad_tables() -> None:
    batch = RecordBatch(4)
    n = 1
    from billing_oss.native import cdr3gpp
    data = _file(_plain_calls(1))
    header = cdr3gpp.parse_file_header(data)["header_length"]
    cdr3gpp.decode_cdrs(data, header, batch, 0, True, True)
    assert len(batch) == n
    with pytest.raises(ValueError):
        native.classify(batch, bytearray(0), array("q"), bytearray(0), array("q"),
                        bytearray(0), 8)
    with pytest.raises(ValueError):
        native.render_keys(batch, bytearray(1), array("q"))
    with pytest.raises(ValueError):
        native.duplicates(b"", array("q", [0, 5]), bytearray(1), [])
    role = bytearray([1])
    with pytest.raises(ValueError, match="version or tariff"):
        native.encode(batch, role, array("q", [1]), [], b"s", b"k", array("q", [0, 1]),
                      array("i", [0]), native.Names(["a"]), array("i", [5]), array("i", [0]),
                      array("i", [0]), array("i", [0]), array("q", [1]), array("q", [1]),
                      array("i", [0]), array("i", [0]), native.Names(["EUR"]),
                      native.Names(["z"]), native.Names(["b"]), 0, None)
    with pytest.raises(ValueError, match="object key rows"):
        native.encode(batch, bytearray([2]), array("q", [1]), [], b"s", b"", array("q", [0, 0]),
                      array("i", [0]), native.Names([]), array("i", [0]), array("i", [0]),
                      array("i", [0]), array("i", [0]), array("q", [1]), array("q", [1]),
                      array("i", [0]), array("i", [0]), native.Names(["EUR"]),
                      native.Names([]), native.Names([]), 0, None)


def _decoded(recs: list[bytes]) -> RecordBatch:
    from billing_oss.native import cdr3gpp

    data = _file(recs)
    batch = RecordBatch(8)
    cdr3gpp.decode_cdrs(data, cdr3gpp.parse_file_header(data)["header_length"], batch, 0,
                        True, True)
    return batch


def test_native_steps_refuse_a_record_they_cannot_carry() -> None:
    batch = _decoded([b"\xa0\x03\x80\x01\x00"])  # refused by the decoder: no strings to read
    role = bytearray([1])
    with pytest.raises(ValueError, match="cannot be carried"):
        native.render_keys(batch, role, array("q", [0, 0]))
    with pytest.raises(ValueError, match="cannot be carried"):
        native.resolve(batch, role, array("q", [0]), {}, {}, array("i", [0]), array("i", [0]),
                       [])
    with pytest.raises(ValueError, match="out of order"):
        native.duplicates(b"abc", array("q", [2, 1]), bytearray([1]), [])
    with pytest.raises(TypeError):
        native.duplicates(b"", array("q", [0, 0]), bytearray([0]), ["not bytes"])  # type: ignore[list-item]
