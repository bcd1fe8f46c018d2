"""File exchange with a partner over SFTP (asyncssh).

``send`` uploads every stored outbound file not sent yet, oldest first, each under a
temporary name (``<name>.tmp``) renamed to its name once complete, so the partner never
takes half a file; the file is marked sent only after the rename. A file already on the
remote under its final name with the same size (a crash after the rename, before the mark)
is not uploaded again. ``collect`` downloads the files the partner left in its folder,
applies each (``inbound.receive``) and moves it to ``done/`` — or ``error/`` beside a
``<name>.reason`` file.
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
from typing import Any

import asyncpg
import asyncssh
import msgspec

from billing_oss.core.errors import BillingError, ConfigError
from billing_oss.server.settlement import inbound, outbound, repo, tapin
from billing_oss.server.settlement.model import Partner, SftpEndpoint

log = logging.getLogger(__name__)
DONE_DIR, ERROR_DIR = "done", "error"


class Sent(msgspec.Struct, frozen=True):
    name: str
    file_id: int


class Collected(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    detail: str


def _endpoint(partner: Partner) -> SftpEndpoint:
    """The partner's endpoint, refused without a host key to check: settlement files carry
    money, and an unchecked host could take them or hand us forged returns."""
    endpoint = partner.sftp
    if endpoint is None:
        raise ConfigError(f"partner {partner.tadig} has no sftp endpoint (field sftp)")
    if not endpoint.known_hosts:
        if not endpoint.insecure_skip_host_key:
            raise ConfigError(f"partner {partner.tadig} sftp.known_hosts: the server's host key"
                              " is required, or sftp.insecure_skip_host_key = true")
        log.warning("sftp host key not checked: insecure_skip_host_key is set, any server "
                    "answering this address is trusted", extra={"fields": {
                        "partner": partner.tadig, "host": endpoint.host}})
    return endpoint


def connect(endpoint: SftpEndpoint) -> Any:
    known: object = None  # only with insecure_skip_host_key (checked by _endpoint)
    if endpoint.known_hosts and endpoint.known_hosts.startswith(("ssh-", "ecdsa-")):
        known = ([asyncssh.import_public_key(endpoint.known_hosts)], [], [])
    elif endpoint.known_hosts:
        known = endpoint.known_hosts
    options: dict[str, Any] = {"username": endpoint.username, "known_hosts": known}
    if endpoint.password is not None:
        options["password"] = endpoint.password
    if endpoint.client_key is not None:
        options["client_keys"] = [endpoint.client_key]
    return asyncssh.connect(endpoint.host, endpoint.port, **options)


async def send(pool: asyncpg.Pool, actor: str, tadig: str) -> list[Sent]:
    partner = await outbound.require_partner(pool, tadig)
    endpoint = _endpoint(partner)
    pending = await repo.files_to_send(pool, tadig)
    if not pending:
        return []
    sent = []
    try:
        async with connect(endpoint) as ssh, ssh.start_sftp_client() as sftp:
            for f in pending:
                content = await repo.file_content(pool, f.file_id)
                assert content is not None
                final = posixpath.join(endpoint.outbound_dir, f.name)
                if not await _already_there(sftp, final, len(content)):
                    temporary = final + ".tmp"
                    async with sftp.open(temporary, "wb") as remote:
                        await remote.write(content)
                    await sftp.rename(temporary, final)
                async with pool.acquire() as conn, conn.transaction():
                    await repo.set_file_state(conn, f.file_id, "sent", sent=True)
                    await outbound._record(conn, actor, "settlement.file.sent", f,
                                           {"state": "sent"})
                sent.append(Sent(f.name, f.file_id))
    except (OSError, asyncssh.Error, BillingError) as exc:
        reason = exc.message if isinstance(exc, BillingError) else str(exc)
        raise BillingError(f"partner {tadig}: SFTP {endpoint.host}:{endpoint.port}: {reason} "
                           f"({len(sent)} of {len(pending)} files sent)") from None
    return sent


async def _already_there(sftp: asyncssh.SFTPClient, path: str, size: int) -> bool:
    """True when an earlier send completed the rename; a different file under that name
    (one the partner has not collected yet) is never overwritten."""
    try:
        attrs = await sftp.stat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    if attrs.size != size:
        raise BillingError(f"{path} is on the partner's server with other content (not "
                           "collected yet): not overwritten")
    return True


async def collect(pool: asyncpg.Pool, actor: str, tadig: str,
                  now: dt.datetime | None = None) -> list[Collected]:
    partner = await outbound.require_partner(pool, tadig)
    endpoint = _endpoint(partner)
    out = []
    try:
        async with connect(endpoint) as ssh, ssh.start_sftp_client() as sftp:
            folder = endpoint.inbound_dir
            for name in sorted(await sftp.listdir(folder)):
                path = posixpath.join(folder, name)
                if name.startswith(".") or name.endswith(".tmp") or \
                        not await sftp.isfile(path):
                    continue
                async with sftp.open(path, "rb") as remote:
                    data = await remote.read()
                try:
                    got = await inbound.receive(pool, actor, name, data, now)
                    detail = "duplicate" if got.duplicate else got.file.state
                    if isinstance(got, tapin.TapReceived) and got.rap is not None:
                        detail += f", answered by {got.rap}"
                    out.append(Collected(name, True, detail))
                    await _move(sftp, folder, name, DONE_DIR)
                except BillingError as exc:
                    out.append(Collected(name, False, exc.message))
                    await _move(sftp, folder, name, ERROR_DIR, exc.message)
    except (OSError, asyncssh.Error) as exc:
        raise BillingError(f"partner {tadig}: SFTP {endpoint.host}:{endpoint.port}: {exc}") \
            from None
    return out


async def _move(sftp: asyncssh.SFTPClient, folder: str, name: str, to: str,
                reason: str | None = None) -> None:
    target = posixpath.join(folder, to)
    if not await sftp.isdir(target):
        await sftp.mkdir(target)
    await sftp.rename(posixpath.join(folder, name), posixpath.join(target, name))
    if reason is not None:
        async with sftp.open(posixpath.join(target, name + ".reason"), "w") as f:
            await f.write(reason + "\n")
