"""End-to-end ingest throughput into PostgreSQL, beside two raw asyncpg binary COPYs on the
same lanes: of the same final rows into the same tables (with the same indexes), and of one
lean row per record with one unique key on (source, record_key) — the physical limit here.

    python perf/bench_ingest.py [--records N] [--runs R] [--quick] [--database-url DSN]
                                [--format FMT] [--ladder] [--order ORDER]
    python perf/bench_ingest.py --records N --prefill M [--order scattered|arrival]
                                [--partitions month|day [--fold]] [--shared-buffers SIZE]
                                [--setting NAME=VALUE ...]

The default input is a 3GPP TS 32.297 file of 32.298 BER records (2 M by default): MSC
moCallRecords (national numbers, peak hours) and S-GW / P-GW data records, every one of
them chargeable by the demo tariff.

Both peers write the way ingest does: the rows in chunks of the pipeline's ``batch_size``
records, each chunk in one transaction, the chunks spread over as many connections as the
pipeline has write lanes (``write_lanes``), all lanes at once. The first peer COPYs the rows
our run stored (a usage key, a usage row, a charge per record, the charges' rollup deltas
of both levels, spread over the chunks by their records; every index). The lean peer
COPYs, per record, one row holding the same usage row's columns and its charge's amount,
currency, tariff version, zone and band into a table whose only index is the unique key on
(source, record_key): what a durable, deduplicated, charged record needs at least.

Each side runs ``--runs`` times (default 3), each run into fresh databases, the sides
interleaved; the median rate is reported with the range. Prints our records/s, each peer's,
ours as a share of each, this process's peak RSS during ingest, and for each side the CPU
per record: this process (``process_time``), the PostgreSQL backends serving its
connections (``/proc/<pid>/stat``, where the server runs on this machine) and the rest of
the machine (/proc/stat: WAL writer, checkpointer, other jobs), with the rate the machine's
cores, fully busy, would allow at that cost.
Without --database-url (or BILLING_OSS_TEST_DATABASE_URL) an embedded PostgreSQL is started
in a temporary directory. The file is generated on disk first (not timed).

``--ladder`` adds peers between the two, each adding one part of the write set to the lean
row (``LADDER``): where PostgreSQL's CPU per record goes, part by part.

``--prefill M`` measures how ingest holds up as the month grows instead: ``--records`` into an
empty database, then M more through the same pipeline in files of at most ``--records``
(their keys following on, the rollup deltas compacted after each file as ``serve`` does every
minute; not timed), then ``--records`` more. Both timed ingests print their rate, the CPU
split, and what the server did (WAL and full-page images, checkpoints, buffers written,
shared-buffer hit ratio, reads and hits per record of the busiest indexes);
``--shared-buffers`` runs the embedded server with another shared_buffers than the project's,
``--setting`` with another value of any setting; ``--partitions day`` makes the month's usage
and charges each of their UTC days, as the schema makes the open month (migration 1550; the
default, ``month``, is one table each, as a closed month is), and ``--fold`` then folds them
into one table as housekeeping does once the month closes, timed.

``--order`` sets the records' event times: ``scattered`` (the default) puts consecutive records
on every weekday of the month, so each batch inserts all over the time-led indexes;
``arrival`` walks the month's peak hours in time order over all the run's records, each up to
an hour early, as a switch writes its files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import asyncpg
import msgspec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from billing_oss.core.records import UsageRecord  # noqa: E402
from billing_oss.server import config  # noqa: E402
from billing_oss.server.analytics import compaction  # noqa: E402
from billing_oss.server.composition import decoders, rater_factory, read_catalog_file  # noqa: E402
from billing_oss.server.pipeline.pipeline import Pipeline  # noqa: E402
from billing_oss.server.store import catalog_repo, usage_repo  # noqa: E402
from billing_oss.server.store.charge_writes import HOUR_COLUMNS, ROLLUP_COLUMNS  # noqa: E402
from billing_oss.server.store.dsn import with_database  # noqa: E402
from billing_oss.server.store.migrate import migrate  # noqa: E402

ACCOUNTS = 1000
COPY_TABLES = {
    "usage_keys": ("source", "record_key", "account_id", "event_time", "usage_id"),
    "usage_records": (*usage_repo.USAGE_FIXED, *usage_repo.USAGE_OPTIONAL,
                      *usage_repo.USAGE_TAIL),
    "charges": ("account_id", "charge_id", "event_time", "usage_id", "kind", "amount_micros",
                "currency", "tariff_version_id", "zone", "band"),
}
# The levels' deltas written beside the charges, and their columns.
ROLLUP_TABLES = {"charge_rollups": ROLLUP_COLUMNS, "charge_rollups_monthly": ROLLUP_COLUMNS,
                 "charge_hour_totals": HOUR_COLUMNS}
CHARGE_CARRIED = ("amount_micros", "currency", "tariff_version_id", "zone", "band")
LEAN_COLUMNS = (*COPY_TABLES["usage_records"], *CHARGE_CARRIED)
# The least one charged record needs durably: its usage row with the first charge carried on
# it, deduplicated by one unique index. A benchmark table only: the schema is the migrations'.
LEAN_DDL = ("CREATE TABLE lean_usage (LIKE usage_records INCLUDING DEFAULTS, "
            "amount_micros bigint, "
            "currency char(3), tariff_version_id bigint, zone text, band text, "
            "PRIMARY KEY (source, record_key))")
LEAN_SELECT = (f"SELECT {', '.join('u.' + c for c in COPY_TABLES['usage_records'])}, "
               f"{', '.join('c.' + c for c in CHARGE_CARRIED)} FROM usage_records u "
               "LEFT JOIN charges c ON c.account_id = u.account_id AND c.usage_id = u.usage_id "
               "AND c.kind = 'charge' ORDER BY u.usage_id")


def catalog() -> dict[str, object]:
    demo = read_catalog_file(REPO / "config" / "demo-catalog.json")
    demo["accounts"] = [{"id": f"B{i}", "identifiers": [f"3361{i:07d}"], "tariff": "retail"}
                        for i in range(ACCOUNTS)]
    return demo


# Weekdays of January 2026, 08:00-18:59 UTC: the demo tariff's peak band (Europe/Paris).
_WEEKDAYS = [d for d in range(1, 32) if (d + 2) % 7 < 5]


def _peak_time(i: int) -> str:
    return f"2026-01-{_WEEKDAYS[i % len(_WEEKDAYS)]:02d}T{8 + i % 11:02d}:{i % 60:02d}:00Z"


def generate_jsonl(path: Path, n: int) -> None:
    rng = random.Random(7)
    enc = msgspec.json.Encoder()
    with path.open("wb") as f:
        buf = bytearray()
        for i in range(n):
            rec = UsageRecord(
                record_key=f"r{i:09d}", source="bench", kind="voice",
                event_time=_peak_time(i),
                duration_s=rng.randrange(1, 3600), calling=f"3361{rng.randrange(ACCOUNTS):07d}",
                called=f"3362{rng.randrange(10**7):07d}")
            enc.encode_into(rec, buf, len(buf))
            buf += b"\n"
            if len(buf) > 1 << 20:
                f.write(buf)
                buf.clear()
        f.write(buf)


def _tlv(tag: int, body: bytes, constructed: bool = False) -> bytes:
    assert tag < 128 and len(body) < 256
    head = bytes([(0xA0 if constructed else 0x80) | tag]) if tag < 31 else bytes(
        [0xBF if constructed else 0x9F, tag])
    size = len(body)
    return head + (bytes([size]) if size < 0x80 else bytes([0x81, size])) + body


def _int(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)


_JANUARY = 1767225600  # 2026-01-01T00:00:00Z
_PEAK_S = 11 * 3600  # 08:00-18:59 UTC of each weekday
ORDERS = ("scattered", "arrival")


def event_time(i: int, order: str = "scattered", span: int = 1) -> int:
    """Record i's event time (Unix seconds), a weekday's peak hour of January 2026.

    ``scattered``: record i's day is i's weekday modulo 22, so consecutive records fall on
    every day of the month (each batch inserts all over the time-led indexes). ``arrival``:
    records 0 .. ``span`` - 1 walk the month's peak hours in time order, each up to an hour
    before its place (records reach the file after the call ends, in the order they end),
    as a switch writes them.
    """
    if order == "scattered":
        day = _WEEKDAYS[i % len(_WEEKDAYS)]
        return _JANUARY + (day - 1) * 86400 + (8 + i % 11) * 3600 + i % 3600
    slot = min(i, span - 1) * len(_WEEKDAYS) * _PEAK_S // span
    day = _WEEKDAYS[slot // _PEAK_S]
    early = i * 7919 % 3600  # up to an hour, never before 07:00 UTC (08:00 Paris, peak)
    return _JANUARY + (day - 1) * 86400 + 8 * 3600 + slot % _PEAK_S - early


def _cdr(i: int, rng: random.Random, order: str = "scattered", span: int = 1) -> bytes:
    """Record i of the mix: moCall, P-GW, S-GW, P-GW (half voice, half data)."""
    from billing_oss.adapters.formats import ber_text

    when = event_time(i, order, span)
    ts = ber_text.encode_timestamp(when, 60)
    caller = f"3361{rng.randrange(ACCOUNTS):07d}"
    imsi = ber_text.encode_tbcd(f"20801{i:010d}")
    kind = i % 4
    if kind == 0:
        body = (_tlv(0, b"\x00") + _tlv(1, imsi) + _tlv(3, ber_text.encode_address(caller))
                + _tlv(4, ber_text.encode_address(caller))
                + _tlv(5, ber_text.encode_address(f"3362{rng.randrange(10**7):07d}"))
                + _tlv(9, ber_text.encode_address("33609000001")) + _tlv(22, ts) + _tlv(23, ts)
                + _tlv(25, _int(rng.randrange(1, 3600))) + _tlv(30, b"\x00")
                + _tlv(32, i.to_bytes(8, "big")))
        return _tlv(0, body, True)
    pgw = kind != 2
    up, down = rng.randrange(10**7), rng.randrange(10**8)
    change = _tlv(3, _int(up)) + _tlv(4, _int(down)) + _tlv(5, b"\x00") + _tlv(6, ts)
    body = (_tlv(0, bytes([85 if pgw else 84])) + _tlv(3, imsi)
            + _tlv(4, _tlv(0, bytes([10, 0, 0, 1 + i % 4])), True)
            + _tlv(5, _int(i)) + _tlv(7, b"internet")
            + _tlv(12, b"\x30" + bytes([len(change)]) + change, True) + _tlv(13, ts)
            + _tlv(14, _int(rng.randrange(1, 3600))) + _tlv(15, b"\x00")
            + _tlv(22, ber_text.encode_address(caller)))
    return _tlv(79 if pgw else 78, body, True)


def generate_3gpp(path: Path, n: int, first: int = 0, order: str = "scattered",
                  span: int = 0) -> None:
    """Records ``first`` .. ``first + n - 1`` of the mix (their keys follow on from the
    previous file's, as a switch's next file's do), their event times in ``order`` over a
    month of ``span`` records (default: this file's)."""
    from tests.generators.threegpp_files import write_3gpp_file

    rng = random.Random(7 + first)
    span = span or first + n
    with path.open("wb") as f:
        write_3gpp_file(f, (_cdr(i, rng, order, span) for i in range(first, first + n)),
                        sequence_number=42 + first // max(n, 1))


GENERATORS: dict[str, Callable[[Path, int], None]] = {"3gpp": generate_3gpp,
                                                      "jsonl": generate_jsonl}


@asynccontextmanager
async def server(dsn: str | None, overrides: dict[str, str] | None = None
                 ) -> AsyncIterator[str]:
    if dsn:
        yield dsn
        return
    from billing_oss.server.store.embedded import start_server

    with tempfile.TemporaryDirectory() as tmp:
        pg = start_server(Path(tmp) / "data", cleanup_mode="delete", overrides=overrides)
        try:
            yield pg.get_uri()
        finally:
            pg.cleanup()


async def fresh_database(admin_dsn: str, label: str) -> tuple[str, str]:
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = with_database(admin_dsn, name)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    await migrate(pool)
    await catalog_repo.load_catalog(pool, catalog())
    await pool.close()
    return name, dsn


def machine_cpu_s() -> float:
    """CPU seconds every process on this machine has spent (user + system + irq), from
    /proc/stat; 0.0 where there is none. Minus this process's own, it is PostgreSQL's."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:8]]
    except OSError:
        return 0.0
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has spent, or None where it is not
    readable here (a server on another machine, a process gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Backends:
    """CPU spent by the PostgreSQL backends serving one side's connections, from the moment
    each is added or ``mark`` is called; a backend gone keeps what it was last seen to spend."""

    def __init__(self) -> None:
        self.start: dict[int, float] = {}
        self.seen: dict[int, float] = {}
        self.readable = True

    def add(self, pid: int) -> None:
        now = _proc_cpu_s(pid)
        if now is None:
            self.readable = False
            return
        self.start[pid] = self.seen[pid] = now

    def mark(self) -> None:
        for pid in list(self.start):
            self.add(pid)

    def spent(self) -> float:
        for pid in self.start:
            now = _proc_cpu_s(pid)
            if now is not None:
                self.seen[pid] = now
        return sum(self.seen[pid] - self.start[pid] for pid in self.start)


class CpuSplit:
    """Where the timed sections' CPU went, per record: this process, the backends serving
    it, and the rest of the machine. Entered once per section; the sections add up."""

    def __init__(self) -> None:
        self.machine = self.own = self.server = 0.0
        self.readable = True

    def section(self, backends: Backends) -> CpuSplit:
        self._backends = backends
        return self

    def __enter__(self) -> CpuSplit:
        self._backends.mark()
        self._start = machine_cpu_s(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.machine += machine_cpu_s() - self._start[0]
        self.own += time.process_time() - self._start[1]
        self.server += self._backends.spent()
        self.readable = self.readable and self._backends.readable

    def client_us(self, records: int) -> float:
        return self.own / records * 1e6

    def line(self, records: int) -> str:
        if not self.machine:
            return "CPU split: /proc/stat unavailable"
        own = self.client_us(records)
        server = (f"{self.server / records * 1e6:.1f} µs" if self.readable
                  else "(server not on this machine)")
        rest = (self.machine - self.own - (self.server if self.readable else 0.0)) / records
        ceiling = (os.cpu_count() or 1) / ((self.own + self.server) / records)
        return (f"CPU per record: this process {own:.1f} µs, its PostgreSQL backends "
                f"{server}, rest of the machine {rest * 1e6:.1f} µs; {os.cpu_count()} cores "
                f"at 100% for process + backends allow {ceiling:,.0f} records/s")


async def ours(dsn: str, path: Path, fmt: str,
               cpu: CpuSplit | None = None) -> tuple[float, int, int]:
    """(seconds, records in, records charged) of the pipeline ingesting ``path``; the CPU it
    and its backends spend is added to ``cpu`` when given (``bench_scale`` times only)."""
    backends = Backends()

    async def track(conn: asyncpg.Connection) -> None:
        backends.add(conn.get_server_pid())

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4, init=track)
    assert pool is not None
    pipeline = Pipeline(pool, config.load(env={}).pipeline, rater_factory=rater_factory(),
                        decoders=decoders())
    await pipeline.raters.current()  # build the rater before the clock starts
    started = time.perf_counter()
    with cpu.section(backends) if cpu is not None else contextlib.nullcontext():
        outcome = await pipeline.ingest_file(path, source="bench", format=fmt)
    elapsed = time.perf_counter() - started
    await pool.close()
    c = outcome.counts
    assert c.in_ == c.charged + c.suspense + c.duplicates + c.filtered + c.pending
    return elapsed, c.in_, c.charged


class _Rows:
    """One table's rows in ``usage_id`` order, read from a cursor in the order they are asked."""

    def __init__(self, cursor: asyncpg.cursor.Cursor, key: int) -> None:
        self.cursor, self.key = cursor, key
        self.buffer: list[tuple[object, ...]] = []
        self.done = False

    async def _fill(self) -> bool:
        if not self.buffer and not self.done:
            fetched = await self.cursor.fetch(5000)
            self.buffer = [tuple(r) for r in fetched]
            self.done = not fetched
        return bool(self.buffer)

    async def take(self, count: int) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        while len(out) < count and await self._fill():
            cut = count - len(out)
            out += self.buffer[:cut]
            self.buffer = self.buffer[cut:]
        return out

    async def up_to(self, last: object) -> list[tuple[object, ...]]:
        out: list[tuple[object, ...]] = []
        while await self._fill():
            cut = next((i for i, row in enumerate(self.buffer)
                        if row[self.key] > last), len(self.buffer))  # type: ignore[operator]
            out += self.buffer[:cut]
            self.buffer = self.buffer[cut:]
            if self.buffer:
                break
        return out


Chunk = dict[str, list[tuple[object, ...]]]


async def _read_chunks(readers: dict[str, _Rows], size: int, count: int) -> list[Chunk]:
    """Up to ``count`` chunks of ``size`` records: the first table's rows (one per record), and
    each other table's rows of those records."""
    chunks: list[Chunk] = []
    lead = next(iter(readers))
    keys = readers[lead]
    while len(chunks) < count:
        first = await keys.take(size)
        if not first:
            break
        last = first[-1][keys.key]
        chunk = {lead: first}
        for table, reader in readers.items():
            if table != lead:
                chunk[table] = await reader.up_to(last)
        chunks.append(chunk)
    return chunks


async def _lane(conn: asyncpg.Connection, chunks: list[Chunk],
                tables: dict[str, tuple[str, ...]]) -> None:
    for chunk in chunks:
        async with conn.transaction():
            for table, columns in tables.items():
                if chunk[table]:
                    await conn.copy_records_to_table(table, records=chunk[table],
                                                     columns=list(columns))


# The ladder (``--ladder``): from the lean row to the project's rows, one part of the write
# set added at a time, each a peer COPYing into a fresh migrated database changed as below.
# The usage row carries its first charge until the charge becomes a row of its own.
_CARRY = ("ALTER TABLE usage_records " + ", ".join(
    f"ADD COLUMN {c} {t}" for c, t in (("amount_micros", "bigint"), ("currency", "char(3)"),
                                      ("tariff_version_id", "bigint"), ("zone", "text"),
                                      ("band", "text"))))
# Every index of the rollup tables (and of their partitions) dropped: their rows, heap only.
_ROLLUPS_BARE = """DO $$ DECLARE i regclass; BEGIN
    FOR i IN SELECT x.indexrelid::regclass FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
             WHERE (t.relname LIKE 'charge\\_rollups%' OR t.relname LIKE 'charge\\_hour\\_totals%')
               AND NOT EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = x.indexrelid)
    LOOP EXECUTE format('DROP INDEX %s', i); END LOOP; END $$"""
_KEYS = {"usage_keys": COPY_TABLES["usage_keys"]}
_CARRIED = {**_KEYS, "usage_records": LEAN_COLUMNS}


class Peer(NamedTuple):
    label: str
    setup: tuple[str, ...]  # run in the fresh database before the COPY
    tables: dict[str, tuple[str, ...]]  # COPYed, the first one row per record
    rollups: bool = False  # the rollup deltas too


LEAN = Peer("lean row, one unique key on (source, record_key)", (LEAN_DDL,),
            {"lean_usage": LEAN_COLUMNS})
ROWS = Peer("the project's rows, every index", (), COPY_TABLES, rollups=True)
LADDER = (
    LEAN,
    Peer("+ usage_keys; usage row (charge carried) under its primary key only",
         (_CARRY, "DROP INDEX usage_records_time"), _CARRIED),
    Peer("+ usage_records_time", (_CARRY,), _CARRIED),
    Peer("+ the charge as its own row, every charges index", (), COPY_TABLES),
    Peer("+ the rollup deltas, no index", (_ROLLUPS_BARE,), COPY_TABLES, rollups=True),
    ROWS,
)


def _query(table: str, columns: tuple[str, ...]) -> str:
    if columns == LEAN_COLUMNS:
        return LEAN_SELECT
    return f"SELECT {', '.join(columns)} FROM {table} ORDER BY usage_id"


async def raw_copy(src_dsn: str, dst_dsn: str, cpu: CpuSplit, lanes: int, batch_size: int,
                   peer: Peer = ROWS) -> float:
    """COPY the rows our run stored into an empty database the way ingest writes them: chunks
    of ``batch_size`` records, one transaction each, over ``lanes`` connections at once —
    ``peer``'s tables (the project's by default, or the lean row). The rows are read ahead
    a window at a time; only the COPYs are timed."""
    src = await asyncpg.connect(src_dsn)
    dsts = [await asyncpg.connect(dst_dsn) for _ in range(lanes)]
    backends = Backends()
    for conn in dsts:
        backends.add(conn.get_server_pid())
    await dsts[0].execute("SELECT ensure_month_partition('usage_records', '2026-01-01'), "
                          "ensure_month_partition('charges', '2026-01-01')")
    for sql in peer.setup:
        await dsts[0].execute(sql)
    tables = dict(peer.tables)
    queries = {table: _query(table, columns) for table, columns in tables.items()}
    # The rollup deltas ingest writes beside its charges (one COPY per level per batch) have
    # no usage id to chunk by: each chunk takes its share of them, by its records.
    rollups: dict[str, int] = {
        table: await src.fetchval(f"SELECT count(*) FROM {table}")
        for table in (ROLLUP_TABLES if peer.rollups else ())}
    records = await src.fetchval("SELECT count(*) FROM usage_keys")
    done = 0
    timed = 0.0
    async with src.transaction():
        readers = {table: _Rows(await src.cursor(queries[table]), columns.index("usage_id"))
                   for table, columns in tables.items()}
        shares = {table: _Rows(await src.cursor(
            f"SELECT {', '.join(ROLLUP_TABLES[table])} FROM {table}"), 0) for table in rollups}
        tables = {**tables, **{table: ROLLUP_TABLES[table] for table in rollups}}
        while window := await _read_chunks(readers, batch_size, 4 * lanes):
            for chunk in window:
                share = len(next(iter(chunk.values())))
                for table, total in rollups.items():
                    chunk[table] = await shares[table].take(
                        total * (done + share) // records - total * done // records)
                done += share
            started = time.perf_counter()
            with cpu.section(backends):
                await asyncio.gather(*(_lane(conn, window[i::lanes], tables)
                                       for i, conn in enumerate(dsts)))
            timed += time.perf_counter() - started
    # the peer wrote every row ours did (the lean one, one per usage row), no more, no less
    for table in tables:
        ours_table = "usage_records" if table == "lean_usage" else table
        assert (await src.fetchval(f"SELECT count(*) FROM {ours_table}")
                == await dsts[0].fetchval(f"SELECT count(*) FROM {table}")), table
    await src.close()
    for conn in dsts:
        await conn.close()
    return timed


# What the server did during one ingest: checkpoints and the buffers they and the backends
# wrote, WAL (records, full-page images, bytes), and shared-buffer hits and reads of the
# database and of each index. The embedded server serves only this run, so the server-wide
# counters are this ingest's.
_SERVER_STATS = """
SELECT b.checkpoints_timed + b.checkpoints_req AS checkpoints,
       b.buffers_checkpoint, b.buffers_clean, b.buffers_backend,
       w.wal_records, w.wal_fpi, w.wal_bytes::float8 AS wal_bytes,
       d.blks_hit, d.blks_read
FROM pg_stat_bgwriter b, pg_stat_wal w, pg_stat_database d
WHERE d.datname = current_database()"""
# PostgreSQL 17 moved the checkpointer's counters to their own view and the backends' writes
# to pg_stat_io.
_SERVER_STATS_17 = """
SELECT c.num_timed + c.num_requested AS checkpoints,
       c.buffers_written AS buffers_checkpoint, b.buffers_clean,
       (SELECT sum(writes) FROM pg_stat_io WHERE backend_type = 'client backend'
        AND object = 'relation') AS buffers_backend,
       w.wal_records, w.wal_fpi, w.wal_bytes::float8 AS wal_bytes,
       d.blks_hit, d.blks_read
FROM pg_stat_checkpointer c, pg_stat_bgwriter b, pg_stat_wal w, pg_stat_database d
WHERE d.datname = current_database()"""
# Indexes of partitions are summed under their top index (those of usage_records_2026_01 and
# of its days count as usage_records_pkey).
_INDEX_STATS = """
SELECT coalesce(r.relname, i.relname) AS index, sum(s.idx_blks_hit) AS hit,
       sum(s.idx_blks_read) AS read, sum(pg_relation_size(s.indexrelid))::float8 AS bytes
FROM pg_statio_user_indexes s JOIN pg_class i ON i.oid = s.indexrelid
LEFT JOIN pg_class r ON r.oid = pg_partition_root(s.indexrelid)
GROUP BY 1"""


async def server_stats(dsn: str) -> tuple[dict[str, float], dict[str, tuple[float, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        recent = await conn.fetchval("SHOW server_version_num")
        totals = dict(await conn.fetchrow(
            _SERVER_STATS_17 if int(recent) >= 170000 else _SERVER_STATS))
        indexes = {r["index"]: (float(r["hit"]), float(r["read"]), r["bytes"])
                   for r in await conn.fetch(_INDEX_STATS)}
    finally:
        await conn.close()
    return totals, indexes


async def ingest_phase(dsn: str, path: Path, label: str) -> tuple[float, float]:
    """Ingest ``path`` into the database as it stands; print the rate, the CPU split and
    what the server did. (records/s, PostgreSQL backends' µs per record)."""
    cpu = CpuSplit()
    await asyncio.sleep(1)  # the backends of the last phase have flushed their statistics
    before, idx_before = await server_stats(dsn)
    elapsed, count, charged = await ours(dsn, path, "3gpp", cpu)
    await asyncio.sleep(1)
    after, idx_after = await server_stats(dsn)
    d = {k: float(after[k] - before[k]) for k in after}
    hit_ratio = d["blks_hit"] / max(1.0, d["blks_hit"] + d["blks_read"])
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{label}: {count:,} records ({charged:,} charged) in {elapsed:.1f} s: "
          f"{count / elapsed:,.0f} records/s; load average {load}")
    print(f"  {cpu.line(count)}")
    print(f"  per record: WAL {d['wal_bytes'] / count:,.0f} bytes, "
          f"{d['wal_records'] / count:.1f} WAL records, {d['wal_fpi'] / count:.3f} full-page "
          f"images; buffers written by checkpoints {d['buffers_checkpoint'] / count:.3f}, "
          f"bgwriter {d['buffers_clean'] / count:.3f}, backends "
          f"{d['buffers_backend'] / count:.3f}; checkpoints {d['checkpoints']:.0f}; shared "
          f"buffers hit ratio {hit_ratio:.2%} ({d['blks_read'] / count:.2f} reads/record)")
    def busiest(index: str) -> tuple[float, float]:  # most reads, then most hits, first
        was = idx_before.get(index, (0.0, 0.0, 0.0))
        return was[1] - idx_after[index][1], was[0] - idx_after[index][0]

    for index in sorted(idx_after, key=busiest)[:8]:
        hit, read, size = idx_after[index]
        hit0, read0, _ = idx_before.get(index, (0.0, 0.0, 0.0))
        print(f"    {index:<32} {size / 2**20:8,.0f} MB  reads/record "
              f"{(read - read0) / count:.3f}  hits/record {(hit - hit0) / count:.2f}")
    return count / elapsed, cpu.server / count * 1e6


# The server settings a --prefill run prints: those that decide its checkpoints and buffers.
SHOWN = ("shared_buffers", "max_wal_size", "checkpoint_timeout",
         "checkpoint_completion_target", "wal_compression")


async def compact(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await compaction.run_once(pool)
    finally:
        await pool.close()


async def day_partitions(dsn: str) -> None:
    """January 2026's usage and charges each made of its UTC days, as the schema makes the
    open month (``make_day_partitions``, migration 1550): the bench's month is a past one,
    which ``ensure_month_partition`` would make one table, the layout a month is folded
    into once it closes."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT make_day_partitions('usage_records', '2026-01-01'),"
                           " make_day_partitions('charges', '2026-01-01')")
    finally:
        await conn.close()


async def fold(dsn: str) -> None:
    """January's days folded into one table per parent, as housekeeping folds a closed
    month, while a probe reads one account's usage and writes a record of February every
    20 ms: how long the fold takes, and the longest either waited (the month's own late
    writers wait for the whole fold; others only for its final swap)."""
    conn, probe = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    waits: dict[str, float] = {"read": 0.0, "write": 0.0}
    done = asyncio.Event()

    async def probing() -> None:
        await probe.execute("SELECT ensure_month_partition('usage_records', '2026-02-01')")
        n = 0
        while not done.is_set():
            n += 1
            for what, sql, args in (
                    ("read", "SELECT * FROM usage_records WHERE account_id = $1"
                     " ORDER BY event_time, usage_id LIMIT 51", ("A7",)),
                    ("write", "INSERT INTO usage_records (account_id, usage_id, event_time,"
                     " source, record_key, kind) VALUES ('probe', -$1::bigint,"
                     " '2026-02-02Z', 'probe', $1::text, 'voice')", (n,))):
                began = time.perf_counter()
                await probe.execute(sql, *args)
                waits[what] = max(waits[what], time.perf_counter() - began)
            await asyncio.sleep(0.02)

    try:
        task = asyncio.create_task(probing())
        for parent in ("usage_records", "charges"):
            began = time.perf_counter()
            moved = await conn.fetchval("SELECT fold_month_partition($1::regclass,"
                                        " '2026-01-01')", parent)
            print(f"fold of January's {parent}: {moved:,} records in "
                  f"{time.perf_counter() - began:.1f} s", flush=True)
        done.set()
        await task
        print(f"during the folds, the longest wait of a read of one account's usage "
              f"{waits['read'] * 1000:.0f} ms, of a write into February "
              f"{waits['write'] * 1000:.0f} ms", flush=True)
    finally:
        await conn.close()
        await probe.close()


async def growth(admin: str, tmp: Path, n: int, prefill: int,
                 order: str = "scattered", partitions: str = "month",
                 fold_after: bool = False) -> None:
    """``n`` records into an empty database, ``prefill`` more (through the same pipeline,
    files of at most ``n``, not timed), then ``n`` more: the two timed ingests side by
    side. After each file the rollup deltas are compacted, as ``serve`` compacts them every
    minute (``analytics.compact_interval_s``): left alone they would grow by about two
    rows per record, which no server does."""
    name, dsn = await fresh_database(admin, "growth")
    try:
        if partitions == "day":
            await day_partitions(dsn)
        conn = await asyncpg.connect(dsn)
        shown = {setting: await conn.fetchval(f"SHOW {setting}") for setting in SHOWN}
        await conn.close()
        print(f"{n:,} records into an empty database, {prefill:,} more, then {n:,} more; "
              f"event times {order}; {partitions} partitions; "
              + ", ".join(f"{setting} {value}" for setting, value in shown.items()), flush=True)
        path = tmp / "bench.3gpp"
        span = 2 * n + prefill
        generate_3gpp(path, n, 0, order, span)
        empty = await ingest_phase(dsn, path, "into an empty database")
        done, started = n, time.perf_counter()
        while done < n + prefill:
            await compact(dsn)
            size = min(n, n + prefill - done)
            generate_3gpp(path, size, done, order, span)
            await ours(dsn, path, "3gpp")
            done += size
            print(f"  filled to {done:,} records ({time.perf_counter() - started:.0f} s)",
                  flush=True)
        await compact(dsn)
        generate_3gpp(path, n, done, order, span)
        full = await ingest_phase(dsn, path, f"into a database holding {done:,} records")
        print(f"rate holding {done:,} / rate when empty: {full[0] / empty[0]:.1%}; "
              f"PostgreSQL backends' CPU per record {empty[1]:.1f} → {full[1]:.1f} µs")
        if partitions == "day" and fold_after:
            await fold(dsn)
    finally:
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


def _spread(rates: list[float]) -> str:
    return (f"{statistics.median(rates):,.0f} records/s (median of {len(rates)}; "
            f"{min(rates):,.0f}–{max(rates):,.0f})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (median)")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (50 000)")
    parser.add_argument("--format", default="3gpp", choices=sorted(GENERATORS))
    parser.add_argument("--database-url", default=os.environ.get("BILLING_OSS_TEST_DATABASE_URL"))
    parser.add_argument("--prefill", type=int, default=0, metavar="N",
                        help="instead of the peers: --records into an empty database, N more, "
                             "then --records more, the first and last timed (3gpp only)")
    parser.add_argument("--shared-buffers", metavar="SIZE",
                        help="the embedded server's shared_buffers instead of the project's "
                             "(e.g. 256MB, as before it followed the machine's memory)")
    parser.add_argument("--ladder", action="store_true",
                        help="peers from the lean row to the project's rows, one part of "
                             "the write set added at a time")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="another setting of the embedded server's (repeatable; e.g. "
                             "max_wal_size=4GB, as before it followed the free disk)")
    parser.add_argument("--order", default="scattered", choices=ORDERS,
                        help="event times spread over the month record by record "
                             "(scattered), or nearly in time order as switches write them "
                             "(arrival; 3gpp only)")
    parser.add_argument("--partitions", default="month", choices=("month", "day"),
                        help="with --prefill: the month's usage and charges one table each (a "
                             "closed month's layout), or made of their UTC days (the open "
                             "month's; migration 1550)")
    parser.add_argument("--fold", action="store_true",
                        help="with --partitions day: then fold the month into one table, "
                             "timed, with the longest wait of a reader and a writer")
    args = parser.parse_args()
    n = 50_000 if args.quick else args.records
    overrides = dict(pair.split("=", 1) for pair in args.setting)
    if args.shared_buffers:
        overrides["shared_buffers"] = args.shared_buffers
    if args.prefill:
        with tempfile.TemporaryDirectory() as tmp:
            async with server(args.database_url, overrides or None) as admin:
                await growth(admin, Path(tmp), n, args.prefill, args.order, args.partitions,
                             args.fold)
        return
    settings = config.load(env={}).pipeline
    lanes = settings.write_lanes
    peers = LADDER if args.ladder else (ROWS, LEAN)
    ours_rates: list[float] = []
    rates: list[list[float]] = [[] for _ in peers]
    ours_cpu = CpuSplit()
    cpus = [CpuSplit() for _ in peers]
    count = charged = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench.{args.format}"
        started = time.perf_counter()
        if args.format == "3gpp":
            generate_3gpp(path, n, order=args.order)
        else:
            GENERATORS[args.format](path, n)
        print(f"generated {n} records, {path.stat().st_size / 1e6:.0f} MB, format "
              f"{args.format} in {time.perf_counter() - started:.1f} s (not timed)", flush=True)
        async with server(args.database_url, overrides or None) as admin:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            for run in range(args.runs):
                names: list[str] = []
                try:
                    a_name, a_dsn = await fresh_database(admin, "ours")
                    names.append(a_name)
                    elapsed, count, charged = await ours(a_dsn, path, args.format, ours_cpu)
                    for i, peer in enumerate(peers):
                        b_name, b_dsn = await fresh_database(admin, "peer")
                        names.append(b_name)
                        took = await raw_copy(a_dsn, b_dsn, cpus[i], lanes,
                                              settings.batch_size, peer)
                        rates[i].append(charged / took)
                finally:
                    conn = await asyncpg.connect(admin)
                    for name in names:
                        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    await conn.close()
                ours_rates.append(count / elapsed)
                so_far = " / ".join(f"{c.client_us(charged * (run + 1)):.1f}" for c in cpus)
                print(f"run {run + 1}: ours {ours_rates[-1]:,.0f}, "
                      + ", ".join(f"{p.label} {r[-1]:,.0f}" for p, r in zip(peers, rates,
                                                                              strict=True))
                      + f" records/s; so far, client µs/record "
                      f"{ours_cpu.client_us(count * (run + 1)):.1f} / {so_far}; load average "
                      + " ".join(f"{x:.1f}" for x in os.getloadavg()), flush=True)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ours_rate = statistics.median(ours_rates)
    runs = args.runs

    def per_run(peer_rates: list[float]) -> str:
        return ", ".join(f"{o / p:.0%}" for o, p in zip(ours_rates, peer_rates, strict=True))

    print(f"records: {count} ({charged} charged), format {args.format}, {runs} runs of "
          f"each side, each into fresh databases")
    print(f"billing-oss ingest (decode+validate+dedupe+rate+commit), {lanes} write lanes: "
          f"{_spread(ours_rates)}")
    print(f"  {ours_cpu.line(count * runs)}")
    lean_rate = statistics.median(rates[peers.index(LEAN)])
    for peer, peer_rates, cpu in zip(peers, rates, cpus, strict=True):
        rate = statistics.median(peer_rates)
        server_us = (f"{cpu.server / (charged * runs) * 1e6:.1f}" if cpu.readable else "?")
        print(f"raw asyncpg binary COPY, {lanes} connections — {peer.label}: "
              f"{_spread(peer_rates)}; {rate / lean_rate:.1%} of the lean row's; PostgreSQL "
              f"backends {server_us} µs/record; ours / this: {ours_rate / rate:.1%} (per run "
              f"{per_run(peer_rates)})")
        print(f"  {cpu.line(charged * runs)}")
    print(f"peak RSS: {rss / 1024:.0f} MB (before ingest {rss_before / 1024:.0f} MB)")
    own = ours_cpu.client_us(count * runs)
    print(f"our process's CPU per record: "
          f"{own / cpus[peers.index(ROWS)].client_us(charged * runs):.1f}× the rows COPY "
          f"client's, {own / cpus[peers.index(LEAN)].client_us(charged * runs):.1f}× the lean "
          f"COPY client's")


if __name__ == "__main__":
    asyncio.run(main())
