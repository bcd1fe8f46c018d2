"""Signed checkpoints of the audit chain head, exported outside the database.

A checkpoint records the head of the audit log (its last row's ``pos`` and ``hash``), the
time, and the root of a Merkle tree over the finalised invoices, credit notes and control
results, signed with Ed25519. It is written to a directory the database administrator
cannot rewrite (``assurance.checkpoint_dir``), beside the tree's leaf hashes (for proofs)
and the public key (``signing.pub``).

Against any checkpoint, ``verify`` finds: a truncated log (the checkpoint's row is gone),
a rewritten or reordered past (the row at the checkpoint's position no longer has its hash,
even if every hash after it was recomputed), and a forged checkpoint (bad signature).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from billing_oss.core.errors import ConfigError, NotFound
from billing_oss.server.assurance import merkle, repo
from billing_oss.server.assurance.verify_proof import leaf_hash
from billing_oss.server.integrations import outbox
from billing_oss.server.integrations.events import AuditCheckpoint
from billing_oss.server.store import audit
from billing_oss.server.store.pool import Connection

PUBLIC_KEY_FILE = "signing.pub"


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    version: int = 1
    seq: int                # the head's position in the chain (audit_log.pos)
    hash: str
    at: str                 # RFC 3339 UTC
    merkle_root: str
    leaves: int
    public_key: str         # hex, raw Ed25519
    signature: str = ""     # hex, over the canonical JSON of every other field

    def body(self) -> bytes:
        fields = msgspec.to_builtins(self)
        fields.pop("signature")
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


class Problem(msgspec.Struct, frozen=True):
    seq: int
    reason: str


def signing_key(path: Path) -> Ed25519PrivateKey:
    """The key at ``path``, created (mode 0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{path}: not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return key


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


async def create(conn: Connection, directory: Path, key: Ed25519PrivateKey) -> Path:
    """Chain what is pending, then sign the head and the tree; write checkpoint, leaves and
    public key files."""
    await audit.chain_pending_on(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await audit.chained_head(conn)
        docs = await repo.leaves(conn)
    seq, digest = (head["seq"], head["hash"]) if head else (0, audit.GENESIS)
    return await asyncio.to_thread(_write, directory, key, seq, digest, docs)


def _write(directory: Path, key: Ed25519PrivateKey, seq: int, digest: str,
           docs: list[tuple[str, str]]) -> Path:
    hashes = [leaf_hash(json.loads(doc)) for _, doc in docs]
    tree = merkle.levels(hashes)
    now = dt.datetime.now(dt.UTC)
    unsigned = Checkpoint(
        seq=seq, hash=digest, at=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        merkle_root=tree[-1][0].hex(), leaves=len(hashes),
        public_key=_raw(key.public_key()).hex())
    signed = msgspec.structs.replace(unsigned, signature=key.sign(unsigned.body()).hex())
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"checkpoint-{signed.seq:012d}-{now:%Y%m%dT%H%M%S%fZ}"
    (directory / f"{stem}.leaves.json").write_text(json.dumps(
        [[k, h.hex()] for (k, _), h in zip(docs, hashes, strict=True)]))
    path = directory / f"{stem}.json"
    path.write_bytes(msgspec.json.encode(signed))
    (directory / PUBLIC_KEY_FILE).write_text(signed.public_key + "\n")
    return path


def read(path: Path, trusted_key: str | None = None) -> Checkpoint:
    """A checkpoint file, its signature checked against ``trusted_key`` (hex) if given,
    else against ``signing.pub`` beside it. Raises ``ValueError`` when forged."""
    try:
        checkpoint = msgspec.json.decode(path.read_bytes(), type=Checkpoint)
    except (OSError, msgspec.DecodeError) as exc:
        raise ValueError(f"{path}: not a readable checkpoint ({exc})") from None
    if trusted_key is None:
        pub = path.parent / PUBLIC_KEY_FILE
        trusted_key = pub.read_text().strip() if pub.exists() else checkpoint.public_key
    if checkpoint.public_key != trusted_key:
        raise ValueError(f"{path}: signed by another key than the trusted one")
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(trusted_key)).verify(
            bytes.fromhex(checkpoint.signature), checkpoint.body())
    except (InvalidSignature, ValueError):
        raise ValueError(f"{path}: the signature does not match its content") from None
    return checkpoint


async def publish(conn: Connection, checkpoint: Checkpoint) -> str:
    """Emit ``checkpoint`` as an ``audit.checkpoint`` event (webhook delivery from the
    outbox); returns the event id."""
    event = AuditCheckpoint(**msgspec.to_builtins(checkpoint))
    async with conn.transaction():
        return await outbox.emit(conn, event, stream="audit:checkpoints")


def latest(directory: Path) -> Path | None:
    found = sorted(p for p in directory.glob("checkpoint-*.json")
                   if not p.name.endswith(".leaves.json")) if directory.is_dir() else []
    return found[-1] if found else None


async def verify(conn: Connection, checkpoint: Checkpoint) -> list[Problem]:
    """The chain (pending rows chained first) recomputed, then held against the checkpoint's
    head."""
    await audit.chain_pending_on(conn)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        chain = await audit.verify_on(conn)
        row = await audit.chained_row(conn, checkpoint.seq)
        last = await audit.last_pos(conn)
    problems = [Problem(p.seq, p.reason) for p in chain.problems]
    if checkpoint.seq == 0:
        return problems
    if row is None:
        problems.append(Problem(checkpoint.seq, (
            f"row {checkpoint.seq}, the head at the checkpoint of {checkpoint.at}, is gone: the"
            f" log ends at row {last or 0}; its tail was deleted")))
    elif row["hash"] != checkpoint.hash:
        problems.append(Problem(checkpoint.seq, (
            f"row {checkpoint.seq} no longer has the hash signed at {checkpoint.at}: rows up"
            f" to it were rewritten or reordered")))
    return problems


def _with_leaves(path: Path) -> tuple[Checkpoint, list[list[str]]]:
    stem = path.name.removesuffix(".json")
    leaves: list[list[str]] = json.loads((path.parent / f"{stem}.leaves.json").read_text())
    return read(path), leaves


async def prove(conn: Connection, checkpoint_path: Path, key: str) -> dict[str, Any]:
    """An inclusion proof of document ``key`` (``invoice:A1/42``) in the checkpoint's tree,
    for ``verify_proof``. Raises ``NotFound`` when the document is not in it or changed."""
    checkpoint, listed = await asyncio.to_thread(_with_leaves, checkpoint_path)
    keys = [k for k, _ in listed]
    if key not in keys:
        raise NotFound(f"{key} is not in the checkpoint of {checkpoint.at}")
    document = await repo.leaf(conn, key)
    if document is None:
        raise NotFound(f"{key} no longer exists")
    index = keys.index(key)
    if leaf_hash(document).hex() != listed[index][1]:
        raise NotFound(f"{key} changed since the checkpoint of {checkpoint.at}")
    tree = merkle.levels([bytes.fromhex(h) for _, h in listed])
    if tree[-1][0].hex() != checkpoint.merkle_root:
        raise ValueError(f"{checkpoint_path}: its leaves file does not match its signed root")
    return {"leaf": document, "index": index, "size": len(keys),
            "path": merkle.path(tree, index), "root": checkpoint.merkle_root,
            "checkpoint": checkpoint_path.name, "checkpoint_at": checkpoint.at}
