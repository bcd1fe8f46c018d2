"""The SFTP server the tests talk to: asyncssh on loopback, one user ``billing`` with
``PASSWORD``, its files chrooted in a folder of the test's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncssh

from tests.conftest import free_port

USERNAME = "billing"
PASSWORD = "s3cret"


class PasswordServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USERNAME and password == PASSWORD


@contextlib.asynccontextmanager
async def sftp_server(root: Path, key: asyncssh.SSHKey,
                      factory: Callable[..., asyncssh.SFTPServer] = asyncssh.SFTPServer,
                      ) -> AsyncIterator[int]:
    """A server chrooted in ``root`` with host key ``key``, listening on the port yielded."""
    port = free_port()
    server = await asyncssh.create_server(
        PasswordServer, "127.0.0.1", port, server_host_keys=[key],
        sftp_factory=lambda chan: factory(chan, chroot=str(root).encode()))
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()
