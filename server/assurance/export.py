"""Checkpoints uploaded to an SFTP partner (``[assurance.checkpoint_sftp]``), somewhere the
database administrator cannot rewrite them: the checkpoint, its leaves and ``signing.pub``.

The server's host key is required (a public key line or a known_hosts path): a checkpoint
sent to whoever answers the address would anchor nothing. Each file is written under a
temporary name and renamed, so the partner never sees half a checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import asyncssh

from billing_oss.core.errors import ConfigError
from billing_oss.server.assurance.checkpoints import PUBLIC_KEY_FILE
from billing_oss.server.config import CheckpointSftp


def files_of(checkpoint: Path) -> list[Path]:
    """The files one checkpoint is made of, the checkpoint itself last."""
    leaves = checkpoint.with_name(checkpoint.name.removesuffix(".json") + ".leaves.json")
    return [p for p in (leaves, checkpoint.parent / PUBLIC_KEY_FILE) if p.exists()] \
        + [checkpoint]


async def upload_sftp(config: CheckpointSftp, checkpoint: Path) -> list[str]:
    """Upload ``checkpoint`` (and its leaves and public key); the remote paths written."""
    if not config.known_host_key:
        raise ConfigError("assurance.checkpoint_sftp.known_host_key: the partner's host key"
                          " is required")
    known: object = config.known_host_key
    if config.known_host_key.startswith(("ssh-", "ecdsa-")):
        known = ([asyncssh.import_public_key(config.known_host_key)], [], [])
    written = []
    async with asyncssh.connect(
            config.host, config.port, username=config.username,
            password=config.password or None,
            client_keys=[config.client_key] if config.client_key else None,
            known_hosts=known, agent_path=None) as conn, conn.start_sftp_client() as sftp:
        for local in files_of(checkpoint):
            remote = f"{config.remote_dir.rstrip('/')}/{local.name}"
            await sftp.put(str(local), remote + ".part")
            if await sftp.exists(remote):  # signing.pub, sent with every checkpoint
                await sftp.remove(remote)
            await sftp.rename(remote + ".part", remote)
            written.append(remote)
    return written
