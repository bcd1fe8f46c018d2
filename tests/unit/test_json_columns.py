"""The columnar path of MQTT/HTTP deliveries against its twin, the object path.

Generated JSON payloads (valid records, invalid fields, odd types, nested and unicode
attrs, keys repeated, records of kinds and fields the columns leave alone), decoded as the
transports decode them, committed in groups of deliveries: where the columnar path carries
the commit, its rows, COPY payloads, charges, rollup deltas, totals, months and per-delivery
outcomes must equal the object path's exactly; where it declines, the object path must
have had a reason (a record not charged, a reject, a key twice, a field it leaves alone).
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_oss.adapters import intake
from billing_oss.core.contract import Delivery
from billing_oss.core.ports import Charge
from billing_oss.server.catalog.loader import catalog_from_dict
from billing_oss.server.catalog.model import Account, Plan
from billing_oss.server.composition import read_catalog_file
from billing_oss.server.pipeline import deliveries, json_columns, writer
from billing_oss.server.pipeline.batch import WriteBatch
from billing_oss.server.rating import Accounts, NativeRater

REPO = Path(__file__).resolve().parents[2]
_DEFINITION = read_catalog_file(REPO / "config" / "demo-catalog.json")
# A second version from June: a commit spanning both rates each record at its own version.
_second = copy.deepcopy(_DEFINITION["tariffs"][0]["versions"][0])
_second["effective_from"] = "2026-06-01T00:00:00Z"
for _rate in _second["rates"]:
    _rate["connect_fee"] = "0.07"
_DEFINITION["tariffs"][0]["versions"].append(_second)
CATALOG = catalog_from_dict(_DEFINITION)
KNOWN = ["33611111111", "33622222222", "208011234567890", "33633333333"]
_JUNE_US = 1_780_272_000_000_000  # 2026-06-01T00:00:00Z


def _rater() -> NativeRater:
    rater = NativeRater(CATALOG)
    rater.accounts = Accounts({
        KNOWN[0]: Account("acct-0", "retail"),
        KNOWN[1]: Account("acct-1", "retail"),
        KNOWN[2]: Account("acct-2", "retail"),
        # on the tariff only from June: earlier records are NO_TARIFF
        KNOWN[3]: Account("acct-3", "retail", (Plan(_JUNE_US, None, "retail"),)),
    })
    return rater


_TIMES = st.sampled_from([
    "2026-03-02T10:00:00Z", "2026-03-07T23:30:00+02:00", "2026-06-01T00:00:00Z",
    "2026-07-14T08:15:30.250Z", "2026-12-31T23:59:59-05:00", "2025-12-31T23:00:00Z",
    "1989-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2099-12-31T23:59:59+00:00",
    "2026-03-02T10:00:00", "not a time", "2026-03-02T10:00:00Z\x00", "",
])
_NUMBERS = st.one_of(
    st.sampled_from(KNOWN), st.sampled_from(["33612345678", "4930123456", "99999", "1"]),
    st.text("0123456789", min_size=1, max_size=40), st.sampled_from(["", "12a", "٣٣٦", "x"]))
_ATTR_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=6),
              st.sampled_from(["é", "日本", "\x00", "\\u0000", "😀"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=6)
_CLEAN_ATTRS = st.dictionaries(st.text(max_size=5), st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=6).filter(
        lambda text: "\x00" not in text and "\\" not in text)),
    lambda inner: st.lists(inner, max_size=3), max_leaves=4), max_size=4)


@st.composite
def record(draw: Any, index: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["voice", "voice", "sms", "data", "data", "event", None]))
    out: dict[str, Any] = {"record_key": draw(st.one_of(
        st.just(f"k{index}"), st.sampled_from(["k0", "k1", "", "a\x00b", "ключ", "x" * 257])))}
    if kind is not None:
        out["kind"] = kind
    out["event_time"] = draw(_TIMES) if draw(st.integers(0, 5)) else "2026-03-02T10:00:00Z"
    counters = st.one_of(st.integers(0, 10**5), st.sampled_from([0, -1, 2**63 - 1, 2**63]))
    if kind == "voice" or draw(st.integers(0, 6)) == 0:
        if draw(st.integers(0, 12)):
            out["duration_s"] = draw(counters)
    if kind == "data" or draw(st.integers(0, 6)) == 0:
        for name in ("volume_up", "volume_down"):
            if draw(st.integers(0, 4)):
                out[name] = draw(counters)
    for name in ("calling", "called", "msisdn", "imsi"):
        if draw(st.integers(0, 2)):
            out[name] = draw(_NUMBERS)
    if draw(st.integers(0, 15)) == 0:
        name = draw(st.sampled_from(["quantity", "unit", "charge", "partial_seq"]))
        out[name] = 2 if name == "partial_seq" else "1.5"
    if draw(st.integers(0, 3)) == 0:
        out["attrs"] = draw(st.dictionaries(st.text(max_size=5), _ATTR_VALUES, max_size=4))
    if draw(st.integers(0, 30)) == 0:  # a wrong type: the decoder rejects the entry
        out[draw(st.sampled_from(["duration_s", "calling", "attrs"]))] = [1]
    return out


@st.composite
def chargeable(draw: Any, index: int) -> dict[str, Any]:
    """A record the demo tariff prices (most of the commits the columns must carry)."""
    kind = draw(st.sampled_from(["voice", "sms", "data"]))
    out: dict[str, Any] = {"record_key": f"k{index}", "kind": kind,
                           "event_time": draw(st.sampled_from([
                               "2026-03-02T10:00:00Z", "2026-03-07T23:30:00+02:00",
                               "2026-07-14T08:15:30.250Z", "2026-12-31T23:59:59-05:00"]))}
    ident = draw(st.sampled_from(KNOWN[:3]))
    if kind == "data":
        out["msisdn" if draw(st.booleans()) else "imsi"] = ident
        out["volume_up"] = draw(st.integers(0, 10**9))
        if draw(st.booleans()):
            out["volume_down"] = draw(st.integers(0, 10**9))
    else:
        out["calling"] = ident
        out["called"] = draw(st.sampled_from(["33612345678", "3312345678", "4930123456",
                                              "33712345678901234567890123"]))
        if kind == "voice":
            out["duration_s"] = draw(st.integers(0, 7200))
    if draw(st.integers(0, 3)) == 0:
        out["attrs"] = draw(_CLEAN_ATTRS)
    return out


@st.composite
def commits(draw: Any) -> list[bytes]:
    bodies = []
    index = 0
    mixed = draw(st.booleans())  # else only records the tariff prices, mostly carried
    for _ in range(draw(st.integers(1, 4))):
        records = []
        for _ in range(draw(st.integers(1, 8))):
            make = record if mixed and draw(st.integers(0, 3)) == 0 else chargeable
            records.append(draw(make(index)))
            index += 1
        bodies.append(msgspec.json.encode({"records": records}))
    return bodies


async def _deliveries(bodies: list[bytes]) -> list[Delivery]:
    return [await intake.to_delivery(None, body, source="gw-1", position=f"m{i}", where="mqtt",
                                     kind="voice" if i % 2 else None)
            for i, body in enumerate(bodies)]


def _ids(delivered: list[Delivery]) -> list[int]:
    return list(range(500, 500 + sum(len(d.records) + len(d.rejects) for d in delivered)))


def _declines(prepared: list[WriteBatch], delivered: list[Delivery]) -> bool:
    """What the columnar path must leave to the object path."""
    records = [r for d in delivered for r in d.records]
    entries = [e for b in prepared for e in b.entries]
    return (any(d.rejects for d in delivered)
            or not all(isinstance(e.outcome, Charge) for e in entries)
            or len({(r.source, r.record_key) for r in records}) < len(records)
            or any(r.kind not in ("voice", "sms", "data") for r in records)
            or any(getattr(r, name) is not None
                   for r in records for name in ("quantity", "unit", "charge", "partial_seq"))
            # a literal backslash-u0000 in attrs looks like NUL to the screen: declined
            or any(b"\\u0000" in msgspec.json.encode(r.attrs) for r in records))


def assert_same_commit(delivered: list[Delivery]) -> bool:
    rater = _rater()
    ids = _ids(delivered)
    prepared, objects = deliveries._prepare(delivered, rater, ids)
    columns = json_columns.prepare(delivered, rater, ids, lambda: objects)
    assert (columns is None) == _declines(prepared, delivered)
    if columns is None:
        return False
    a, b = columns.rows, objects.rows
    assert a is not None and b is not None
    assert a.usage_columns == b.usage_columns
    assert a.payloads == b.payloads
    assert list(a.keys) == list(b.keys)
    assert list(a.usage) == list(b.usage)
    assert list(a.charges) == list(b.charges)
    assert a.suspense + a.rejects == b.suspense + b.rejects == []
    assert a.totals == b.totals
    assert Counter(a.rollup.daily) == Counter(b.rollup.daily)
    assert Counter(a.rollup.monthly) == Counter(b.rollup.monthly)
    assert Counter(a.rollup.hourly) == Counter(b.rollup.hourly)
    assert columns.size == objects.size
    assert writer.months(columns) == writer.months(objects)
    for batch in (columns, objects):  # every key claimed: the writer's statuses and counts
        assert batch.rows is not None
        batch.reset()
        writer.settle(batch, batch.rows)
        writer._count(batch)
    assert columns.counts == objects.counts and columns.totals == objects.totals
    assert isinstance(columns.carried, json_columns.CarriedJson)
    fresh = [True] * len(delivered)
    assert (json_columns.outcomes(delivered, columns.carried)
            == deliveries._outcomes(delivered, prepared, fresh, {}))
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commits())
def test_columnar_deliveries_match_the_object_path(bodies: list[bytes]) -> None:
    assert_same_commit(asyncio.run(_deliveries(bodies)))


def test_a_plain_commit_is_carried_and_a_bad_record_sends_it_the_object_way() -> None:
    good = [{"record_key": f"r{i}", "kind": "voice", "event_time": "2026-03-02T10:00:00Z",
             "calling": KNOWN[0], "called": "33612345678", "duration_s": 60 + i}
            for i in range(5)]
    bodies = [msgspec.json.encode({"records": good[:3]}), msgspec.json.encode(good[3:])]
    assert assert_same_commit(asyncio.run(_deliveries(bodies)))
    bad = [*good, {**good[0], "record_key": "r9", "calling": "000"}]  # UNKNOWN_ACCOUNT
    assert not assert_same_commit(asyncio.run(_deliveries([msgspec.json.encode(bad)])))


def test_expand_gives_the_object_path_with_the_same_usage_ids() -> None:
    body = msgspec.json.encode([{"record_key": f"r{i}", "kind": "sms",
                                 "event_time": "2026-03-02T10:00:00Z", "calling": KNOWN[1]}
                                for i in range(4)])
    delivered = asyncio.run(_deliveries([body]))
    rater = _rater()
    objects = deliveries._Objects(delivered, rater, [7, 9, 11, 13])
    batch = json_columns.prepare(delivered, rater, [7, 9, 11, 13], objects.combined)
    assert batch is not None and batch.carried is not None and batch.rows is not None
    assert [row[4] for row in batch.rows.keys] == [7, 9, 11, 13]
    batch.expand()
    assert batch.carried is None and batch.rows is not None
    assert [row[4] for row in batch.rows.keys] == [7, 9, 11, 13]
    assert [e.record.record_key for e in objects.prepared()[0].entries  # type: ignore[union-attr]
            ] == ["r0", "r1", "r2", "r3"]


def _settle(batch: WriteBatch) -> None:
    assert batch.rows is not None
    batch.reset()
    writer.settle(batch, batch.rows)
    writer._count(batch)


def _named(columns: tuple[str, ...], rows: Any) -> Counter[str]:
    """Usage rows by column, absent values and usage ids left out."""
    return Counter(repr(sorted((c, v) for c, v in zip(columns, row, strict=True)
                               if v is not None and c != "usage_id")) for row in rows)


def _without_ids(rows: Any, at: int) -> Counter[tuple[Any, ...]]:
    return Counter(row[:at] + row[at + 1:] for row in rows)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commits())
def test_a_commit_split_into_columns_and_objects_stores_what_the_object_path_does(
        bodies: list[bytes]) -> None:
    delivered = asyncio.run(_deliveries(bodies))
    rater = _rater()
    ids = _ids(delivered)
    parts = deliveries._parts(delivered, rater, ids)
    prepared, objects = deliveries._prepare(delivered, rater, list(ids))
    _settle(objects)
    outcomes: list[Any] = []
    for part in parts:
        _settle(part.batch)
        outcomes += part.outcomes()
    assert [outcomes[k] for k in deliveries._order(parts)] == deliveries._outcomes(
        delivered, prepared, [True] * len(delivered), {})
    assert sorted(i for part in parts for i in part.indexes) == list(range(len(delivered)))
    if len(parts) == 1:
        return
    carried, rest = (part.batch for part in parts)
    assert isinstance(carried.carried, json_columns.CarriedJson)
    a, b, whole = carried.rows, rest.rows, objects.rows
    assert a is not None and b is not None and whole is not None
    # (source, key, account): a record without a valid time claims its key at "now"
    assert (Counter(k[:3] for k in (*a.keys, *b.keys)) == Counter(k[:3] for k in whole.keys))
    assert _without_ids([*a.charges, *b.charges], 2) == _without_ids(whole.charges, 2)
    # each batch sends the optional usage columns some record of its own fills
    assert (_named(a.usage_columns, a.usage) + _named(b.usage_columns, b.usage)
            == _named(whole.usage_columns, whole.usage))
    assert b.suspense + b.rejects == whole.suspense + whole.rejects
    counts = Counter(carried.counts) + Counter(rest.counts)
    assert +counts == +Counter(objects.counts)
    totals = Counter(carried.totals) + Counter(rest.totals)
    assert +totals == +Counter(objects.totals)
    assert writer.months(carried) | writer.months(rest) == writer.months(objects)
