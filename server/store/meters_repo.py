"""Meter register readings (``meter_readings``): what a reading is measured against."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg

from billing_oss.server.store.pool import Connection


async def lock_meters(conn: Connection, source: str, meters: list[str]) -> None:
    """Lock every meter of a batch before reading any, in one global order (of the lock keys
    themselves), so two batches naming the same meters in another order cannot deadlock."""
    keys = await conn.fetchval(
        "SELECT array_agg(DISTINCT hashtext($1 || m) ORDER BY hashtext($1 || m))"
        " FROM unnest($2::text[]) m", f"meter:{source}:", meters)
    for key in keys:
        await conn.execute("SELECT pg_advisory_xact_lock($1::int)", key)


async def stored_at(conn: Connection, source: str, meter: str, when: dt.datetime
                    ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT reading FROM meter_readings WHERE source = $1 AND meter = $2 AND ts = $3",
        source, meter, when)


async def previous(conn: Connection, source: str, meter: str, when: dt.datetime
                   ) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT ts, reading, serial FROM meter_readings WHERE source = $1 AND meter = $2"
        " AND ts < $3 ORDER BY ts DESC LIMIT 1", source, meter, when)


async def latest(conn: Connection, source: str, meter: str) -> dt.datetime | None:
    value: dt.datetime | None = await conn.fetchval(
        "SELECT max(ts) FROM meter_readings WHERE source = $1 AND meter = $2", source, meter)
    return value


async def insert(conn: Connection, source: str, meter: str, when: dt.datetime,
                 reading: Decimal, unit: str | None, serial: str | None) -> None:
    await conn.execute(
        "INSERT INTO meter_readings (source, meter, ts, reading, unit, serial)"
        " VALUES ($1, $2, $3, $4, $5, $6)", source, meter, when, reading, unit, serial)
