"""SFTP collection: poll a remote directory, ingest each new file once, move it aside.

Per poll, files whose name matches ``pattern``, that are complete by the source's
``completion`` convention (``adapters.sftp_completion``: their header, a rename, a marker
file, a stable size) and that were not modified in the last ``min_age_s`` are taken in name
order; an incomplete file stays for a later poll, alarmed once it stays so too long. Each is
claimed in PostgreSQL (a session advisory lock on source + name, held while it is
processed, so several workers polling the same source never process a file twice),
downloaded (checked against its header, in ``header`` mode), checked against the file
ledger for sequence alarms, ingested through the pipeline (registered in
``source_files`` by content: a crash anywhere resumes or recognises it), then renamed on the
remote into ``done/`` — or ``error/`` with a ``<name>.reason`` file beside it.

Up to ``files_in_flight`` files are ingested at once: a file is a few pipeline batches, so
one file at a time leaves the database idle while the next is decoded and rated. Files are
still claimed, downloaded and checked for alarms one by one in name order (against the
ledger and the files of the same poll not registered yet), and a file with the same content
as one still being ingested waits for it.

Sequence alarms (a metric, a log line and a ``source_file_alarms`` row each):
``gap`` — numbers skipped since the highest received; ``repeat`` — content already received
under another name; ``reused`` — a number already received with different content;
``incomplete`` — a file still not whole ``incomplete_alarm_s`` after it was first listed;
``not_usage`` — a file of a neighbouring kind the format leaves to another module (a RAP file
among TAP files: settlement's), left where it is and not downloaded again by this process.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import asyncssh

from billing_oss.adapters.formats.registry import find
from billing_oss.adapters.sftp_completion import CompletionGate
from billing_oss.adapters.sources import check_format
from billing_oss.core.contract import FileAlarm, FileOutcome, Sink
from billing_oss.core.db_failures import TRANSIENT, discard
from billing_oss.core.errors import BillingError, ConfigError, FileBusy
from billing_oss.core.metrics import FILE_ALARMS, SFTP_FILES
from billing_oss.core.sources_config import SftpSource
from billing_oss.server.store import files_repo

log = logging.getLogger(__name__)

DONE_DIR, ERROR_DIR = "done", "error"
# How long a stop waits for the partner to acknowledge the session's close: a server that
# never answers would otherwise hold every stop of ``serve`` until the sources' grace ends.
CLOSE_TIMEOUT_S = 2.0
# A poll that fails so (the SFTP server, or PostgreSQL, out of reach) is retried later.
_POLL_FAILURES: tuple[type[BaseException], ...] = (OSError, asyncssh.Error, *TRANSIENT)


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: str  # gap | repeat | reused | incomplete
    detail: str
    first_missing: int | None = None
    last_missing: int | None = None


@dataclass(frozen=True, slots=True)
class _Fetched:
    name: str
    sha256: str
    sequence_no: int | None
    local: Path  # the downloaded copy


class SftpPoller:
    def __init__(self, name: str, config: SftpSource, sink: Sink, pool: asyncpg.Pool) -> None:
        if not config.known_host_key and not config.insecure_skip_host_key:
            raise ConfigError(f"sources.{name}.known_host_key: the server's host key is "
                              "required, or insecure_skip_host_key = true")
        check_format(name, config, sink.formats)
        self.name = name
        self.config = config
        self.sink = sink
        self.pool = pool
        self.sequence = re.compile(config.sequence_pattern)
        self.gate = CompletionGate(config)
        fmt = find(config.format)
        self._not_usage = fmt.not_usage if fmt is not None else None
        self._kept: set[str] = set()  # names left to another module: not fetched again
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                conn = await self._connect()
                try:
                    sftp = await conn.start_sftp_client()
                    while not stop.is_set():
                        await self.poll(sftp, stop)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)
                finally:
                    await _close(conn)
            except _POLL_FAILURES as exc:
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
        if not self.config.known_host_key:
            log.warning("sftp host key not checked: insecure_skip_host_key is set, any server"
                        " answering this address is trusted", extra={"fields": {
                            "source": self.name, "host": self.config.host}})
        now = time.time()
        entries = [entry for entry in await sftp.readdir(self.config.remote_dir)
                   if entry.attrs.type == asyncssh.FILEXFER_TYPE_REGULAR]
        listed = sorted(
            str(entry.filename) for entry in entries
            if fnmatch.fnmatchcase(str(entry.filename), self.config.pattern)
            and not str(entry.filename).endswith(".reason")
            and not self.gate.is_marker(str(entry.filename))
            and str(entry.filename) not in self._kept
            and self._safe_name(str(entry.filename)))
        recent = {str(entry.filename) for entry in entries if not self._settled(entry, now)}
        names = [name for name in self.gate.candidates(entries, listed) if name not in recent]
        slots = asyncio.Semaphore(self.config.files_in_flight)
        fetched: list[_Fetched] = []
        tasks: list[asyncio.Task[int]] = []
        by_content: dict[str, asyncio.Task[int]] = {}  # sha256 → the last file ingesting it
        contended = False
        try:
            with tempfile.TemporaryDirectory(prefix="billing-sftp-") as tmp:
                async with asyncio.TaskGroup() as group:
                    for name in names:
                        await slots.acquire()
                        if stop is not None and stop.is_set():
                            break
                        claim = await self._claim(name)
                        if claim is None:
                            contended = True
                            slots.release()
                            continue
                        try:
                            got = await self._fetch(sftp, name, Path(tmp), fetched)
                        except BaseException:
                            await self._release(claim, name)
                            raise
                        if got is None:
                            await self._release(claim, name)
                            slots.release()
                            continue
                        fetched.append(got)
                        task = group.create_task(self._ingest(
                            sftp, got, claim, slots, after=by_content.get(got.sha256)))
                        by_content[got.sha256] = task
                        tasks.append(task)
        except BaseExceptionGroup as failed:  # the first failure, as a file at a time had it
            raise failed.exceptions[0] from None
        if not contended:  # a file another worker holds would look like a gap for a moment
            await self._scan_gaps()
        for name, why, age in self.gate.overdue():
            await self._raise_alarm(name, self._sequence_no(name), Alarm(
                "incomplete", f"incomplete for {age:.0f} s: {why}"))
        return sum(task.result() for task in tasks)

    async def _claim(self, name: str) -> Any:
        """A connection holding the file's lock, or None when another worker holds it."""
        conn = await self.pool.acquire()
        try:
            if await files_repo.try_lock(conn, f"sftp:{self.name}:{name}"):
                return conn
        except BaseException:
            await self.pool.release(conn)
            raise
        await self.pool.release(conn)
        return None

    async def _release(self, conn: Any, name: str) -> None:
        try:
            await files_repo.unlock(conn, f"sftp:{self.name}:{name}")
        except TRANSIENT:  # a lost connection took its session lock with it
            await discard(self.pool, conn)
            return
        await self.pool.release(conn)

    async def _fetch(self, sftp: asyncssh.SFTPClient, name: str, folder: Path,
                     fetched: list[_Fetched]) -> _Fetched | None:
        """Download a file and raise its alarms; None when it is gone (another worker)."""
        local = folder / name
        if Path(posixpath.normpath(local)).parent != folder:  # no name may climb out
            self._skip_unsafe(name, "resolves outside the download folder")
            return None
        try:
            await sftp.get(posixpath.join(self.config.remote_dir, name), str(local))
        except asyncssh.SFTPNoSuchFile:
            return None
        if (why := await self.gate.check_downloaded(name, local)) is not None:
            local.unlink(missing_ok=True)
            log.info("sftp file incomplete; left for a later poll", extra={"fields": {
                "source": self.name, "file": name, "reason": why}})
            return None
        if self._not_usage is not None and (why := self._not_usage(local)) is not None:
            local.unlink(missing_ok=True)
            self._kept.add(name)
            self.gate.taken(name)  # whole, only not ours: never an "incomplete" file
            SFTP_FILES.labels(self.name, "not_usage").inc()
            await self._raise_alarm(name, None, Alarm("not_usage", f"{why}; kept, not ingested"))
            return None
        sha = await asyncio.to_thread(_sha256, local)
        got = _Fetched(name, sha, self._sequence_no(name), local)
        for alarm in await self._alarms(got, fetched):
            await self._raise_alarm(name, got.sequence_no, alarm)
        return got

    async def _ingest(self, sftp: asyncssh.SFTPClient, got: _Fetched, claim: Any,
                      slots: asyncio.Semaphore, after: asyncio.Task[int] | None) -> int:
        """Ingest a fetched file and move it aside; 1, or 0 when another worker has it."""
        try:
            if after is not None:  # the same content, still being ingested: let it finish
                await asyncio.wait([after])
            return await self._process(sftp, got)
        finally:
            got.local.unlink(missing_ok=True)
            await self._release(claim, got.name)
            slots.release()

    async def _process(self, sftp: asyncssh.SFTPClient, got: _Fetched) -> int:
        name, sequence_no = got.name, got.sequence_no
        error: str | None = None
        try:
            outcome = await self.sink.ingest_file(got.local, source=self.name,
                                                  format=self.config.format, name=name,
                                                  options=self.config.options or None)
        except FileBusy:
            return 0
        except BillingError as exc:
            outcome, error = None, exc.message
        if outcome is not None:
            error = await self._record(outcome, sequence_no)
        await self._move(sftp, name, error)
        self.gate.taken(name)
        SFTP_FILES.labels(self.name, "error" if error else "done").inc()
        log.info("sftp file collected", extra={"fields": {
            "source": self.name, "file": name, "sequence_no": sequence_no, "sha256": got.sha256,
            "replay": outcome.replay if outcome else None,
            "records": outcome.counts.in_ if outcome else 0, "error": error}})
        self.processed += 1
        return 1

    def _safe_name(self, name: str) -> bool:
        """A listed name is used as a local file name: one that is a path (a hostile or broken
        server) could write outside the download folder, so it is skipped, loudly."""
        if "/" in name or "\\" in name:
            return self._skip_unsafe(name, "contains a path separator")
        if name in (".", "..") or "\0" in name:
            return self._skip_unsafe(name, "is not a file name")
        return True

    def _settled(self, entry: asyncssh.SFTPName, now: float) -> bool:
        """A file modified within ``min_age_s`` may still be uploading: taking it now would
        ingest part of it and move it away from under its uploader. It waits a poll."""
        mtime = entry.attrs.mtime
        if mtime is None or now - mtime >= self.config.min_age_s:
            return True
        log.debug("sftp file still recent; left for a later poll", extra={"fields": {
            "source": self.name, "file": str(entry.filename), "age_s": round(now - mtime, 3)}})
        return False

    def _skip_unsafe(self, name: str, why: str) -> bool:
        SFTP_FILES.labels(self.name, "unsafe_name").inc()
        log.warning("sftp file skipped: unsafe name", extra={"fields": {
            "source": self.name, "file": name, "reason": why}})
        return False

    def _sequence_no(self, name: str) -> int | None:
        match = self.sequence.search(name)
        if match is None:
            return None
        text = match.group(1) if match.groups() else match.group(0)
        return int(text) if text.isdigit() else None

    async def _alarms(self, got: _Fetched, fetched: list[_Fetched]) -> list[Alarm]:
        """Alarms for a file, against the ledger and the files of this poll fetched before
        it (which may not be registered yet: they may still be waiting to be ingested)."""
        name, sha, sequence_no = got.name, got.sha256, got.sequence_no
        earlier = await files_repo.same_content_or_sequence(self.pool, self.name, sha,
                                                            sequence_no)
        for other in fetched:
            if other.sha256 == sha or (sequence_no is not None
                                       and other.sequence_no == sequence_no):
                earlier.setdefault(other.name, (other.sha256, other.sequence_no))
        alarms: list[Alarm] = []
        for other_name, (other_sha, other_sequence) in earlier.items():
            if other_name == name and other_sha == sha:
                return []  # this very file again: a retry after a crash, not an alarm
            if other_sha == sha:
                alarms.append(Alarm("repeat", f"same content as {other_name}"))
            elif other_sequence == sequence_no:
                alarms.append(Alarm("reused", f"sequence {sequence_no} was {other_name} "
                                              f"with different content"))
        return alarms

    async def _scan_gaps(self) -> None:
        """Alarm each run of missing sequence numbers not alarmed before. Done when no file of
        the source is in progress, so a file still being ingested is not taken for a gap."""
        gaps = await files_repo.new_gaps(self.pool, self.name)
        for gap in gaps or ():
            first, last = gap["first_missing"], gap["last_missing"]
            what = f"file {first}" if first == last else f"files {first}..{last}"
            await self._raise_alarm(gap["name"], gap["sequence_no"],
                                    Alarm("gap", f"{what} missing", first, last))

    async def _raise_alarm(self, name: str, sequence_no: int | None, alarm: Alarm) -> None:
        if not await self.sink.file_alarm(FileAlarm(
            source=self.name, name=name, sequence_no=sequence_no, kind=alarm.kind,
            detail=alarm.detail, first_missing=alarm.first_missing,
            last_missing=alarm.last_missing)):
            return
        FILE_ALARMS.labels(self.name, alarm.kind).inc()
        log.warning("file sequence alarm", extra={"fields": {
            "source": self.name, "file": name, "kind": alarm.kind, "detail": alarm.detail}})

    async def _record(self, outcome: FileOutcome, sequence_no: int | None) -> str | None:
        """Note what the name told (sequence, partner); the file's error, if it had one."""
        row = await files_repo.note_name(self.pool, outcome.source_file_id, sequence_no,
                                         self.config.partner or None)
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
        if self.gate.mode == "marker":  # the marker goes with its file, first: a crash
            marker = name + self.config.marker_suffix  # between the two leaves no stray one
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await self._rename_into(sftp, folder, marker)
        await self._rename_into(sftp, folder, name)

    async def _rename_into(self, sftp: asyncssh.SFTPClient, folder: str, name: str) -> None:
        target = posixpath.join(folder, name)
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            if await sftp.exists(target):
                await sftp.remove(target)
        await sftp.rename(posixpath.join(self.config.remote_dir, name), target)


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    """Close the connection (and the SFTP session on it) without waiting on the partner for
    more than ``CLOSE_TIMEOUT_S``; past it the connection is dropped."""
    conn.close()
    try:
        await asyncio.wait_for(conn.wait_closed(), CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("sftp server did not acknowledge the close; connection dropped",
                    extra={"fields": {"timeout_s": CLOSE_TIMEOUT_S}})
        conn.abort()


def _known_hosts(value: str) -> object:
    """A public key line, a known_hosts file path, or empty (insecure_skip_host_key: the host
    key is not checked)."""
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
