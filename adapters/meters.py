"""Meter readings → usage: the usage of a reading is its difference from the previous one.

Every accepted reading is stored (``meter_readings``) before the usage it yields is committed,
and a reading's usage is always computed from its stored predecessor. So a message delivered
again — before or after its commit — yields the same record with the same key
(``meter:<meter>:<ts>``), which the pipeline then charges once.

- First reading of a meter: a baseline, usage 0 (or ``reading - start`` when ``start`` given).
- Lower than the previous reading: with ``rollover`` (the register's modulus, e.g. 100000 for
  five digits) the register wrapped: ``reading + rollover - previous``; otherwise the delta is
  negative and the reading goes to suspense (``NEGATIVE_DELTA``) without being stored.
- A different ``serial`` than the previous reading: the meter was replaced; usage is counted
  from the new meter's ``start`` (default 0).
- Older than the latest stored reading, or a different value for a stored time:
  ``OUT_OF_ORDER`` suspense.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg
import msgspec

from billing_oss.adapters.formats.payload import Reading, RecordIn
from billing_oss.core.contract import Reject
from billing_oss.core.errors import Reason
from billing_oss.core.records import parse_event_time
from billing_oss.server.store import meters_repo
from billing_oss.server.store.pool import Connection

_ZERO = Decimal(0)


async def to_records(pool: asyncpg.Pool, source: str, readings: Sequence[Reading]
                     ) -> tuple[list[RecordIn], list[Reject]]:
    """Store the readings and turn each into a usage record or a reject, in order."""
    records: list[RecordIn] = []
    rejects: list[Reject] = []
    if not readings:
        return records, rejects
    async with pool.acquire() as conn, conn.transaction():
        await _lock_meters(conn, source, readings)
        for index, reading in enumerate(readings):
            result = await _one(conn, source, reading)
            if isinstance(result, RecordIn):
                records.append(result)
            else:
                reason, detail = result
                rejects.append(Reject(reason=reason, detail=f"meter {reading.meter}: {detail}",
                                      raw=msgspec.json.encode(reading), where=f"readings[{index}]"))
    return records, rejects


async def _lock_meters(conn: Connection, source: str, readings: Sequence[Reading]) -> None:
    """Lock every meter of the batch before reading any, in one global order (of the lock
    keys themselves), so two batches naming the same meters in another order cannot
    deadlock."""
    await meters_repo.lock_meters(conn, source, [r.meter for r in readings])


async def _one(conn: Connection, source: str, reading: Reading
               ) -> RecordIn | tuple[Reason, str]:
    try:
        when = parse_event_time(reading.ts)
    except (ValueError, TypeError) as exc:
        return Reason.BAD_FIELD, f"ts {reading.ts!r} is not RFC 3339 UTC ({exc})"
    if not reading.reading.is_finite() or reading.reading < 0:
        return Reason.BAD_FIELD, f"reading {reading.reading} is not a register value"
    stored = await meters_repo.stored_at(conn, source, reading.meter, when)
    if stored is not None and stored["reading"] != reading.reading:
        return Reason.OUT_OF_ORDER, (f"reading {reading.reading} at {reading.ts} contradicts "
                                     f"the stored {stored['reading']}")
    previous = await meters_repo.previous(conn, source, reading.meter, when)
    if stored is None:
        latest = await meters_repo.latest(conn, source, reading.meter)
        if latest is not None and latest > when:
            return Reason.OUT_OF_ORDER, f"reading at {reading.ts} is older than the latest {latest}"
    delta = _delta(reading, previous)
    if isinstance(delta, tuple):
        return delta
    if stored is None:
        await meters_repo.insert(conn, source, reading.meter, when, reading.reading,
                                 reading.unit, reading.serial)
    return _record(source, reading, when, delta, previous)


def _delta(reading: Reading, previous: asyncpg.Record | None) -> Decimal | tuple[Reason, str]:
    if previous is None:
        return reading.reading - reading.start if reading.start is not None else _ZERO
    if reading.serial is not None and previous["serial"] not in (None, reading.serial):
        delta = reading.reading - (reading.start or _ZERO)
    elif reading.reading >= previous["reading"]:
        delta = reading.reading - previous["reading"]
    elif reading.rollover is not None and reading.rollover > previous["reading"]:
        delta = reading.reading + reading.rollover - previous["reading"]
    else:
        return Reason.NEGATIVE_DELTA, (f"reading {reading.reading} is below the previous "
                                       f"{previous['reading']} and no rollover is declared")
    if delta < 0:
        return Reason.NEGATIVE_DELTA, f"usage {delta} since the previous reading is negative"
    return delta


def _record(source: str, reading: Reading, when: datetime, delta: Decimal,
            previous: asyncpg.Record | None) -> RecordIn:
    attrs = {**reading.attrs, "meter": reading.meter, "reading": str(reading.reading)}
    if previous is None:
        attrs["baseline"] = True
    else:
        attrs["previous_reading"] = str(previous["reading"])
        attrs["previous_ts"] = previous["ts"].isoformat().replace("+00:00", "Z")
    if reading.serial is not None:
        attrs["serial"] = reading.serial
    event_time = when.isoformat().replace("+00:00", "Z")
    return RecordIn(record_key=f"meter:{reading.meter}:{event_time}", source=source,
                    kind="event", event_time=event_time, quantity=_plain(delta),
                    unit=reading.unit, msisdn=reading.msisdn, attrs=attrs)


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
