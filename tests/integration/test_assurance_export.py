"""Checkpoints exported beyond the checkpoint directory: with
``assurance.checkpoint_webhook``, each signed checkpoint is an ``audit.checkpoint`` event
delivered from the outbox to a loopback webhook receiver; with
``[assurance.checkpoint_sftp]``, it is uploaded to an SFTP partner (an in-process asyncssh
server), its host key checked. Either copy verifies with the public key, and the audit log
verifies against it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import asyncssh
import msgspec
import pytest

from billing_oss.core.errors import ConfigError
from billing_oss.server.assurance import checkpoints, export, schedule
from billing_oss.server.config import AssuranceConfig, CheckpointSftp, WebhooksConfig
from billing_oss.server.integrations import webhooks
from billing_oss.server.integrations.delivery import WebhookDeliverer
from tests.conftest import free_port, wait_until
from tests.webhook_receiver import Receiver, receiving

SETTINGS = WebhooksConfig(allow_http=True, allow_private=True, retry_schedule_s=[0.05, 0.1],
                          timeout_s=5.0, rescan_s=0.5)
FIELDS = tuple(checkpoints.Checkpoint.__struct_fields__)


async def test_each_checkpoint_reaches_a_webhook_signed_and_verifiable(
        pool: asyncpg.Pool, tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    config = AssuranceConfig(checkpoint_dir=str(directory), signing_key=str(tmp_path / "key"),
                             checkpoint_webhook=True)
    async with receiving() as receiver:
        new = await webhooks.create(pool, SETTINGS, receiver.url + "/anchor",
                                    ["audit.checkpoint"])
        receiver.secrets["/anchor"] = [new.secret]
        await schedule.run_once(pool, config)  # the controls, then the checkpoint
        await schedule.run_once(pool, msgspec.structs.replace(config, checkpoint_webhook=False))
        deliverer, stop = WebhookDeliverer(pool, SETTINGS), asyncio.Event()
        task = asyncio.create_task(deliverer.run(stop))
        try:
            assert await wait_until(lambda: _arrived(receiver), 30)
            await asyncio.sleep(1.0)  # time for a second event, were one wrongly emitted
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    got = receiver.on("/anchor")
    assert len(got) == 1 and got[0].verified
    assert got[0].event["type"] == "audit.checkpoint"
    data = got[0].event["data"]
    written = sorted(p for p in directory.glob("checkpoint-*.json")
                     if not p.name.endswith(".leaves.json"))
    assert len(written) == 2
    # What the receiver keeps is the first checkpoint file, signature included.
    kept = tmp_path / "kept" / "checkpoint.json"
    kept.parent.mkdir()
    kept.write_text(json.dumps({k: data[k] for k in FIELDS}))
    public_key = (directory / checkpoints.PUBLIC_KEY_FILE).read_text().strip()
    received = checkpoints.read(kept, trusted_key=public_key)
    assert received == checkpoints.read(written[0])
    async with pool.acquire() as conn:
        assert await checkpoints.verify(conn, received) == []
    # A copy altered on the way no longer verifies.
    kept.write_text(json.dumps({**{k: data[k] for k in FIELDS}, "seq": data["seq"] - 1}))
    try:
        checkpoints.read(kept, trusted_key=public_key)
    except ValueError as exc:
        assert "signature does not match" in str(exc)
    else:
        raise AssertionError("an altered checkpoint was accepted")


async def _arrived(receiver: Receiver) -> bool:
    return bool(receiver.on("/anchor"))


class _Partner(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == "anchor" and password == "s3cret"


async def test_each_checkpoint_is_uploaded_to_an_sftp_partner(pool: asyncpg.Pool,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "partner"
    (root / "checkpoints").mkdir(parents=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    port = free_port()
    server = await asyncssh.create_server(
        _Partner, "127.0.0.1", port, server_host_keys=[host_key],
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()))
    try:
        sftp = CheckpointSftp(host="127.0.0.1", port=port, username="anchor",
                              password="s3cret", remote_dir="/checkpoints",
                              known_host_key=host_key.export_public_key().decode().strip())
        directory = tmp_path / "local"
        config = AssuranceConfig(checkpoint_dir=str(directory),
                                 signing_key=str(tmp_path / "key"), checkpoint_sftp=sftp)
        await schedule.run_once(pool, config)
        await schedule.run_once(pool, config)
        # Another server answering the address, with another host key, gets nothing.
        impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        with pytest.raises(asyncssh.HostKeyNotVerifiable):
            await export.upload_sftp(msgspec.structs.replace(
                sftp, known_host_key=impostor.strip()), directory / "none.json")
        with pytest.raises(ConfigError, match="host key"):
            await export.upload_sftp(msgspec.structs.replace(sftp, known_host_key=""),
                                     directory / "none.json")
    finally:
        server.close()
        await server.wait_closed()
    local = sorted(p.name for p in directory.iterdir())
    remote = sorted(p.name for p in (root / "checkpoints").iterdir())
    assert remote == local and len(remote) == 5  # 2 checkpoints, their leaves, signing.pub
    for name in remote:
        assert (root / "checkpoints" / name).read_bytes() == (directory / name).read_bytes()
    newest = checkpoints.latest(root / "checkpoints")
    assert newest is not None
    kept = checkpoints.read(newest)  # against the signing.pub uploaded beside it
    async with pool.acquire() as conn:
        assert await checkpoints.verify(conn, kept) == []
