"""SFTP collection: poll a remote directory, ingest each new file once, move it aside.

Per poll, files whose name matches ``pattern`` are taken in name order. Each is claimed in
PostgreSQL (a session advisory lock on source + name, held while it is processed, so several
workers polling the same source never process a file twice), downloaded, checked against
the file ledger for sequence alarms, ingested through the pipeline (registered in
``source_files`` by content: a crash anywhere resumes or recognises it), then renamed on the
remote into ``done/`` — or ``error/`` with a ``<name>.reason`` file beside it.

Sequence alarms (a metric, a log line and a ``source_file_alarms`` row each):
``gap`` — numbers skipped since the highest received; ``repeat`` — content already received
under another name; ``reused`` — a number already received with different content.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
import posixpath
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh

from server.errors import BillingError
from server.metrics import FILE_ALARMS, SFTP_FILES
from server.pipeline.contract import FileOutcome, Sink
from server.sources_config import SftpSource

log = logging.getLogger(__name__)

DONE_DIR, ERROR_DIR = "done", "error"


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: str  # gap | repeat | reused
    detail: str
    first_missing: int | None = None
    last_missing: int | None = None


class SftpPoller:
    def __init__(self, name: str, config: SftpSource, sink: Sink, pool: asyncpg.Pool) -> None:
        self.name = name
        self.config = config
        self.sink = sink
        self.pool = pool
        self.sequence = re.compile(config.sequence_pattern)
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self._connect() as conn, conn.start_sftp_client() as sftp:
                    while not stop.is_set():
                        await self.poll(sftp, stop)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)
            except (OSError, asyncssh.Error) as exc:
                log.warning("sftp poll failed; retrying", extra={"fields": {
                    "source": self.name, "error": str(exc)}})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)

    def _connect(self) -> Any:  # asyncssh's awaitable context manager of a connection
        cfg = self.config
        return asyncssh.connect(
            cfg.host, cfg.port, username=cfg.username, password=cfg.password or None,
            client_keys=[cfg.client_key] if cfg.client_key else None,
            known_hosts=_known_hosts(cfg.known_host_key), agent_path=None)

    async def poll(self, sftp: asyncssh.SFTPClient, stop: asyncio.Event | None = None) -> int:
        """Process every matching file present now; the number processed."""
        names = sorted(
            str(entry.filename) for entry in await sftp.readdir(self.config.remote_dir)
            if entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR
            and fnmatch.fnmatchcase(str(entry.filename), self.config.pattern)
            and not str(entry.filename).endswith(".reason"))
        done, contended = 0, False
        for name in names:
            if stop is not None and stop.is_set():
                return done
            result = await self._claim_and_process(sftp, name)
            contended |= result is None
            done += result or 0
        if not contended:  # a file another worker holds would look like a gap for a moment
            await self._scan_gaps()
        return done

    async def _claim_and_process(self, sftp: asyncssh.SFTPClient, name: str) -> int | None:
        """1 when processed, 0 when gone meanwhile, None when another worker holds it."""
        lock = f"sftp:{self.name}:{name}"
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", lock):
                return None
            try:
                return await self._process(sftp, name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)

    async def _process(self, sftp: asyncssh.SFTPClient, name: str) -> int:
        remote = posixpath.join(self.config.remote_dir, name)
        with tempfile.TemporaryDirectory(prefix="billing-sftp-") as tmp:
            local = Path(tmp) / name
            try:
                await sftp.get(remote, str(local))
            except asyncssh.SFTPNoSuchFile:
                return 0  # moved by another worker since the listing
            sha = await asyncio.to_thread(_sha256, local)
            sequence_no = self._sequence_no(name)
            error: str | None = None
            for alarm in await self._alarms(name, sha, sequence_no):
                await self._raise_alarm(name, sequence_no, alarm)
            try:
                outcome = await self.sink.ingest_file(local, source=self.name,
                                                      format=self.config.format, name=name)
            except BillingError as exc:
                if exc.code == "FILE_BUSY":
                    return 0
                outcome, error = None, exc.message
        if outcome is not None:
            error = await self._record(outcome, sequence_no)
        await self._move(sftp, name, error)
        SFTP_FILES.labels(self.name, "error" if error else "done").inc()
        log.info("sftp file collected", extra={"fields": {
            "source": self.name, "file": name, "sequence_no": sequence_no, "sha256": sha,
            "replay": outcome.replay if outcome else None,
            "records": outcome.counts.in_ if outcome else 0, "error": error}})
        self.processed += 1
        return 1

    def _sequence_no(self, name: str) -> int | None:
        match = self.sequence.search(name)
        if match is None:
            return None
        text = match.group(1) if match.groups() else match.group(0)
        return int(text) if text.isdigit() else None

    async def _alarms(self, name: str, sha: str, sequence_no: int | None) -> list[Alarm]:
        rows = await self.pool.fetch(
            "SELECT name, sha256, sequence_no FROM source_files WHERE source = $1"
            " AND (sha256 = $2 OR sequence_no = $3)", self.name, sha, sequence_no)
        alarms: list[Alarm] = []
        for row in rows:
            if row["name"] == name and row["sha256"] == sha:
                return []  # this very file again: a retry after a crash, not an alarm
            if row["sha256"] == sha:
                alarms.append(Alarm("repeat", f"same content as {row['name']}"))
            elif row["sequence_no"] == sequence_no:
                alarms.append(Alarm("reused", f"sequence {sequence_no} was {row['name']} "
                                              f"with different content"))
        return alarms

    async def _scan_gaps(self) -> None:
        """Alarm each run of missing sequence numbers not alarmed before. Done when no file of
        the source is in progress, so a file still being ingested is not taken for a gap."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"gaps:{self.name}")
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM source_files WHERE source = $1"
                                   " AND state = 'claimed')", self.name):
                return
            gaps = await conn.fetch(_NEW_GAPS, self.name)
        for gap in gaps:
            first, last = gap["first_missing"], gap["last_missing"]
            what = f"file {first}" if first == last else f"files {first}..{last}"
            await self._raise_alarm(gap["name"], gap["sequence_no"],
                                    Alarm("gap", f"{what} missing", first, last))

    async def _raise_alarm(self, name: str, sequence_no: int | None, alarm: Alarm) -> None:
        await self.pool.execute(
            "INSERT INTO source_file_alarms (source, kind, name, sequence_no, first_missing,"
            " last_missing, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            self.name, alarm.kind, name, sequence_no, alarm.first_missing, alarm.last_missing,
            alarm.detail)
        FILE_ALARMS.labels(self.name, alarm.kind).inc()
        log.warning("file sequence alarm", extra={"fields": {
            "source": self.name, "file": name, "kind": alarm.kind, "detail": alarm.detail}})

    async def _record(self, outcome: FileOutcome, sequence_no: int | None) -> str | None:
        """Note what the name told (sequence, partner); the file's error, if it had one."""
        row = await self.pool.fetchrow(
            "UPDATE source_files SET sequence_no = coalesce(sequence_no, $2),"
            " partner = coalesce(partner, $3) WHERE source_file_id = $1 RETURNING state, error",
            outcome.source_file_id, sequence_no, self.config.partner or None)
        if row is None or row["state"] != "error":
            return None
        return str(row["error"] or "malformed file")

    async def _move(self, sftp: asyncssh.SFTPClient, name: str, error: str | None) -> None:
        folder = posixpath.join(self.config.remote_dir, ERROR_DIR if error else DONE_DIR)
        with contextlib.suppress(asyncssh.SFTPFailure):
            await sftp.makedirs(folder, exist_ok=True)
        if error:
            async with sftp.open(posixpath.join(folder, name + ".reason"), "w") as f:
                await f.write(error + "\n")
        target = posixpath.join(folder, name)
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            if await sftp.exists(target):
                await sftp.remove(target)
        await sftp.rename(posixpath.join(self.config.remote_dir, name), target)


# Runs of missing numbers between consecutive received sequence numbers, not alarmed yet.
_NEW_GAPS = """
SELECT s.name, s.sequence_no, s.prev + 1 AS first_missing, s.sequence_no - 1 AS last_missing
FROM (SELECT name, sequence_no, lag(sequence_no) OVER (ORDER BY sequence_no) AS prev
      FROM (SELECT DISTINCT ON (sequence_no) name, sequence_no FROM source_files
            WHERE source = $1 AND sequence_no IS NOT NULL
            ORDER BY sequence_no, source_file_id) f) s
WHERE s.sequence_no > s.prev + 1 AND NOT EXISTS (
    SELECT 1 FROM source_file_alarms a WHERE a.source = $1 AND a.kind = 'gap'
    AND a.first_missing = s.prev + 1 AND a.last_missing = s.sequence_no - 1)
ORDER BY s.sequence_no
"""


def _known_hosts(value: str) -> object:
    """A public key line, a known_hosts file path, or empty (the host key is not checked)."""
    if not value:
        return None
    if value.startswith(("ssh-", "ecdsa-")):
        return ([asyncssh.import_public_key(value)], [], [])
    return value


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
