"""Archiving old months: export each month partition of usage and charges to a gzip CSV file
with a manifest, then detach and drop it — only when nothing still needs the month.

A month (UTC) is archived when it ended more than ``archive_after_months`` months before the
current month began and nothing holds it: no draft invoice, no unpaid or disputed finalised
invoice whose period touches it, no open suspense record that happened in it, no pending
rerate of it, no charge of it on no finalised invoice. ``plan`` says, per month, which.

An archive is a directory ``<archive_dir>/<YYYY-MM>/``: one ``<partition>.csv.gz`` per table
(PostgreSQL CSV, a header row naming the columns) and ``manifest.json`` (period, tables,
columns, rows, sha256 of each file). The files are written and synced before the transaction
that drops the partitions commits; a crash in between leaves the rows in place and the next
run writes the files again. ``restore`` loads the files back (after checking their sha256).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import asyncpg
import msgspec

from billing_oss.core.errors import Conflict, InvalidRequest, NotFound
from billing_oss.server.retention import months, repo
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

FORMAT = "billing-oss-archive/1"
MANIFEST = "manifest.json"
FLUSH_BYTES = 1 << 20
READ_BYTES = 1 << 20
QUEUED = 4  # megabytes of COPY output waiting for the compressing thread, at most
LOCK_TIMEOUT_MS = 10_000  # the longest a detach waits for the parent table's lock
HOLD_WORDS = {
    "draft_invoices": "draft invoice(s) in the period",
    "unpaid_invoices": "finalised invoice(s) of the period not fully paid",
    "open_disputes": "open dispute(s) on invoices of the period",
    "open_suspense": "open suspense record(s) of the month",
    "pending_rerates": "rerate job(s) of the period queued or running",
    "uninvoiced_charges": "charge(s) on no finalised invoice",
}


class MonthPlan(msgspec.Struct, frozen=True, kw_only=True):
    month: str
    action: str  # archive | hold | keep
    rows: dict[str, int]  # per table; counted, except for months kept (estimated)
    estimated: bool
    reasons: list[str]


class TableFile(msgspec.Struct, frozen=True, kw_only=True):
    table: str
    partition: str
    file: str
    rows: int
    sha256: str
    dropped_rows: int


class Archive(msgspec.Struct, frozen=True, kw_only=True):
    archive_id: int
    month: str
    directory: str
    manifest_sha256: str
    state: str
    created_at: dt.datetime
    restored_at: dt.datetime | None
    tables: list[TableFile]


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    month: str
    file: str
    reason: str


def cutoff(now: dt.datetime, after_months: int) -> dt.date | None:
    """Months starting before this one may be archived (None: archiving is off)."""
    if after_months <= 0:
        return None
    return months.add(months.first_of(now), -after_months)


async def plan(pool: asyncpg.Pool, now: dt.datetime, after_months: int) -> list[MonthPlan]:
    """Every month that has partitions, oldest first: archive, hold (with why) or keep."""
    limit = cutoff(now, after_months)
    by_month: dict[dt.date, dict[str, str]] = {}
    for parent, partition, month in await repo.partitions(pool):
        by_month.setdefault(month, {})[parent] = partition
    in_days: dict[dt.date, dict[str, list[str]]] = {}
    for parent, partition, day in await repo.day_partitions(pool):
        in_days.setdefault(day.replace(day=1), {}).setdefault(parent, []).append(partition)
    plans = []
    async with pool.acquire() as conn:
        for month in sorted(by_month.keys() | in_days.keys()):
            why = ("retention.archive_after_months is 0" if limit is None
                   else f"within the last {after_months} months")
            if month in in_days:
                # Open, or closed and not folded yet (housekeeping folds before it archives).
                rows = {parent: sum([await repo.estimated_rows(conn, day) for day in days])
                        for parent, days in in_days[month].items()}
                held = limit is not None and month < limit
                plans.append(MonthPlan(
                    month=months.label(month), action="hold" if held else "keep", rows=rows,
                    estimated=True,
                    reasons=["its days are not folded into one table yet" if held else why]))
                continue
            parts = by_month[month]
            if limit is None or month >= limit:
                # Recent months are the large, busy ones: no count(*) over them.
                rows = {parent: await repo.estimated_rows(conn, part)
                        for parent, part in parts.items()}
                plans.append(MonthPlan(month=months.label(month), action="keep", rows=rows,
                                       estimated=True, reasons=[why]))
                continue
            rows = {parent: await repo.count_rows(conn, part) for parent, part in parts.items()}
            reasons = await _holds(conn, month, parts.get("charges"))
            plans.append(MonthPlan(month=months.label(month),
                                   action="hold" if reasons else "archive", rows=rows,
                                   estimated=False, reasons=reasons))
    return plans


async def _holds(conn: Connection, month: dt.date, charges: str | None) -> list[str]:
    counts = await repo.holds(conn, months.start(month), months.start(months.add(month, 1)),
                              charges)
    return [f"{n} {HOLD_WORDS[name]}" for name, n in counts.items() if n]


async def run(pool: asyncpg.Pool, directory: Path, now: dt.datetime, after_months: int,
              actor: str, only: dt.date | None = None) -> list[Archive]:
    """Archive every month ``plan`` says may go (or only ``only``); the archives made."""
    done = []
    for p in await plan(pool, now, after_months):
        month = months.parse(p.month)
        if only is not None and month != only:
            continue
        if p.action != "archive":
            if only is not None:
                raise Conflict(f"month {p.month} is not archived: {'; '.join(p.reasons)}")
            continue
        try:
            done.append(await archive_month(pool, directory, month, now, after_months, actor))
        except NotFound:
            if only is not None:
                raise
            continue  # another run archived it meanwhile
    if only is not None and not done:
        raise NotFound(f"no partition of month {months.label(only)}")
    return done


async def archive_month(pool: asyncpg.Pool, directory: Path, month: dt.date,
                        now: dt.datetime, after_months: int, actor: str) -> Archive:
    """Export one month, then drop its partitions, in one transaction that checks again,
    under the partitions' locks, that nothing holds it."""
    limit = cutoff(now, after_months)
    if limit is None or month >= limit:
        raise Conflict(f"month {months.label(month)} is within the retention period")
    async with pool.acquire() as conn, conn.transaction():
        # One archive run at a time: a second one waits, then finds the month gone.
        await repo.lock_archiving(conn)
        parts = {parent: part for parent, part, m in await repo.partitions(conn) if m == month}
        if not parts:
            raise NotFound(f"no partition of month {months.label(month)}")
        # Late usage for an archived month is archived again beside the first: never over it.
        earlier = len(await list_archives(conn, month))
        # Absolute: verify, restore and the control run from any working directory.
        target = (directory / (months.label(month) + (f".{earlier + 1}" if earlier else ""))
                  ).absolute()
        await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
        ordered = [(t, parts[t]) for t in repo.MONTHLY if t in parts]
        await repo.lock_for_archive(conn, [part for _, part in ordered])
        if reasons := await _holds(conn, month, parts.get("charges")):
            raise Conflict(f"month {months.label(month)} is held: {'; '.join(reasons)}")
        tables: list[dict[str, Any]] = []
        files: list[int] = []
        for parent, part in ordered:
            if parent == "usage_records":
                files = await repo.source_files_of(conn, part)
            name = f"{part}.csv.gz"
            rows, digest = await _export(conn, part, target / name)
            tables.append({"table": parent, "partition": part, "file": name,
                           "columns": await repo.columns(conn, part), "rows": rows,
                           "sha256": digest})
        manifest = {
            "format": FORMAT, "month": months.label(month),
            "period": {"from": months.start(month).isoformat(),
                       "to": months.start(months.add(month, 1)).isoformat()},
            "created_at": now.astimezone(dt.UTC).isoformat(),
            "encoding": "gzip of PostgreSQL CSV (COPY ... CSV HEADER): a header row, NULL as"
                        " an empty unquoted field",
            "tables": tables, "source_files": files}
        manifest_sha = await asyncio.to_thread(_write_manifest, target, manifest)
        for t in tables:
            try:
                t["dropped_rows"] = await repo.detach_and_drop(
                    conn, t["table"], t["partition"], LOCK_TIMEOUT_MS)
            except asyncpg.LockNotAvailableError:
                raise Conflict(f"{t['table']} stayed locked by another query for "
                               f"{LOCK_TIMEOUT_MS // 1000} s; nothing dropped, run again"
                               ) from None
            if t["dropped_rows"] != t["rows"]:
                raise Conflict(f"{t['partition']}: {t['dropped_rows']} rows to drop but "
                               f"{t['rows']} exported; nothing dropped")
        archive_id = await repo.insert_archive(conn, month, str(target), manifest_sha,
                                               manifest, tables, files, now)
        await audit.record(conn, actor, "archive.create", f"archive:{months.label(month)}",
                           None, {"archive_id": archive_id, "directory": str(target),
                                  "manifest_sha256": manifest_sha,
                                  "tables": {t["table"]: {"rows": t["rows"],
                                                          "sha256": t["sha256"]}
                                             for t in tables}})
    return (await list_archives(pool, month))[-1]


async def _export(conn: Connection, partition: str, path: Path) -> tuple[int, str]:
    """A partition copied out into a gzip file; (rows, file sha256). A thread compresses while
    the next megabytes arrive (at most ``QUEUED`` of them wait), and the file is hashed as
    it is written."""
    raw = await asyncio.to_thread(path.open, "wb")
    hashed = _Hashing(raw)
    gz = gzip.GzipFile(fileobj=hashed, mode="wb", compresslevel=6, mtime=0)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUED)
    pending: list[bytes] = []
    size = 0

    async def compress() -> None:
        while (data := await queue.get()) is not None:
            await asyncio.to_thread(gz.write, data)

    async def output(chunk: bytes) -> None:
        nonlocal size
        pending.append(chunk)
        size += len(chunk)
        if size >= FLUSH_BYTES:
            size = 0
            await queue.put(b"".join(pending))
            pending.clear()

    writer = asyncio.create_task(compress())
    try:
        rows = await repo.export_csv(conn, partition, output)
        await queue.put(b"".join(pending))
        await queue.put(None)
        await writer
        await asyncio.to_thread(_close_synced, gz, raw)
    except BaseException:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await asyncio.to_thread(_close_synced, gz, raw)
        raise
    return rows, hashed.digest.hexdigest()


class _Hashing:
    """A file that hashes what is written to it (the gzip stream, header to trailer)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _close_synced(gz: gzip.GzipFile, raw: BinaryIO) -> None:
    if not raw.closed:
        gz.close()
        raw.flush()
        os.fsync(raw.fileno())
        raw.close()


def _write_manifest(target: Path, manifest: dict[str, Any]) -> str:
    data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    tmp = target / (MANIFEST + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(target / MANIFEST)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


async def list_archives(db: repo.Db, month: dt.date | None = None) -> list[Archive]:
    return [Archive(archive_id=r["archive_id"], month=months.label(r["month"]),
                    directory=r["directory"], manifest_sha256=r["manifest_sha256"],
                    state=r["state"], created_at=r["created_at"], restored_at=r["restored_at"],
                    tables=msgspec.json.decode(r["tables"], type=list[TableFile]))
            for r in await repo.archives(db, month)]


def check_files(a: Archive) -> list[Problem]:
    """What no longer matches in an archive's directory: the manifest's sha256 against the
    database, each file's sha256 and row count against the manifest and what was dropped."""
    target = Path(a.directory)
    problems = []
    manifest_path = target / MANIFEST
    try:
        data = manifest_path.read_bytes()
    except OSError as exc:
        return [Problem(month=a.month, file=str(manifest_path), reason=exc.strerror or str(exc))]
    if hashlib.sha256(data).hexdigest() != a.manifest_sha256:
        problems.append(Problem(month=a.month, file=str(manifest_path),
                                reason="sha256 differs from the one recorded at archiving"))
    try:
        manifest = json.loads(data)
        listed = {t["table"]: t for t in manifest["tables"]}
    except (ValueError, KeyError, TypeError) as exc:
        return [*problems, Problem(month=a.month, file=str(manifest_path),
                                   reason=f"not a manifest: {exc}")]
    for t in a.tables:
        entry = listed.get(t.table)
        path = target / t.file
        if entry is None:
            problems.append(Problem(month=a.month, file=str(manifest_path),
                                    reason=f"table {t.table} is missing"))
            continue
        if entry.get("rows") != t.dropped_rows:
            problems.append(Problem(month=a.month, file=str(path), reason=(
                f"manifest says {entry.get('rows')} rows, {t.dropped_rows} were dropped")))
        try:
            actual = sha256_of(path)
        except OSError as exc:
            problems.append(Problem(month=a.month, file=str(path),
                                    reason=exc.strerror or str(exc)))
            continue
        if actual != entry.get("sha256"):
            problems.append(Problem(month=a.month, file=str(path), reason=(
                f"sha256 {actual} but the manifest says {entry.get('sha256')}")))
    return problems


async def verify(pool: asyncpg.Pool, month: dt.date | None = None) -> list[Problem]:
    """``check_files`` for every archive whose rows are out of the database (or one month)."""
    problems: list[Problem] = []
    for a in await list_archives(pool, month):
        if a.state == "dropped":
            problems.extend(await asyncio.to_thread(check_files, a))
    return problems


async def restore(pool: asyncpg.Pool, month: dt.date, actor: str,
                  now: dt.datetime | None = None) -> list[Archive]:
    """Load every archive of a month still out of the database back into its partitions,
    after checking their files; all of them or none."""
    found = [a for a in await list_archives(pool, month) if a.state == "dropped"]
    if not found:
        raise NotFound(f"no archive of month {months.label(month)} out of the database")
    for a in found:
        if problems := await asyncio.to_thread(check_files, a):
            raise InvalidRequest("archive " + a.directory + " does not verify: " + "; ".join(
                f"{p.file}: {p.reason}" for p in problems))
    async with pool.acquire() as conn, conn.transaction():
        await repo.ensure_partitions(conn, [month])
        for a in found:
            manifest = json.loads(
                await asyncio.to_thread((Path(a.directory) / MANIFEST).read_bytes))
            columns = {t["table"]: t["columns"] for t in manifest["tables"]}
            loaded = {}
            for t in sorted(a.tables, key=lambda t: repo.MONTHLY.index(t.table)):
                loaded[t.table] = await repo.copy_into(conn, t.partition, columns[t.table],
                                                       _gunzip(Path(a.directory) / t.file))
                if loaded[t.table] != t.rows:
                    raise InvalidRequest(f"{t.file}: {loaded[t.table]} rows read, the manifest"
                                         f" says {t.rows}; nothing restored")
            await repo.mark_restored(conn, a.archive_id, month, now or dt.datetime.now(dt.UTC))
            await audit.record(conn, actor, "archive.restore", f"archive:{a.month}", None,
                               {"archive_id": a.archive_id, "directory": a.directory,
                                "rows": loaded})
    restored = {a.archive_id for a in found}
    return [a for a in await list_archives(pool, month) if a.archive_id in restored]


async def _gunzip(path: Path) -> AsyncIterator[bytes]:
    """The decompressed file, a block at a time, read in a thread."""
    f = await asyncio.to_thread(gzip.open, path, "rb")
    try:
        while block := await asyncio.to_thread(f.read, READ_BYTES):
            yield block
    finally:
        await asyncio.to_thread(f.close)
