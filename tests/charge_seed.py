"""Charges seeded by tests, written as the server writes them: through
``charge_writes.write``, with their rollup deltas. Each charge's usage (its kind and units)
is read from ``usage_records``, where the test stored it first; a charge of no usage row
rolls up as the server's would (no service, one unit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from billing_oss.server.store import charge_writes
from billing_oss.server.store.pool import Connection


async def insert_charges(db: Connection | asyncpg.Pool, columns: Sequence[str],
                         rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (``columns`` of ``charges``: account_id, event_time, usage_id, kind,
    amount_micros and currency at least) and their rollups, in one transaction."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            await insert_charges(conn, columns, rows)
        return
    facts = []
    for row in rows:
        v = dict(zip(columns, row, strict=True))
        usage = await db.fetchrow(
            "SELECT kind, duration_s, volume_up, volume_down, quantity::text AS quantity"
            " FROM usage_records WHERE account_id = $1 AND event_time = $2 AND usage_id = $3"
            " LIMIT 1", v["account_id"], v["event_time"], v["usage_id"])
        kind = usage["kind"] if usage is not None else None
        units = (charge_writes.rollup_units(*usage.values()) if usage is not None
                 else charge_writes.rollup_units(None, None, None, None, None))
        facts.append(charge_writes.Fact(
            v["account_id"], v["event_time"], kind, v.get("zone"), v["currency"],
            v.get("tariff_version_id"), v["kind"] == "reversal", v["amount_micros"], units))
    async with db.transaction():
        await charge_writes.write(db, list(rows), charge_writes.roll_up(facts),
                                  columns=columns)
