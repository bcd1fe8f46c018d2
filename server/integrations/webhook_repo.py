"""SQL of the webhooks: endpoints, secrets, deliveries and the attempt log (migration 0620).

A change to an endpoint notifies ``webhooks_changed`` so the delivery worker, in whichever
process holds it, reloads them; a replay notifies it too, so it picks the new deliveries up.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from billing_oss.core.errors import NotFound
from billing_oss.server.integrations.repo import StoredEvent
from billing_oss.server.store.pool import Connection

CHANGED = "webhooks_changed"
PING = "webhook.ping"


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    endpoint_id: int
    url: str
    event_types: list[str]
    description: str
    max_concurrency: int
    enabled: bool
    disabled_reason: str | None
    dead_in_a_row: int
    created_at: dt.datetime
    updated_at: dt.datetime


class LiveEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """What the delivery worker needs of an endpoint: where, how many at once, which keys."""

    endpoint_id: int
    url: str
    max_concurrency: int
    enabled: bool
    secrets: list[str]


class Delivery(msgspec.Struct, kw_only=True):
    delivery_id: int
    endpoint_id: int
    stream: str
    seq: int
    event_id: str
    event_type: str
    version: int
    account_id: str | None
    payload: str
    occurred_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime


class DeliveryRow(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    endpoint_id: int
    event_id: str
    event_type: str
    stream: str
    seq: int
    account_id: str | None
    replay: bool
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    last_status: int | None
    last_error: str | None
    last_latency_ms: float | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    delivery_id: int
    attempt: int
    attempted_at: dt.datetime
    status: int | None
    latency_ms: float
    error: str | None


_ENDPOINT_COLUMNS = ("endpoint_id, url, event_types, description, max_concurrency, enabled, "
                     "disabled_reason, dead_in_a_row, created_at, updated_at")


async def create(conn: Connection, url: str, event_types: list[str], description: str,
                 max_concurrency: int, secret: str) -> Endpoint:
    row = await conn.fetchrow(
        "INSERT INTO webhook_endpoints (url, event_types, description, max_concurrency)"
        f" VALUES ($1, $2, $3, $4) RETURNING {_ENDPOINT_COLUMNS}",
        url, event_types, description, max_concurrency)
    assert row is not None
    await conn.execute("INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)",
                       row["endpoint_id"], secret)
    await notify(conn)
    return Endpoint(**dict(row))


async def get(conn: Connection, endpoint_id: int) -> Endpoint:
    row = await conn.fetchrow(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1",
        endpoint_id)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", endpoint_id=endpoint_id)
    return Endpoint(**dict(row))


async def find(conn: Connection, after: int | None, limit: int) -> list[Endpoint]:
    rows = await conn.fetch(
        f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id > $1"
        " ORDER BY endpoint_id LIMIT $2", after or 0, limit)
    return [Endpoint(**dict(r)) for r in rows]


async def update(conn: Connection, endpoint_id: int, *, url: str | None,
                 event_types: list[str] | None, description: str | None,
                 max_concurrency: int | None, enabled: bool | None) -> Endpoint:
    """Change what is given; enabling clears the reason it was disabled and its count of
    dead letters."""
    row = await conn.fetchrow(
        "UPDATE webhook_endpoints SET url = coalesce($2, url),"
        " event_types = coalesce($3, event_types), description = coalesce($4, description),"
        " max_concurrency = coalesce($5, max_concurrency), enabled = coalesce($6, enabled),"
        " disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,"
        " dead_in_a_row = CASE WHEN $6 THEN 0 ELSE dead_in_a_row END, updated_at = now()"
        f" WHERE endpoint_id = $1 RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id, url, event_types, description, max_concurrency, enabled)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", endpoint_id=endpoint_id)
    await notify(conn)
    return Endpoint(**dict(row))


async def delete(conn: Connection, endpoint_id: int) -> Endpoint:
    endpoint = await get(conn, endpoint_id)
    await conn.execute("DELETE FROM webhook_endpoints WHERE endpoint_id = $1", endpoint_id)
    await notify(conn)
    return endpoint


async def rotate(conn: Connection, endpoint_id: int, secret: str, grace_s: float) -> None:
    """Add ``secret``; the live ones expire after ``grace_s`` (both sign until then)."""
    await get(conn, endpoint_id)
    await conn.execute(
        "UPDATE webhook_secrets SET expires_at = now() + make_interval(secs => $2)"
        " WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > now() +"
        " make_interval(secs => $2))", endpoint_id, grace_s)
    await conn.execute("INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)",
                       endpoint_id, secret)
    await notify(conn)


async def live_endpoints(conn: Connection) -> list[LiveEndpoint]:
    rows = await conn.fetch(
        "SELECT w.endpoint_id, w.url, w.max_concurrency, w.enabled,"
        " array_agg(s.secret ORDER BY s.secret_id DESC) FILTER (WHERE s.secret IS NOT NULL)"
        "   AS secrets"
        " FROM webhook_endpoints w LEFT JOIN webhook_secrets s ON s.endpoint_id = w.endpoint_id"
        "   AND (s.expires_at IS NULL OR s.expires_at > now())"
        " GROUP BY w.endpoint_id")
    return [LiveEndpoint(endpoint_id=r["endpoint_id"], url=r["url"],
                         max_concurrency=r["max_concurrency"], enabled=r["enabled"],
                         secrets=list(r["secrets"] or [])) for r in rows]


async def next_expiry(conn: Connection) -> dt.datetime | None:
    """When the next secret in its grace window stops signing."""
    found: dt.datetime | None = await conn.fetchval(
        "SELECT min(expires_at) FROM webhook_secrets WHERE expires_at > now()")
    return found


async def notify(conn: Connection) -> None:
    await conn.execute("SELECT pg_notify($1, '')", CHANGED)


_DELIVERY_SELECT = (
    "SELECT d.delivery_id, d.endpoint_id, d.stream, d.seq, d.event_id, d.event_type,"
    " e.version, d.account_id, e.payload::text AS payload, e.occurred_at, d.attempts,"
    " d.next_attempt_at FROM webhook_deliveries d"
    " JOIN outbox_events e ON e.account_id = coalesce(d.account_id, '')"
    " AND e.stream = d.stream AND e.seq = d.seq")


async def fan_out(conn: Connection, events: list[StoredEvent]) -> list[Delivery]:
    """One pending delivery per event × enabled endpoint subscribed to its type (a ping
    only to the endpoint it names), in event order; returns them."""
    rows = await conn.fetch(
        "INSERT INTO webhook_deliveries (endpoint_id, stream, seq, event_id, event_type,"
        " account_id)"
        " SELECT w.endpoint_id, e.stream, e.seq, e.event_id, e.type, e.account_id"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[])"
        "   WITH ORDINALITY AS e(stream, seq, event_id, type, account_id, n)"
        " JOIN webhook_endpoints w ON w.enabled AND CASE WHEN e.type = $6"
        "   THEN e.stream = 'webhook:' || w.endpoint_id"
        "   ELSE e.type = ANY(w.event_types) OR '*' = ANY(w.event_types) END"
        " ORDER BY e.n, w.endpoint_id"
        " RETURNING delivery_id, endpoint_id, stream, seq, next_attempt_at",
        [e.stream for e in events], [e.seq for e in events], [e.event_id for e in events],
        [e.type for e in events], [e.account_id for e in events], PING)
    by_key = {(e.stream, e.seq): e for e in events}
    out = []
    for r in rows:
        e = by_key[r["stream"], r["seq"]]
        out.append(Delivery(delivery_id=r["delivery_id"], endpoint_id=r["endpoint_id"],
                            stream=e.stream, seq=e.seq, event_id=e.event_id,
                            event_type=e.type, version=e.version, account_id=e.account_id,
                            payload=e.payload, occurred_at=e.occurred_at, attempts=0,
                            next_attempt_at=r["next_attempt_at"]))
    out.sort(key=lambda d: d.delivery_id)
    return out


async def pending(conn: Connection, endpoint_id: int, *, replays_only: bool,
                  exclude: list[int], limit: int) -> list[Delivery]:
    """An endpoint's first ``limit`` deliveries not yet delivered nor dead-lettered (nor in
    ``exclude``), in delivery order: within each stream, the next ones in its order."""
    rows = await conn.fetch(
        _DELIVERY_SELECT + " WHERE d.endpoint_id = $1 AND d.state = 'pending'"
        " AND (d.replay OR NOT $2) AND NOT (d.delivery_id = ANY($3))"
        " ORDER BY d.delivery_id LIMIT $4", endpoint_id, replays_only, exclude, limit)
    return [Delivery(**dict(r)) for r in rows]


class Outcome(msgspec.Struct, frozen=True):
    """One attempt's result and what it leaves the delivery as."""

    delivery_id: int
    attempt: int
    endpoint_id: int
    attempted_at: dt.datetime
    status: int | None
    latency_ms: float
    error: str | None
    state: str  # pending (a retry is due at next_attempt_at) | delivered | dead
    next_attempt_at: dt.datetime


async def record(conn: Connection, outcomes: list[Outcome]) -> None:
    """Log attempts and move their deliveries on, in two statements."""
    cols = list(zip(*(msgspec.structs.astuple(o) for o in outcomes), strict=True))
    await conn.execute(  # an endpoint deleted meanwhile took its deliveries along
        "INSERT INTO webhook_attempts (delivery_id, attempt, endpoint_id, attempted_at,"
        " status, latency_ms, error) SELECT u.* FROM unnest($1::bigint[], $2::int[],"
        " $3::bigint[], $4::timestamptz[], $5::int[], $6::float8[], $7::text[])"
        " AS u(id, attempt, endpoint_id, at, status, latency, error)"
        " WHERE EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.delivery_id = u.id"
        "   FOR KEY SHARE) ON CONFLICT DO NOTHING", *cols[:7])
    await conn.execute(
        "UPDATE webhook_deliveries d SET state = u.state, attempts = u.attempt,"
        " last_status = u.status, last_error = u.error, last_latency_ms = u.latency,"
        " next_attempt_at = u.next_at,"
        " finished_at = CASE WHEN u.state = 'pending' THEN NULL ELSE u.at END"
        " FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[],"
        " $6::float8[], $7::timestamptz[], $8::timestamptz[])"
        " AS u(id, attempt, state, status, error, latency, next_at, at)"
        " WHERE d.delivery_id = u.id AND d.state = 'pending'",
        cols[0], cols[1], cols[7], cols[4], cols[6], cols[5], cols[8], cols[3])


async def mark_dead(conn: Connection, endpoint_id: int, dead: int, delivered: bool) -> int:
    """Count an endpoint's dead letters in a row (a success resets it); returns the count."""
    count: int = await conn.fetchval(
        "UPDATE webhook_endpoints SET dead_in_a_row = CASE WHEN $3 THEN 0 ELSE dead_in_a_row"
        " END + $2 WHERE endpoint_id = $1 RETURNING dead_in_a_row",
        endpoint_id, dead, delivered)
    return count or 0


async def disable(conn: Connection, endpoint_id: int, reason: str) -> Endpoint | None:
    row = await conn.fetchrow(
        "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, updated_at = now()"
        f" WHERE endpoint_id = $1 AND enabled RETURNING {_ENDPOINT_COLUMNS}",
        endpoint_id, reason)
    if row is None:
        return None
    await notify(conn)
    return Endpoint(**dict(row))


async def deliveries(conn: Connection, endpoint_id: int, *, state: str | None,
                     after: int | None, limit: int) -> list[DeliveryRow]:
    """An endpoint's deliveries, newest first."""
    rows = await conn.fetch(
        "SELECT delivery_id, endpoint_id, event_id, event_type, stream, seq, account_id,"
        " replay, state, attempts, next_attempt_at, last_status, last_error, last_latency_ms,"
        " created_at, finished_at FROM webhook_deliveries WHERE endpoint_id = $1"
        " AND ($2::text IS NULL OR state = $2) AND ($3::bigint IS NULL OR delivery_id < $3)"
        " ORDER BY delivery_id DESC LIMIT $4", endpoint_id, state, after, limit)
    return [DeliveryRow(**dict(r)) for r in rows]


async def attempts(conn: Connection, delivery_ids: list[int]) -> list[Attempt]:
    rows = await conn.fetch(
        "SELECT delivery_id, attempt, attempted_at, status, latency_ms, error"
        " FROM webhook_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        delivery_ids)
    return [Attempt(**dict(r)) for r in rows]


async def replay(conn: Connection, endpoint_id: int, *, event_id: str | None,
                 since: dt.datetime | None, until: dt.datetime | None) -> int:
    """Queue the endpoint's past events again: one by id, or those of a time range that
    the endpoint is subscribed to. Returns how many."""
    await get(conn, endpoint_id)
    count: int = await conn.fetchval(
        "WITH queued AS (INSERT INTO webhook_deliveries (endpoint_id, stream, seq, event_id,"
        " event_type, account_id, replay)"
        " SELECT w.endpoint_id, e.stream, e.seq, e.event_id, e.type,"
        " nullif(e.account_id, ''), true"
        " FROM outbox_events e JOIN webhook_endpoints w ON w.endpoint_id = $1"
        " WHERE CASE WHEN $2::text IS NOT NULL THEN e.event_id = $2"
        "   ELSE e.occurred_at >= $3 AND e.occurred_at < $4"
        "   AND (e.type = ANY(w.event_types) OR '*' = ANY(w.event_types)) END"
        " ORDER BY e.stream, e.seq RETURNING 1) SELECT count(*) FROM queued",
        endpoint_id, event_id, since, until)
    if count:
        await notify(conn)
    return count


async def try_lead(conn: Connection, lock: int) -> bool:
    """The session lock one process delivers under; False when another holds it."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock))


async def stop_leading(conn: Connection, lock: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", lock)


async def from_now(conn: Connection, seconds: float) -> dt.datetime:
    """The database's now plus ``seconds`` (the clock the expiries compare with)."""
    until: dt.datetime = await conn.fetchval("SELECT now() + make_interval(secs => $1)",
                                             seconds)
    return until
