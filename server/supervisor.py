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
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from billing_oss.core.errors import StartupError
from billing_oss.server.composition import check_sources, database, prepare_database
from billing_oss.server.config import Config
from billing_oss.server.workers import ENV_DATABASE_URL

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


def worker_command(argv: Sequence[str], index: int, fd: int,
                   supervisor_pid: int | None = None) -> list[str]:
    """Worker ``index``'s command line: ``argv`` (the serve options), its place and the
    supervisor it watches (this process unless said)."""
    return [sys.executable, "-m", "billing_oss", *argv, "--worker-index", str(index),
            "--listen-fd", str(fd), "--supervisor-pid",
            str(os.getpid() if supervisor_pid is None else supervisor_pid)]


def worker_env(database_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A worker's environment: the supervisor's, with the database it prepared. Not on the
    command line, which every local user reads (``ps``) with any password in the URL."""
    return {**(os.environ if base is None else base), ENV_DATABASE_URL: database_url}


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
            env = worker_env(dsn)
            slots = [_Slot(i, worker_command(argv, i, sock.fileno()), env, sock.fileno())
                     for i in range(count)]
            tasks = [asyncio.create_task(slot.keep_running(stop), name=f"worker-{slot.index}")
                     for slot in slots]
            results = await asyncio.gather(*tasks)
            log.info("workers stopped")
            return 1 if any(results) else 0
    finally:
        sock.close()


def restart_pause(previous: float | None, age: float) -> float:
    """The wait before starting again a worker that died ``age`` seconds after its start:
    ``RESTART_MIN_S``, doubled (up to ``RESTART_MAX_S``) from ``previous`` while it keeps
    dying younger than ``YOUNG_S``."""
    if previous is None or age > YOUNG_S:
        return RESTART_MIN_S
    return min(previous * 2, RESTART_MAX_S)


class _Slot:
    """One worker index: its process, started again whenever it dies unasked."""

    def __init__(self, index: int, command: list[str], env: dict[str, str], fd: int) -> None:
        self.index, self.command, self.env, self.fd = index, command, env, fd

    async def keep_running(self, stop: asyncio.Event) -> bool:
        """Until ``stop``; True when the worker had to be killed at shutdown."""
        pause: float | None = None  # the wait before the last start (None: the first)
        while not stop.is_set():
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(*self.command, env=self.env,
                                                        pass_fds=(self.fd,))
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
            pause = restart_pause(pause, age)
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
