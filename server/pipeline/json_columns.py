"""The columnar path of MQTT and HTTP deliveries: decoded JSON records to COPY payloads.

A delivery's payload is decoded by msgspec (``adapters.formats.payload``) into record
structs, made in C. ``prepare`` then reads each field of all the commit's records as one
column (``map`` over ``attrgetter``, in C), checks the columns against the rules
``validate.validate`` and the rater's ``fields`` apply, resolves accounts and tariffs over
distinct values, rates the columns in one kernel call, and builds the keys, usage and
charges rows and their binary COPY payloads by zipping columns: no ``Entry``, ``Charge`` or
validation call per record.

It carries a commit only when every item is a record it can vouch for: kind voice, sms or
data, none of quantity, unit, charge or partial_seq set, keys usable and distinct, every
field valid, and charged by the kernel. Anything else (a reject, a record the rules refuse,
one the rater refuses, a key twice) returns None, and those deliveries go through the
object path (``batch.prepare``), which names the record and the field
(``deliveries._parts`` carries the other deliveries of the commit apart). A carried batch keeps
``expand``, the object path over the same items and usage ids, for the writer to fall back
on when a key was taken before (a redelivery under a new position).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, cast

import msgspec

from billing_oss.core.contract import Counts, Delivery, Outcome, RecordResult
from billing_oss.core.money import format_outcome
from billing_oss.core.records import MAX_YEAR, MIN_YEAR, UsageRecord
from billing_oss.native import pgcopy
from billing_oss.native import rating as kernel
from billing_oss.server.catalog.model import EVENT_MAX_US, EVENT_MIN_US, Account
from billing_oss.server.pipeline import columnar
from billing_oss.server.pipeline.batch import WriteBatch
from billing_oss.server.pipeline.rows import Rows
from billing_oss.server.pipeline.validate import MAX_KEY_LENGTH
from billing_oss.server.rating import NativeRater
from billing_oss.server.rating.compile import CompiledTariffs
from billing_oss.server.rating.fields import KIND_CODES
from billing_oss.server.store import charge_writes, copy_payload, usage_repo

WIDTH = kernel.CALLED_WIDTH
_INT64_MAX = 2**63 - 1
_DIGITS_MAX = 32  # validate._is_digits
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CARRIED_KINDS = frozenset({"voice", "sms", "data"})
# Fields a carried record leaves unset: an event's quantity and unit, a TAP charge (numeric
# columns, copied through asyncpg), a partial part (merged on the write stage).
_UNSET = ("quantity", "unit", "charge", "partial_seq")
_DIGIT_FIELDS = ("calling", "called", "imsi", "msisdn")
_COUNTERS = ("duration_s", "volume_up", "volume_down")
# The optional usage columns a carried record may fill, in ``USAGE_OPTIONAL`` order.
_OPTIONAL = tuple(n for n in usage_repo.USAGE_OPTIONAL if n not in _UNSET)
_KEY_KINDS = copy_payload.kinds_of("usage_keys", usage_repo.KEY_COLUMNS)
_CHARGE_KINDS = copy_payload.kinds_of("charges", usage_repo.CHARGE_COLUMNS)
_encode = msgspec.json.encode
astuple = msgspec.structs.astuple
_id, _plans, _tariff_id = attrgetter("id"), attrgetter("plans"), attrgetter("tariff_id")


@dataclass(slots=True)
class CarriedJson:
    """A commit carried as columns (``WriteBatch.carried``): every item charged, unless the
    writer finds a key taken and expands the batch through the object path."""

    count: int
    months: set[date]
    expand: Callable[[], WriteBatch]
    keys: list[str]
    amounts: list[str]  # each record's amount as the outcome prints it
    currencies: list[str]


def prepare(deliveries: Sequence[Delivery], rater: Any, ids: Sequence[int],
            expand: Callable[[], WriteBatch], refused: list[int] | None = None
            ) -> WriteBatch | None:
    """The commit's batch with its rows built from columns, or None when some item needs
    the object path (see the module's docstring). ``ids``: a usage id per item, the i-th
    record taking ``ids[i]`` as ``rows.build_rows`` gives them. ``refused`` gets the
    indexes (among all the records) of those refused for their account, tariff or rate,
    when that is why: the others' deliveries may go by column without them."""
    if not isinstance(rater, NativeRater) or any(d.rejects for d in deliveries):
        return None
    records: list[UsageRecord] = []
    for delivery in deliveries:
        records += delivery.records
    n = len(records)
    if not n or len(ids) < n:
        return None
    col = _columns(records)
    sources, keys, kinds, times = col["source"], col["record_key"], col["kind"], col["event_time"]
    if not _usable_keys(sources, keys) or not _CARRIED_KINDS.issuperset(kinds):
        return None
    # First (cheap, and the usual reason a record is refused): a record of no known account
    found = _accounts(rater, kinds, col["calling"], col["msisdn"], col["imsi"])
    if not all(found):  # accounts are always true: all() compares none of them
        if refused is not None:
            refused += [i for i, account in enumerate(found) if account is None]
        return None
    accounts = cast(list[Account], found)
    if any(col[name].count(None) != n for name in _UNSET):
        return None
    if not all(_digits(col[name]) for name in _DIGIT_FIELDS):
        return None
    if not all(_counters(col[name]) for name in _COUNTERS):
        return None
    at = _event_times(times)
    if at is None:
        return None
    when = list(map(at.__getitem__, times))
    event_us = array("q", map(itemgetter(1), when))
    moments: list[datetime] = list(map(itemgetter(0), when))
    usage = _usage(kinds, col["duration_s"], col["volume_up"], col["volume_down"])
    if usage is None:
        return None
    attrs_text = list(map(bytes.decode, map(_encode, col["attrs"])))
    # validate._check_nul names the field; no match can straddle two records' "{...}"
    if "\\u0000" in "".join(attrs_text):
        return None
    compiled = rater.compiled
    if any(map(_plans, accounts)):  # a subscription history: the plan at the event time
        tariff_ids = list(map(Account.tariff_at, accounts, event_us))
    else:
        tariff_ids = list(map(_tariff_id, accounts))
    numbers = list(map(compiled.tariff_index.get, tariff_ids))  # type: ignore[arg-type]
    if None in numbers:
        if refused is not None:
            refused += [i for i, number in enumerate(numbers) if number is None]
        return None
    tariff = array("i", cast(list[int], numbers))
    kind_codes = bytearray(map(KIND_CODES.__getitem__, kinds))
    numbers_called = col["called"]
    if None in numbers_called:
        numbers_called = [c or "" for c in numbers_called]
    if max(map(len, numbers_called)) > WIDTH:  # the kernel reads the first WIDTH digits
        numbers_called = [c[:WIDTH] for c in numbers_called]
    # digits only (checked above): ASCII, a byte each
    called = "".join(map(str.ljust, numbers_called, repeat(WIDTH),
                         repeat("\x00"))).encode("ascii")
    status = bytearray(n)
    amount = array("q", bytes(8 * n))
    version, zone, band = (array("i", bytes(4 * n)) for _ in range(3))
    compiled.kernel.rate(tariff, event_us, kind_codes, usage, called, status, amount, version,
                         zone, band)
    if status.count(0) != n:
        if refused is not None:
            refused += [i for i, code in enumerate(status) if code]
        return None
    account_ids = list(map(_id, accounts))
    currency_of = compiled.currencies
    currencies = list(map(currency_of.__getitem__, tariff))
    stored = compiled.version_ids
    versions = rater._versions  # (stored id, identity, zone names, band names) per version
    version_ids = list(map(stored.__getitem__, version))
    zones = _names(versions, 2, version, zone)
    bands = _names(versions, 3, version, band)
    usage_ids = list(ids[:n])
    no_file = list(repeat(None, n))
    key_rows = list(zip(sources, keys, account_ids, moments, usage_ids, strict=True))
    optional = tuple(name for name in _OPTIONAL if col[name].count(None) != n)
    usage_rows = list(zip(account_ids, usage_ids, moments, sources, keys, kinds,
                          *(col[name] for name in optional), attrs_text, no_file, strict=True))
    charge_rows = list(zip(account_ids, moments, usage_ids, repeat("charge", n), amount,
                           currencies, version_ids, zones, bands, no_file, strict=True))
    usage_columns = (*usage_repo.USAGE_FIXED, *optional, *usage_repo.USAGE_TAIL)
    usage_kinds = copy_payload.kinds_of("usage_records", usage_columns)
    assert usage_kinds is not None and _KEY_KINDS is not None and _CHARGE_KINDS is not None
    totals: dict[str, int] = {}
    if len(set(currencies)) == 1:
        totals[currencies[0]] = sum(amount)
    else:
        for a, c in zip(amount, currencies, strict=True):
            totals[c] = totals.get(c, 0) + a
    rows = Rows(None, [], key_rows, [], usage_columns, usage=usage_rows, charges=charge_rows,
                totals=totals,
                rollup=_rollup(account_ids, event_us, kind_codes, usage, tariff, amount,
                               version, zone, compiled),
                payloads={"usage_keys": pgcopy.encode(key_rows, _KEY_KINDS),
                          "usage_records": pgcopy.encode(usage_rows, usage_kinds),
                          "charges": pgcopy.encode(charge_rows, _CHARGE_KINDS)})
    printed: dict[int, str] = {}  # the same few prices recur: format each once
    for micros in set(amount):
        printed[micros] = format_outcome(micros)
    batch = WriteBatch([], rows=rows)
    batch.carried = CarriedJson(
        n, {date(m.year, m.month, 1) for m, _ in at.values()}, expand, keys,
        list(map(printed.__getitem__, amount)), currencies)
    return batch


def outcomes(deliveries: Sequence[Delivery], carried: CarriedJson) -> list[Outcome]:
    """Each delivery's outcome when its whole batch was carried and committed: every record
    charged, in delivery order (what ``deliveries._outcome`` says of the same entries)."""
    out: list[Outcome] = []
    start = 0
    for delivery in deliveries:
        end = start + len(delivery.records)
        results = [RecordResult(record_key=k, status="charged", amount=a, currency=c)
                   for k, a, c in zip(carried.keys[start:end], carried.amounts[start:end],
                                      carried.currencies[start:end], strict=True)]
        count = end - start
        out.append(Outcome(position=delivery.position, replay=False,
                           counts=Counts(in_=count, charged=count), results=results))
        start = end
    return out


def _columns(records: list[UsageRecord]) -> dict[str, list[Any]]:
    """Each field of the records as a list (transposed in C when they share a type)."""
    types = set(map(type, records))
    if len(types) == 1:
        names: tuple[str, ...] = types.pop().__struct_fields__  # type: ignore[attr-defined]
        return dict(zip(names, map(list, zip(*map(astuple, records), strict=True)),
                        strict=True))
    return {name: list(map(attrgetter(name), records))
            for name in UsageRecord.__struct_fields__}


def _usable_keys(sources: list[str], keys: list[str]) -> bool:
    """``validate.key_problem`` finds nothing in any record, and no (source, key) repeats."""
    if min(map(len, keys)) < 1 or max(map(len, keys)) > MAX_KEY_LENGTH:
        return False
    if max(map(len, sources)) > MAX_KEY_LENGTH:
        return False
    if any("\x00" in s for s in set(sources)) or "\x00" in "".join(keys):
        return False
    if len(set(sources)) == 1:
        return len(set(keys)) == len(keys)
    return len(set(zip(sources, keys, strict=True))) == len(keys)


def _digits(values: list[str | None]) -> bool:
    """Each value absent or a digit string of 1..32 ASCII digits (``validate._is_digits``)."""
    given = (cast(list[str], values) if None not in values
             else [v for v in values if v is not None])
    if not given:
        return True
    joined = "".join(given)
    return (min(map(len, given)) >= 1 and max(map(len, given)) <= _DIGITS_MAX
            and joined.isdigit() and joined.isascii())


def _counters(values: list[int | None]) -> bool:
    given = (cast(list[int], values) if None not in values
             else [v for v in values if v is not None])
    return not given or (min(given) >= 0 and max(given) <= _INT64_MAX)


def _event_times(times: list[str]) -> dict[str, tuple[datetime, int]] | None:
    """Each distinct event time: UTC datetime (``records.parse_event_time``) and µs since
    the epoch (``rating.fields.event_micros``); None if one fails either."""
    out: dict[str, tuple[datetime, int]] = {}
    for text in dict.fromkeys(times):
        if "\x00" in text:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None or not MIN_YEAR <= moment.year <= MAX_YEAR:
            return None
        delta = moment - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        if not EVENT_MIN_US <= micros < EVENT_MAX_US:
            return None
        out[text] = (moment.astimezone(UTC), micros)
    return out


def _names(versions: list[tuple[Any, ...]], which: int, version: array[int],
           number: array[int]) -> list[str | None]:
    """Zone (``which`` 2) or band (3) names of the kernel's numbers within each version
    (-1: none)."""
    if len(set(version)) == 1:  # one version: its names, and None at index -1
        names = (*versions[version[0]][which], None)
        return list(map(names.__getitem__, number))
    return [versions[v][which][z] if z >= 0 else None
            for v, z in zip(version, number, strict=True)]


def _rollup(account_ids: list[str], event_us: array[int], kind_codes: bytearray,
            usage: array[int], tariff: array[int], amount: array[int], version: array[int],
            zone: array[int], compiled: CompiledTariffs) -> charge_writes.Rollup:
    """The records' rollup deltas, all charged, as the 3GPP columns make theirs."""
    number: dict[str, int] = {}
    account = array("i", [number.setdefault(a, len(number)) for a in account_ids])
    return columnar.rollup_of(bytearray(b"\x01") * len(account), account, list(number),
                              event_us, kind_codes, usage, tariff, amount, version, zone,
                              compiled)


def _usage(kinds: list[str], durations: list[int | None], ups: list[int | None],
           downs: list[int | None]) -> array[int] | None:
    """The kernel's usage per record (``rating.fields.usage_of``); None where a voice record
    has no duration, a data record no volume, or a data total passes 2^63-1."""
    if kinds.count("voice") == len(kinds):
        return None if None in durations else array("q", durations)  # type: ignore[arg-type]
    out = array("q", bytes(8 * len(kinds)))
    for i, (kind, duration, up, down) in enumerate(zip(kinds, durations, ups, downs,
                                                       strict=True)):
        if kind == "voice":
            if duration is None:
                return None
            out[i] = duration
        elif kind == "data":
            if up is None and down is None:
                return None
            total = (up or 0) + (down or 0)
            if total > _INT64_MAX:
                return None
            out[i] = total
        else:
            out[i] = 1
    return out


def _accounts(rater: NativeRater, kinds: list[str], calling: list[str | None],
              msisdn: list[str | None], imsi: list[str | None]) -> list[Account | None]:
    """Each record's account as ``Accounts.find`` picks it (calling for voice and sms;
    msisdn, then imsi, for data); None where none."""
    find = rater.accounts.by_identifier.get
    first = [m if k == "data" else c for k, c, m in zip(kinds, calling, msisdn, strict=True)]
    found: list[Account | None] = list(map(find, first))  # type: ignore[arg-type]
    if not all(found):
        for i, account in enumerate(found):
            if account is None and kinds[i] == "data" and imsi[i]:
                found[i] = find(imsi[i])  # type: ignore[arg-type]
    return found
