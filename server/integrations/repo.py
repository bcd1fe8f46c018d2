"""SQL of the integrations package: the outbox's streams and events.

The outbox is distributed by ``account_id`` on Citus (migration 1472): a stream's head and
events carry its account, the reserved ``''`` for streams about no account, which reads back
as None. Emitting notifies ``outbox_events`` with the stream's name from the emitting
transaction itself, on the coordinator where the servers listen.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from billing_oss.server.store.citus import NO_ACCOUNT
from billing_oss.server.store.pool import Connection


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    seq: int
    event_id: str
    type: str
    version: int
    account_id: str | None
    payload: str  # JSON text, as stored
    occurred_at: dt.datetime


CHANNEL = "outbox_events"
_EVENT_COLUMNS = ("stream, seq, event_id, type, version, nullif(account_id, '') AS account_id,"
                  " payload::text AS payload, occurred_at")


def stream_account(stream: str) -> str:
    """The account a stream is stored under: an account's stream its account, others none."""
    return stream.removeprefix("acct:") if stream.startswith("acct:") else NO_ACCOUNT


async def append(conn: Connection, stream: str, event_id: str, type: str, version: int,
                 account_id: str | None, payload: bytes) -> int:
    """Append one event to ``stream`` and return its ``seq``; the head row's lock (held to
    commit) orders the transactions that emit into one stream."""
    seq: int = await conn.fetchval(
        "INSERT INTO outbox_heads AS h (account_id, stream, seq) VALUES ($1, $2, 1)"
        " ON CONFLICT (account_id, stream) DO UPDATE SET seq = h.seq + 1 RETURNING seq",
        stream_account(stream), stream)
    await conn.execute(
        "INSERT INTO outbox_events (stream, seq, event_id, type, version, account_id, payload)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
        stream, seq, event_id, type, version, stream_account(stream), payload.decode())
    await notify(conn, [stream])
    return seq


async def notify(conn: Connection, streams: list[str]) -> None:
    """Wake the consumers at commit: one notification per stream, sent by the coordinator."""
    await conn.execute("SELECT pg_notify($1, s) FROM unnest($2::text[]) AS s", CHANNEL,
                       streams)


async def events_after(conn: Connection, stream: str, after_seq: int, limit: int
                       ) -> list[StoredEvent]:
    """A stream's events with ``seq > after_seq``, oldest first."""
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM outbox_events WHERE account_id = $1 AND stream = $2"
        " AND seq > $3 ORDER BY seq LIMIT $4", stream_account(stream), stream, after_seq, limit)
    return [StoredEvent(**dict(r)) for r in rows]


async def append_many(conn: Connection,
                      rows: list[tuple[str, str, str, int, str | None, bytes]]) -> None:
    """Append many ``(stream, event_id, type, version, account_id, payload)``: each stream's
    head moves once by its count (locking it, as ``append`` does) and its events take the
    numbers in between, in the order given."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[0]] = counts.get(row[0], 0) + 1
    streams = sorted(counts)
    heads = await conn.fetch(
        "INSERT INTO outbox_heads AS h (account_id, stream, seq) SELECT a, s, n"
        " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(a, s, n) ORDER BY s"
        " ON CONFLICT (account_id, stream) DO UPDATE SET seq = h.seq + excluded.seq"
        " RETURNING stream, seq",
        [stream_account(s) for s in streams], streams, [counts[s] for s in streams])
    next_seq = {r["stream"]: r["seq"] - counts[r["stream"]] + 1 for r in heads}
    seqs = []
    for row in rows:
        seqs.append(next_seq[row[0]])
        next_seq[row[0]] += 1
    if len(rows) >= COPY_FROM:
        await conn.copy_records_to_table(
            "outbox_events", columns=_COPIED_COLUMNS,
            records=[(s, q, e, t, v, stream_account(s), p.decode())
                     for (s, e, t, v, _, p), q in zip(rows, seqs, strict=True)])
    else:
        columns = list(zip(*rows, strict=True))
        await conn.execute(
            "INSERT INTO outbox_events (stream, seq, event_id, type, version, account_id,"
            " payload) SELECT s, q, e, t, v, a, p::jsonb FROM unnest($1::text[], $2::bigint[],"
            " $3::text[], $4::text[], $5::int[], $6::text[], $7::text[])"
            " AS u(s, q, e, t, v, a, p)",
            list(columns[0]), seqs, list(columns[1]), list(columns[2]), list(columns[3]),
            [stream_account(s) for s in columns[0]], [p.decode() for p in columns[5]])
    await notify(conn, streams)


# From this many events a bulk append copies them in (a dunning run's hundreds of thousands
# took 40 % less time than through unnest arrays); below it the COPY's extra round trip
# to describe the table costs more than it saves.
COPY_FROM = 1000
_COPIED_COLUMNS = ["stream", "seq", "event_id", "type", "version", "account_id", "payload"]


# A consumer's cursors (``server.integrations.cursors``).

async def streams_behind(conn: Connection, consumer: str, limit: int) -> list[str]:
    """Streams whose head is past ``consumer``'s cursor (a full scan: at start and rarely)."""
    rows = await conn.fetch(
        "SELECT h.stream FROM outbox_heads h LEFT JOIN outbox_cursors c"
        " ON c.consumer = $1 AND c.stream = h.stream"
        " WHERE h.seq > coalesce(c.seq, 0) LIMIT $2", consumer, limit)
    return [r["stream"] for r in rows]


async def read(conn: Connection, consumer: str, streams: list[str], limit: int,
               total: int) -> list[StoredEvent]:
    """Events of ``streams`` past ``consumer``'s cursors, each stream's in seq order: at most
    ``limit`` a stream and ``total`` in all."""
    cursors = await conn.fetch(
        "SELECT s.stream, coalesce(c.seq, 0) AS seq FROM unnest($2::text[]) AS s(stream)"
        " LEFT JOIN outbox_cursors c ON c.consumer = $1 AND c.stream = s.stream",
        consumer, streams)
    # The cursors first, then the events past them: on Citus the cursors are a coordinator
    # table and the events distributed, and a lateral join across the two is not planned.
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM (SELECT o.*, row_number() OVER"
        "   (PARTITION BY o.account_id, o.stream ORDER BY o.seq) AS n"
        "   FROM outbox_events o JOIN unnest($1::text[], $2::text[], $3::bigint[])"
        "   AS c(account_id, stream, seq) ON o.account_id = c.account_id"
        "   AND o.stream = c.stream AND o.seq > c.seq) e"
        " WHERE n <= $4 ORDER BY stream, seq LIMIT $5",
        [stream_account(r["stream"]) for r in cursors], [r["stream"] for r in cursors],
        [r["seq"] for r in cursors], limit, total)
    return [StoredEvent(**dict(r)) for r in rows]


async def advance(conn: Connection, consumer: str, events: list[StoredEvent]) -> None:
    """Move ``consumer``'s cursors past ``events`` (never back)."""
    last: dict[str, int] = {}
    for e in events:
        last[e.stream] = max(e.seq, last.get(e.stream, 0))
    streams = sorted(last)
    await conn.execute(
        "INSERT INTO outbox_cursors AS c (consumer, stream, seq)"
        " SELECT $1, s, q FROM unnest($2::text[], $3::bigint[]) AS u(s, q)"
        " ON CONFLICT (consumer, stream) DO UPDATE SET seq = greatest(c.seq, excluded.seq)",
        consumer, streams, [last[s] for s in streams])
