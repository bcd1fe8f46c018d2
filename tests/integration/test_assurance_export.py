"""Checkpoints exported beyond the checkpoint directory: with
``assurance.checkpoint_webhook``, each signed checkpoint is an ``audit.checkpoint`` event
delivered from the outbox to a loopback webhook receiver, which can keep it and verify it
with the public key, and the audit log against it, without the database's help."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import msgspec

from billing_oss.server.assurance import checkpoints, schedule
from billing_oss.server.config import AssuranceConfig, WebhooksConfig
from billing_oss.server.integrations import webhooks
from billing_oss.server.integrations.delivery import WebhookDeliverer
from tests.conftest import wait_until
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
