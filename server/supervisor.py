"""``serve --workers N``: a supervisor process and N worker processes sharing all the work.

The supervisor prepares what must happen once (the embedded PostgreSQL when no database URL
is configured, migrations, the demo catalog), binds the HTTP port once and starts N workers,
each the normal server, with ``--worker-index i``. Each worker inherits the listening socket
and accepts from it: one accept queue, so a connection waiting there when a worker dies is
taken by another (with ``SO_REUSEPORT`` each socket has its own queue, lost with its
process). The rest is shared through the broker and the database:

- MQTT: each source subscribes as ``$share/<group>/<filter>`` (group ``billing-oss`` unless
  ``shared_group`` is set), with a client id per worker index (``<id>`` for worker 0,
  ``<id>-w<i>`` for the others). The broker keeps a persistent session's unacknowledged and
  queued messages for its client id; a worker restarted under the same index gets them.
- SFTP: a file is claimed with a session advisory lock (``adapters.sftp``), dropped with
  its holder's connection.
- Jobs (bill runs, rerates, simulations): claimed with session advisory locks
  (``server.jobs``); clock work (controls, checkpoints) through ``server.scheduled``.

A worker that exits unexpectedly is started again under the same index, after a pause
that grows while it keeps dying young. SIGTERM or SIGINT to the supervisor is forwarded to
every worker; each finishes (commits and acknowledges) what it holds and exits, then the
supervisor stops the embedded PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import sys
import time
from collections.abc import Sequence

from billing_oss.core.errors import StartupError
from billing_oss.server.composition import check_sources, database, prepare_database
from billing_oss.server.config import Config

log = logging.getLogger(__name__)

STOP_GRACE_S = 90.0  # a worker still running this long after SIGTERM is killed
RESTART_MIN_S, RESTART_MAX_S = 0.5, 30.0
YOUNG_S = 10.0  # a worker dying younger than this waits longer before its next start


def listen_socket(host: str, port: int) -> socket.socket:
    """The HTTP socket the workers inherit, bound and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"cannot listen on {host}:{port}: the port is already in use") from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    sock.set_inheritable(True)
    return sock


def worker_command(argv: Sequence[str], index: int, database_url: str, fd: int) -> list[str]:
    """Worker ``index``'s command line: ``argv`` (the serve options) and its place."""
    return [sys.executable, "-m", "billing_oss", *argv, "--worker-index", str(index),
            "--database-url", database_url, "--listen-fd", str(fd)]


async def supervise(config: Config, count: int, argv: Sequence[str],
                    stop: asyncio.Event) -> int:
    """Prepare the database, then keep ``count`` workers running until ``stop``; 0, or 1
    when a worker had to be killed at shutdown."""
    check_sources(config)
    sock = listen_socket(config.http.host, config.http.port)
    try:
        async with database(config) as dsn:
            await prepare_database(config, dsn)
            log.info("starting workers", extra={"fields": {
                "workers": count, "url": f"http://{config.http.host}:{config.http.port}"}})
            slots = [_Slot(i, worker_command(argv, i, dsn, sock.fileno()), sock.fileno())
                     for i in range(count)]
            tasks = [asyncio.create_task(slot.keep_running(stop), name=f"worker-{slot.index}")
                     for slot in slots]
            results = await asyncio.gather(*tasks)
            log.info("workers stopped")
            return 1 if any(results) else 0
    finally:
        sock.close()


class _Slot:
    """One worker index: its process, started again whenever it dies unasked."""

    def __init__(self, index: int, command: list[str], fd: int) -> None:
        self.index, self.command, self.fd = index, command, fd

    async def keep_running(self, stop: asyncio.Event) -> bool:
        """Until ``stop``; True when the worker had to be killed at shutdown."""
        pause = RESTART_MIN_S
        while not stop.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*self.command, pass_fds=(self.fd,))
            log.info("worker started", extra={"fields": {"worker": self.index,
                                                         "pid": proc.pid}})
            waiting = asyncio.create_task(proc.wait())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([waiting, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not waiting.done():
                stopping.cancel()
                return await self._stop(proc, waiting)
            stopping.cancel()
            age = time.monotonic() - started
            pause = RESTART_MIN_S if age > YOUNG_S else min(pause * 2, RESTART_MAX_S)
            log.warning("worker exited; starting it again", extra={"fields": {
                "worker": self.index, "pid": proc.pid, "returncode": proc.returncode,
                "restart_in_s": pause}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
        return False

    async def _stop(self, proc: asyncio.subprocess.Process, waiting: asyncio.Task[int]
                    ) -> bool:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(waiting), STOP_GRACE_S)
            return False
        except TimeoutError:
            log.warning("worker did not stop in time; killed", extra={"fields": {
                "worker": self.index, "pid": proc.pid}})
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await waiting
            return True
