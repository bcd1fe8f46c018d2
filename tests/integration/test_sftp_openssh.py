"""SFTP collection against OpenSSH's own ``sftp-server`` (Debian's openssh-sftp-server): the
partner's file server is the one real partners run, behind an SSH listener on loopback with
its own generated host key. A stalled 3GPP upload is left alone until it is whole."""

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import asyncssh
import pytest

from billing_oss.adapters.sftp import SftpPoller
from billing_oss.core.sources_config import SftpSource
from billing_oss.server.pipeline.pipeline import Pipeline
from tests.conftest import free_port
from tests.integration.test_sftp import alarms_of, cdr_file
from tests.integration.test_sftp import pipeline as pipeline
from tests.sftp_server import PASSWORD, PasswordServer

SFTP_SERVER = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/sftp-server")
                    if os.access(p, os.X_OK)), None)

pytestmark = pytest.mark.slow


class _OpenSshSftp(asyncssh.SSHServerSession[bytes]):
    """The "sftp" subsystem's channel handed to an OpenSSH sftp-server process, as sshd does."""

    def __init__(self) -> None:
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._child: asyncio.subprocess.Process | None = None
        self._early: list[bytes] = []  # what arrived before the process started
        self._eof = False

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:  # type: ignore[override]
        self._chan = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def session_started(self) -> None:
        asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        assert SFTP_SERVER is not None and self._chan is not None
        child = self._child = await asyncio.create_subprocess_exec(
            SFTP_SERVER, "-e", "-l", "ERROR", stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert child.stdin is not None and child.stdout is not None
        for data in self._early:
            child.stdin.write(data)
        if self._eof:
            child.stdin.close()
        while chunk := await child.stdout.read(1 << 16):
            self._chan.write(chunk)
        self._chan.exit(await child.wait())

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._child is None or self._child.stdin is None:
            self._early.append(data)
        else:
            self._child.stdin.write(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self._child is not None and self._child.stdin is not None:
            self._child.stdin.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._child is not None and self._child.returncode is None:
            self._child.kill()


class _OpenSshServer(PasswordServer):
    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _OpenSshSftp()


@pytest.fixture
async def openssh(tmp_path: Path) -> AsyncIterator[tuple[Path, int, str]]:
    if SFTP_SERVER is None:  # ./run.sh test installs it (ensure_sftp_server)
        pytest.fail("OpenSSH sftp-server is not installed (apt-get install openssh-sftp-server)")
    root = tmp_path / "partner"
    (root / "out").mkdir(parents=True)
    key = asyncssh.generate_private_key("ssh-ed25519")
    port = free_port()
    server = await asyncssh.create_server(
        _OpenSshServer, "127.0.0.1", port, server_host_keys=[key], encoding=None)
    yield root, port, key.export_public_key().decode().strip()
    server.close()
    await server.wait_closed()


async def test_stalled_upload_through_openssh_sftp_server_is_taken_only_whole(
        openssh: tuple[Path, int, str], pipeline: Pipeline, pool: asyncpg.Pool) -> None:
    root, port, host_key = openssh
    remote = str(root / "out")
    cfg = SftpSource(host="127.0.0.1", port=port, username="billing", password=PASSWORD,
                     known_host_key=host_key, remote_dir=remote, format="3gpp",
                     pattern="oss_*.cdr", min_age_s=0, incomplete_alarm_s=0.5)
    poller = SftpPoller("openssh", cfg, pipeline, pool)
    assert poller.gate.mode == "header"
    async with poller._connect() as conn, conn.start_sftp_client() as sftp:
        for seed, inside in ((11, 0), (12, 7)):  # cut on a CDR boundary, then inside a CDR
            data, ends = cdr_file(500, seed=seed)
            cut = ends[249] + inside
            name = f"oss_{seed:04d}.cdr"
            async with sftp.open(f"{remote}/{name}", "wb") as upload:
                await upload.write(data[:cut])
                for _ in range(3):
                    assert await poller.poll(sftp) == 0
                    await asyncio.sleep(0.3)
                assert (root / "out" / name).stat().st_size == cut
                await upload.write(data[cut:])
            assert await poller.poll(sftp) == 1
            assert (root / "out" / "done" / name).read_bytes() == data
    rows = await pool.fetch("SELECT state, count_in FROM source_files WHERE source = 'openssh'")
    assert sorted(tuple(r) for r in rows) == [("done", 500), ("done", 500)]
    alarms = await alarms_of(pool, "openssh")
    assert [(a[0], a[1]) for a in alarms] == [("incomplete", "oss_0011.cdr"),
                                              ("incomplete", "oss_0012.cdr")]
    assert not (root / "out" / "error").exists()
