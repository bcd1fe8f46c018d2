"""All of the settlement package's SQL (asyncpg, parameterised).

Writers take a connection inside the caller's transaction; readers take a pool or a
connection. File sequence numbers come from ``settlement_sequences`` rows locked by the
transaction that stores the file, so they are gapless: a failed file gives its number back.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TypeAlias

import asyncpg
import msgspec

from billing_oss.server.settlement.model import Partner, PartnerIn, RateIn, SettlementFile
from billing_oss.server.store.pool import Connection

MAX_FSN = 99999
_FILE_COLUMNS = (
    "file_id, partner, direction, file_type, kind, name, fsn, cycle, rap_fsn, sha256, "
    "event_count, "
    "total_charge, decimal_places, tap_currency, period_from, period_to, state, supersedes, "
    "answers, detail::text AS detail, created_at, sent_at, closed_at, "
    "octet_length(content) AS size")
_PARTNER_COLUMNS = (
    "tadig, our_tadig, name, tap_currency, local_currency, tap_decimal_places, rate_source, "
    "wholesale_tariff, imsi_prefixes, utc_offset, file_kind, sftp::text AS sftp, "
    "retail_markup_percent::text AS retail_markup_percent, max_event_age_days, created_at, "
    "updated_at")

Db: TypeAlias = "Connection | asyncpg.Pool[Any]"


def _partner(row: asyncpg.Record) -> Partner:
    data = dict(row)
    data["local_currency"] = data["local_currency"].strip()
    sftp = json.loads(data["sftp"])
    data["sftp"] = sftp or None
    data["retail_markup_percent"] = format(Decimal(data["retail_markup_percent"]).normalize(),
                                           "f")
    return msgspec.convert(data, Partner)


def _file(row: asyncpg.Record) -> SettlementFile:
    data = dict(row)
    data["detail"] = json.loads(data["detail"])
    return msgspec.convert(data, SettlementFile)


# Partners and exchange rates ---------------------------------------------------------------

async def upsert_partner(conn: Connection, p: PartnerIn) -> tuple[Partner | None, Partner]:
    """Create or replace a partner; returns (before, after)."""
    before = await get_partner(conn, p.tadig, lock=True)
    sftp = msgspec.json.encode(p.sftp).decode() if p.sftp is not None else "{}"
    # updated_at from the inserted row's default: Citus refuses now() in DO UPDATE SET on
    # partners, a reference table there.
    row = await conn.fetchrow(
        "INSERT INTO partners (tadig, our_tadig, name, tap_currency, local_currency, "
        " tap_decimal_places, rate_source, wholesale_tariff, imsi_prefixes, utc_offset, "
        " file_kind, sftp, retail_markup_percent, max_event_age_days) VALUES ($1, $2, $3, $4, "
        " $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13::numeric, $14) "
        "ON CONFLICT (tadig) DO UPDATE SET our_tadig = $2, name = $3, tap_currency = $4, "
        " local_currency = $5, tap_decimal_places = $6, rate_source = $7, "
        " wholesale_tariff = $8, imsi_prefixes = $9, utc_offset = $10, file_kind = $11, "
        " sftp = $12::jsonb, retail_markup_percent = $13::numeric, "
        " max_event_age_days = $14, updated_at = excluded.updated_at "
        f"RETURNING {_PARTNER_COLUMNS}",
        p.tadig, p.our_tadig, p.name, p.tap_currency, p.local_currency, p.tap_decimal_places,
        p.rate_source, p.wholesale_tariff, p.imsi_prefixes, p.utc_offset, p.file_kind, sftp,
        p.retail_markup_percent, p.max_event_age_days)
    assert row is not None
    return before, _partner(row)


async def get_partner(db: Db, tadig: str, *, lock: bool = False) -> Partner | None:
    row = await db.fetchrow(
        f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE tadig = $1"
        + (" FOR UPDATE" if lock else ""), tadig)
    return _partner(row) if row is not None else None


async def list_partners(db: Db, after: str | None, limit: int) -> list[Partner]:
    rows = await db.fetch(
        f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE $1::text IS NULL OR tadig > $1 "
        "ORDER BY tadig LIMIT $2", after, limit)
    return [_partner(r) for r in rows]


async def partner_for_imsi(db: Db, imsi: str) -> Partner | None:
    row = await db.fetchrow(
        f"SELECT {_PARTNER_COLUMNS} FROM partners p WHERE EXISTS (SELECT 1 FROM "
        "unnest(p.imsi_prefixes) AS x WHERE starts_with($1, x)) ORDER BY tadig LIMIT 1", imsi)
    return _partner(row) if row is not None else None


async def subscriber_accounts(db: Db, identifiers: Sequence[str]
                              ) -> dict[str, tuple[str, str]]:
    """identifier -> (account id, account currency), for those of ``identifiers`` that are
    our accounts' identifiers."""
    rows = await db.fetch(
        "SELECT i.identifier, a.account_id, a.currency FROM account_identifiers i "
        "JOIN accounts a ON a.account_id = i.account_id WHERE i.identifier = ANY($1::text[])",
        list(identifiers))
    return {r[0]: (r[1], str(r[2]).strip()) for r in rows}


async def tariff_versions(db: Db, tariff_id: str) -> tuple[str, list[dict[str, Any]]] | None:
    """The currency and stored version definitions of a tariff (None: no such tariff)."""
    currency = await db.fetchval("SELECT currency FROM tariffs WHERE tariff_id = $1", tariff_id)
    if currency is None:
        return None
    rows = await db.fetch(
        "SELECT definition::text FROM tariff_versions WHERE tariff_id = $1 "
        "ORDER BY effective_from", tariff_id)
    return str(currency).strip(), [json.loads(r[0]) for r in rows]


async def put_rate(conn: Connection, r: RateIn) -> Decimal | None:
    """Store a rate; returns the rate it replaced, if any."""
    before = await conn.fetchval(
        "SELECT rate FROM exchange_rates WHERE source = $1 AND tap_currency = $2 AND "
        "local_currency = $3 AND valid_from = $4 FOR UPDATE",
        r.source, r.tap_currency, r.local_currency, r.valid_from)
    await conn.execute(
        "INSERT INTO exchange_rates (source, tap_currency, local_currency, valid_from, rate) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source, tap_currency, local_currency, "
        "valid_from) DO UPDATE SET rate = $5",
        r.source, r.tap_currency, r.local_currency, r.valid_from, Decimal(r.rate))
    return before  # type: ignore[no-any-return]


async def rate_on(db: Db, source: str, tap_currency: str, local_currency: str,
                  day: dt.date) -> Decimal | None:
    return await db.fetchval(  # type: ignore[no-any-return]
        "SELECT rate FROM exchange_rates WHERE source = $1 AND tap_currency = $2 AND "
        "local_currency = $3 AND valid_from <= $4 ORDER BY valid_from DESC LIMIT 1",
        source, tap_currency, local_currency, day)


# Sequence numbers ----------------------------------------------------------------------------

async def next_fsn(conn: Connection, partner: str, direction: str,
                   kind: str) -> tuple[int, int]:
    """The next file sequence number (1..99999, then 1 again in the next cycle) and its
    cycle, held until commit."""
    await conn.execute(
        "INSERT INTO settlement_sequences (partner, direction, kind) VALUES ($1, $2, $3) "
        "ON CONFLICT DO NOTHING", partner, direction, kind)
    row = await conn.fetchrow(
        "UPDATE settlement_sequences SET "
        "cycle = CASE WHEN last_fsn >= $4 THEN cycle + 1 ELSE cycle END, "
        "last_fsn = CASE WHEN last_fsn >= $4 THEN 1 ELSE last_fsn + 1 END "
        "WHERE partner = $1 AND direction = $2 AND kind = $3 RETURNING last_fsn, cycle",
        partner, direction, kind, MAX_FSN)
    assert row is not None
    return int(row[0]), int(row[1])


async def last_fsn(db: Db, partner: str, direction: str, kind: str) -> int:
    value = await db.fetchval(
        "SELECT last_fsn FROM settlement_sequences WHERE partner = $1 AND direction = $2 "
        "AND kind = $3", partner, direction, kind)
    return int(value or 0)


async def set_last_fsn(conn: Connection, partner: str, direction: str, kind: str,
                       fsn: int) -> None:
    await conn.execute(
        "INSERT INTO settlement_sequences (partner, direction, kind, last_fsn) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (partner, direction, kind) "
        "DO UPDATE SET last_fsn = $4", partner, direction, kind, fsn)


# Files ---------------------------------------------------------------------------------------

async def insert_file(conn: Connection, *, partner: str, direction: str, file_type: str,
                      kind: str, name: str, fsn: int, rap_fsn: int | None, content: bytes,
                      sha256: str, event_count: int, total_charge: int, decimal_places: int,
                      tap_currency: str, period: tuple[dt.datetime, dt.datetime] | None,
                      state: str, supersedes: int | None = None, answers: int | None = None,
                      detail: dict[str, Any] | None = None, cycle: int = 0) -> SettlementFile:
    row = await conn.fetchrow(
        "INSERT INTO settlement_files (partner, direction, file_type, kind, name, fsn, "
        " rap_fsn, content, sha256, event_count, total_charge, decimal_places, tap_currency, "
        " period_from, period_to, state, supersedes, answers, detail, cycle) VALUES ($1, $2, "
        " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19::jsonb,"
        " $20) "
        f"RETURNING {_FILE_COLUMNS}",
        partner, direction, file_type, kind, name, fsn, rap_fsn, content, sha256, event_count,
        total_charge, decimal_places, tap_currency, period[0] if period else None,
        period[1] if period else None, state, supersedes, answers,
        json.dumps(detail or {}), cycle)
    assert row is not None
    return _file(row)


async def get_file(db: Db, file_id: int, *, lock: bool = False) -> SettlementFile | None:
    row = await db.fetchrow(
        f"SELECT {_FILE_COLUMNS} FROM settlement_files WHERE file_id = $1"
        + (" FOR UPDATE" if lock else ""), file_id)
    return _file(row) if row is not None else None


async def file_content(db: Db, file_id: int) -> bytes | None:
    return await db.fetchval(  # type: ignore[no-any-return]
        "SELECT content FROM settlement_files WHERE file_id = $1", file_id)


async def find_file(db: Db, *, partner: str, direction: str, file_type: str, fsn: int,
                    kind: str | None = None, lock: bool = False) -> SettlementFile | None:
    """The current file of that identity (the newest regeneration, not a superseded one)."""
    row = await db.fetchrow(
        f"SELECT {_FILE_COLUMNS} FROM settlement_files WHERE partner = $1 AND direction = $2 "
        "AND file_type = ANY($3::text[]) AND fsn = $4 AND ($5::text IS NULL OR kind = $5) "
        "AND state <> 'superseded' ORDER BY file_id DESC LIMIT 1"
        + (" FOR UPDATE" if lock else ""),
        partner, direction, _types(file_type), fsn, kind)
    return _file(row) if row is not None else None


def _types(file_type: str) -> list[str]:
    return ["tap", "notification"] if file_type == "tap" else [file_type]


async def find_by_sha(db: Db, partner: str, direction: str, sha256: str) -> SettlementFile | None:
    row = await db.fetchrow(
        f"SELECT {_FILE_COLUMNS} FROM settlement_files WHERE partner = $1 AND direction = $2 "
        "AND sha256 = $3 LIMIT 1", partner, direction, sha256)
    return _file(row) if row is not None else None


async def list_files(db: Db, *, partner: str | None, state: str | None, after: int | None,
                     limit: int) -> list[SettlementFile]:
    rows = await db.fetch(
        f"SELECT {_FILE_COLUMNS} FROM settlement_files WHERE ($1::text IS NULL OR partner = $1)"
        " AND ($2::text IS NULL OR state = $2) AND ($3::bigint IS NULL OR file_id > $3) "
        "ORDER BY file_id LIMIT $4", partner, state, after, limit)
    return [_file(r) for r in rows]


async def files_to_send(db: Db, partner: str) -> list[SettlementFile]:
    rows = await db.fetch(
        f"SELECT {_FILE_COLUMNS} FROM settlement_files WHERE partner = $1 AND direction = 'out'"
        " AND state = 'generated' ORDER BY file_id", partner)
    return [_file(r) for r in rows]


async def set_file_state(conn: Connection, file_id: int, state: str, *,
                         sent: bool = False, closed: bool = False,
                         detail: dict[str, Any] | None = None) -> None:
    await conn.execute(
        "UPDATE settlement_files SET state = $2, "
        "sent_at = CASE WHEN $3 THEN now() ELSE sent_at END, "
        "closed_at = CASE WHEN $4 THEN now() ELSE closed_at END, "
        "detail = detail || $5::jsonb WHERE file_id = $1",
        file_id, state, sent, closed, json.dumps(detail or {}))


async def files_in_period(db: Db, partner: str, start: dt.datetime,
                          end: dt.datetime) -> list[SettlementFile]:
    """Files of a partner created in ``[start, end)``, superseded ones included."""
    rows = await db.fetch(
        f"SELECT {_FILE_COLUMNS} FROM settlement_files WHERE partner = $1 AND "
        "created_at >= $2 AND created_at < $3 ORDER BY file_id", partner, start, end)
    return [_file(r) for r in rows]


# Events --------------------------------------------------------------------------------------

class RoamingRow(msgspec.Struct, frozen=True):
    suspense_id: int
    record: str


async def roaming_usage(conn: Connection, prefixes: Sequence[str], start: dt.datetime,
                        end: dt.datetime, limit: int) -> list[RoamingRow]:
    """Open UNKNOWN_ACCOUNT suspense records whose IMSI is in the partner's ranges and whose
    event time is in ``[start, end)``: the usage of its subscribers visiting us. Locked."""
    rows = await conn.fetch(
        "SELECT suspense_id, record::text FROM suspense WHERE account_id = '' AND "
        "state = 'open' AND reason = 'UNKNOWN_ACCOUNT' AND record IS NOT NULL AND "
        "EXISTS (SELECT 1 FROM unnest($1::text[]) AS x WHERE starts_with(record->>'imsi', x))"
        " AND "
        "(record->>'event_time')::timestamptz >= $2 AND "
        "(record->>'event_time')::timestamptz < $3 "
        "ORDER BY (record->>'event_time')::timestamptz, suspense_id LIMIT $4 FOR UPDATE",
        list(prefixes), start, end, limit)
    return [RoamingRow(r[0], r[1]) for r in rows]


async def resolve_suspense(conn: Connection, ids: Sequence[int], resolution: str) -> None:
    await conn.execute(
        "UPDATE suspense SET state = 'retried', resolution = $2, resolved_at = now() "
        "WHERE suspense_id = ANY($1::bigint[]) AND state = 'open'", list(ids), resolution)


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    event_id: int
    partner: str
    file_id: int
    event_index: int
    source: str
    record_key: str
    event_time: dt.datetime
    imsi: str
    record: str
    charge_micros: int
    tap_charge: int
    state: str
    error_code: int | None
    return_file_id: int | None
    corrected_micros: int | None


_EVENT_COLUMNS = ("event_id, partner, file_id, event_index, source, record_key, event_time, "
                  "imsi, record::text AS record, charge_micros, tap_charge, state, error_code, "
                  "return_file_id, corrected_micros")
NewEvent = tuple[int, str, str, int | None, int | None, dt.datetime, str, str, int, int]


async def insert_events(conn: Connection, partner: str, direction: str, file_id: int,
                        rows: Sequence[NewEvent], state: str) -> None:
    """rows: (index, source, record_key, suspense id, previous event id, event_time, imsi,
    record json, charge micros, tap charge)."""
    if not rows:
        return
    cols = [list(c) for c in zip(*rows, strict=True)]
    await conn.execute(
        "INSERT INTO settlement_events (partner, direction, file_id, event_index, source, "
        " record_key, suspense_id, previous_event_id, event_time, imsi, record, charge_micros,"
        " tap_charge, state) SELECT $1, $2, $3, i, s, k, sid, prev, t, im, r::jsonb, c, tc, $4"
        " FROM unnest($5::int[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], "
        "$10::timestamptz[], $11::text[], $12::text[], $13::bigint[], $14::bigint[]) "
        "AS u(i, s, k, sid, prev, t, im, r, c, tc)",
        partner, direction, file_id, state, *cols)


async def events_of_file(db: Db, file_id: int) -> list[EventRow]:
    rows = await db.fetch(f"SELECT {_EVENT_COLUMNS} FROM settlement_events WHERE file_id = $1 "
                          "ORDER BY event_index", file_id)
    return [EventRow(**dict(r)) for r in rows]


async def events_in_state(conn: Connection, partner: str, state: str,
                          lock: bool = False) -> list[EventRow]:
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM settlement_events WHERE partner = $1 AND "
        "direction = 'out' AND state = $2 ORDER BY event_time, event_id"
        + (" FOR UPDATE" if lock else ""), partner, state)
    return [EventRow(**dict(r)) for r in rows]


async def set_events_state(conn: Connection, event_ids: Sequence[int], state: str) -> None:
    await conn.execute("UPDATE settlement_events SET state = $2 WHERE event_id = "
                       "ANY($1::bigint[])", list(event_ids), state)


async def return_event(conn: Connection, event_id: int, error_code: int,
                       return_file_id: int) -> None:
    await conn.execute(
        "UPDATE settlement_events SET state = 'returned', error_code = $2, "
        "return_file_id = $3 WHERE event_id = $1", event_id, error_code, return_file_id)


async def correct_event(conn: Connection, event_id: int, charge_micros: int) -> None:
    await conn.execute(
        "UPDATE settlement_events SET state = 'corrected', corrected_micros = $2 "
        "WHERE event_id = $1", event_id, charge_micros)


async def count_events(db: Db, partner: str) -> dict[str, int]:
    rows = await db.fetch("SELECT state, count(*) FROM settlement_events WHERE partner = $1 "
                          "GROUP BY state", partner)
    return {r[0]: int(r[1]) for r in rows}
