"""Reopening a file for a second ingest, when its first one charged nothing.

A file is registered by its content, so ingesting it again changes nothing: that is what
keeps a replay from doubling anything. A file ingested with the wrong ``--format`` is the one
case where that protects nothing: every record went to suspense, none was charged. Such a
file may be reopened: its open suspense rows are discarded (naming why), the record keys
they reserved are released, its ledger row is reset to be ingested afresh under the right
format, and the whole is one transaction with its audit row (the ledger row before and after).
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from billing_oss.core.errors import Conflict
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

_COUNTS = ("count_in", "count_charged", "count_suspense", "count_duplicates",
           "count_filtered", "count_pending")
_KEPT = ("source_file_id", "source", "name", "format", "state", "committed_records", "error",
         *_COUNTS)


async def reopen(pool: asyncpg.Pool, *, source: str, sha256: str, fmt: str,
                 actor: str) -> int | None:
    """Reopen the file of this content for a new ingest as ``fmt``; its id, or None when it
    was never ingested (a plain ingest then). Refused (``Conflict``) while it is being
    ingested, or when any of its records was charged, deduplicated, filtered, held as a
    partial, or retried from suspense: those are committed effects a second pass would
    contradict."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {', '.join(_KEPT)} FROM source_files WHERE source = $1 AND sha256 = $2 "
            "FOR UPDATE", source, sha256)
        if row is None:
            return None
        file_id, name = row["source_file_id"], row["name"]
        if row["state"] == "claimed":
            raise Conflict(f"{name}: its ingest is under way or was cut short; ingest it "
                           "again without --reprocess to resume it")
        effects = {c.removeprefix("count_"): row[c] for c in _COUNTS[1:] if c != "count_suspense"
                   and row[c]}
        if effects:
            said = ", ".join(f"{n} {what}" for what, n in effects.items())
            raise Conflict(f"{name}: only a file whose records all went to suspense can be "
                           f"reprocessed, and this one has {said}; retry its suspense records "
                           "instead (billing-oss suspense retry)")
        retried = await conn.fetchval(
            "SELECT count(*) FROM suspense WHERE source_file_id = $1 AND state = 'retried'",
            file_id)
        if retried:
            raise Conflict(f"{name}: {retried} of its suspense records were retried since; "
                           "reprocessing would charge them twice")
        discarded = await conn.fetch(
            "UPDATE suspense SET state = 'discarded', resolved_at = now(), resolution = $2 "
            "WHERE source_file_id = $1 AND state = 'open' RETURNING source, record_key",
            file_id, f"file {file_id} reprocessed as {fmt}")
        keys = [(r["source"], r["record_key"]) for r in discarded if r["record_key"]]
        # Keys these records reserved (never charged: no usage row holds them) go back, so
        # the records read correctly this time are not taken for duplicates of themselves.
        await _release_keys(conn, keys)
        after = await conn.fetchrow(
            "UPDATE source_files SET state = 'claimed', format = $2, committed_records = 0, "
            "totals = '{}', error = NULL, completed_at = NULL, "
            + ", ".join(f"{c} = 0" for c in _COUNTS)
            + f" WHERE source_file_id = $1 RETURNING {', '.join(_KEPT)}", file_id, fmt)
        assert after is not None
        await audit.record(conn, actor, "source_file.reprocess", f"source_file:{file_id}",
                           _plain(row), {**_plain(after), "suspense_discarded": len(discarded)})
    return int(file_id)


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    plain: dict[str, Any] = json.loads(json.dumps(dict(row), default=str))
    return plain


async def _release_keys(conn: Connection, keys: list[tuple[str, str]]) -> None:
    """Delete these record keys unless a usage row holds one. The keys, then the usage they
    name, then the delete: on Citus the keys are distributed by record key and usage by
    account, which one statement cannot join."""
    held = await conn.fetch(
        "SELECT k.source, k.record_key, k.account_id, k.event_time, k.usage_id FROM usage_keys k"
        " JOIN unnest($1::text[], $2::text[]) AS d(source, key)"
        " ON k.source = d.source AND k.record_key = d.key",
        [k[0] for k in keys], [k[1] for k in keys])
    named = [r for r in held if r["account_id"] is not None]
    charged = {(r["account_id"], r["usage_id"]) for r in await conn.fetch(
        "SELECT u.account_id, u.usage_id FROM usage_records u"
        " JOIN unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS k(account_id, at, id)"
        " ON u.account_id = k.account_id AND u.event_time = k.at AND u.usage_id = k.id",
        [r["account_id"] for r in named], [r["event_time"] for r in named],
        [r["usage_id"] for r in named])}
    free = [r for r in held if (r["account_id"], r["usage_id"]) not in charged]
    await conn.execute(
        "DELETE FROM usage_keys k USING unnest($1::text[], $2::text[]) AS d(source, key)"
        " WHERE k.source = d.source AND k.record_key = d.key",
        [r["source"] for r in free], [r["record_key"] for r in free])
