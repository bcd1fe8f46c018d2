"""Binary COPY payloads against the real tables: each column's kind matches its type, and
rows copied in come back equal."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing_oss.server.store import copy_payload, usage_repo

_KIND_OF_TYPE = {"text": "t", "character": "t", "character varying": "t", "json": "t",
                 "jsonb": "j", "bigint": "q", "integer": "i", "smallint": "h",
                 "timestamp with time zone": "T", "bytea": "b", "boolean": "?"}


async def test_kinds_follow_the_column_types(pool: asyncpg.Pool) -> None:
    for table, kinds in copy_payload.KINDS.items():
        rows = await pool.fetch(
            "SELECT attname, format_type(atttypid, NULL) AS type FROM pg_attribute"
            " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped", table)
        types = {r["attname"]: r["type"] for r in rows}
        assert {c: _KIND_OF_TYPE.get(types[c]) for c in kinds} == kinds, table


async def test_rows_copied_as_payload_come_back_equal(pool: asyncpg.Pool) -> None:
    when = dt.datetime(2026, 3, 29, 1, 30, 0, 250, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    columns = (*usage_repo.USAGE_FIXED, "duration_s", "volume_up", "calling", "imsi",
               "partial_seq", *usage_repo.USAGE_TAIL)
    rows = [("A1", 10**15 + i, when + dt.timedelta(days=i), "msc1", f"clé-{i}", "voice",
             i * 60 if i % 2 else None, -(1 << 62) if i == 3 else i, "3361\u20ac", None,
             i or None, f'{{"offset": {i}, "note": "ü"}}', None if i % 3 else 7)
            for i in range(5)]
    kinds = copy_payload.kinds_of("usage_records", columns)
    assert kinds is not None
    payload = copy_payload.encode(rows, kinds)
    async with pool.acquire() as conn, conn.transaction():
        await usage_repo.ensure_partitions(conn, [dt.date(2026, 3, 1), dt.date(2026, 4, 1)])
        await usage_repo.copy_rows(conn, "usage_records", columns, rows, payload)
        back = await conn.fetch(
            f"SELECT {', '.join(columns[:-2])}, attrs::text, source_file_id FROM usage_records"
            " WHERE source = 'msc1' AND record_key LIKE 'clé-%' ORDER BY usage_id")
        assert [tuple(r) for r in back] == rows
        await conn.execute("DELETE FROM usage_records WHERE record_key LIKE 'clé-%'")


async def test_a_numeric_column_has_no_kind() -> None:
    assert copy_payload.kinds_of("usage_records", ("account_id", "quantity")) is None
