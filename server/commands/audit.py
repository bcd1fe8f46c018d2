"""`billing-oss audit verify|checkpoint|prove`: the audit log's hash chain, anchored outside
the database by signed checkpoints (``server.assurance.checkpoints``).

- ``verify [--checkpoint FILE]`` recomputes the chain; with a checkpoint, it also finds a
  deleted tail, rewritten or reordered rows against the head the checkpoint signed. Exit 0
  when intact, 1 when tampered (each problem listed) or the checkpoint is forged.
- ``checkpoint [--dir DIR]`` signs the current head and the Merkle root of the finalised
  invoices, credit notes and control results into ``assurance.checkpoint_dir``.
- ``prove --invoice ID | --credit-note ID [--checkpoint FILE]`` prints an inclusion proof
  (JSON) that ``server/assurance/verify_proof.py`` checks with no project code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import asyncssh
import msgspec

from billing_oss.core.errors import BillingError, NotFound
from billing_oss.server.assurance import checkpoints, export
from billing_oss.server.billing import documents_repo
from billing_oss.server.commands.options import add_config_options, load_config
from billing_oss.server.composition import database_pool
from billing_oss.server.store import audit


def register(verbs: Any) -> None:
    parser: argparse.ArgumentParser = verbs.add_parser("audit", help="check the audit log")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="recompute the hash chain; exit 1 if tampered")
    verify.add_argument("--checkpoint", metavar="FILE", type=Path,
                        help="also hold the chain against this signed checkpoint")
    verify.add_argument("--public-key", metavar="HEX",
                        help="the trusted signing key (default: signing.pub beside the file)")
    checkpoint = actions.add_parser("checkpoint", help="sign and export the chain head")
    checkpoint.add_argument("--dir", metavar="DIR", type=Path,
                            help="where to write it (default: assurance.checkpoint_dir)")
    prove = actions.add_parser("prove", help="print an inclusion proof of a document")
    prove.add_argument("--invoice", metavar="ID", help="the invoice: its id or its number")
    prove.add_argument("--credit-note", metavar="ID", help="or the credit note (id or number)")
    prove.add_argument("--checkpoint", metavar="FILE", type=Path,
                       help="default: the latest in assurance.checkpoint_dir")
    for p in (verify, checkpoint, prove):
        add_config_options(p)
    verify.add_argument("--json", action="store_true", help="JSON output for scripts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    handler = {"verify": _verify, "checkpoint": _checkpoint, "prove": _prove}[args.action]
    try:
        return asyncio.run(handler(args, config))
    except BillingError as exc:
        print(f"billing-oss audit {args.action}: {exc}", file=sys.stderr)
        return exc.exit_status


async def _verify(args: argparse.Namespace, config: Any) -> int:
    if args.checkpoint is None:
        async with database_pool(config) as pool:
            result = await audit.verify(pool)
        problems = [(p.seq, p.reason) for p in result.problems]
    else:
        try:
            signed = checkpoints.read(args.checkpoint, args.public_key)
        except ValueError as exc:
            print(f"checkpoint REJECTED: {exc}")
            return 1
        async with database_pool(config) as pool, pool.acquire() as conn:
            found = await checkpoints.verify(conn, signed)
            rows = await audit.row_count(conn)
        problems = [(p.seq, p.reason) for p in found]
        result = audit.VerifyResult(rows=rows, ok=not found,
                                    problems=[audit.Problem(s, r) for s, r in problems])
    if args.json:
        print(msgspec.json.encode(result).decode())
    elif result.ok:
        against = f", and against the checkpoint {args.checkpoint}" if args.checkpoint else ""
        print(f"audit log intact: {_count(result.rows, 'row')}, hash chain verified{against}")
    else:
        print(f"audit log TAMPERED: {_count(len(problems), 'problem')} in "
              f"{_count(result.rows, 'row')}")
        for seq, reason in problems:
            print(f"  row {seq}: {reason}")
    return 0 if result.ok else 1


async def _checkpoint(args: argparse.Namespace, config: Any) -> int:
    directory = args.dir or (Path(config.assurance.checkpoint_dir)
                             if config.assurance.checkpoint_dir else None)
    if directory is None:
        print("billing-oss audit checkpoint: set assurance.checkpoint_dir or give --dir",
              file=sys.stderr)
        return 2
    key = checkpoints.signing_key(Path(config.assurance.signing_key))
    async with database_pool(config) as pool, pool.acquire() as conn:
        path = await checkpoints.create(conn, directory, key)
        if config.assurance.checkpoint_webhook:
            await checkpoints.publish(conn, checkpoints.read(path))
    if (sftp := config.assurance.checkpoint_sftp) is not None:
        try:
            await export.upload_sftp(sftp, path)
        except (OSError, asyncssh.Error) as exc:
            print(f"billing-oss audit checkpoint: {path} written, but not uploaded to"
                  f" {sftp.host}: {exc}", file=sys.stderr)
            return 1
    signed = checkpoints.read(path)
    print(f"{path}: audit row {signed.seq}, {signed.leaves} documents, root {signed.merkle_root}")
    return 0


async def _prove(args: argparse.Namespace, config: Any) -> int:
    if (args.invoice is None) == (args.credit_note is None):
        print("billing-oss audit prove: give --invoice ID or --credit-note ID",
              file=sys.stderr)
        return 2
    path = args.checkpoint
    if path is None and config.assurance.checkpoint_dir:
        path = checkpoints.latest(Path(config.assurance.checkpoint_dir))
    if path is None:
        print("billing-oss audit prove: no checkpoint (give --checkpoint or set"
              " assurance.checkpoint_dir)", file=sys.stderr)
        return 2
    async with database_pool(config) as pool, pool.acquire() as conn:
        kind, table, id_column = ("invoice", "invoices", "invoice_id") \
            if args.invoice is not None else ("credit_note", "credit_notes", "credit_note_id")
        given = args.invoice if args.invoice is not None else args.credit_note
        row = await documents_repo.account_and_id(conn, table, id_column, given)
        if row is None:
            raise NotFound(f"no {kind.replace('_', ' ')} {given}")
        key = f"{kind}:{row['account_id']}/{row['id']}"
        try:
            proof = await checkpoints.prove(conn, path, key)
        except ValueError as exc:
            print(f"billing-oss audit prove: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(proof, indent=2, ensure_ascii=False))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
