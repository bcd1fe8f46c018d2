"""The audit chain: every row still hashes to its stored hash and links to the one before,
the head matches the last row, and the last signed checkpoint's head is still in the chain
(so a deleted tail with a rewritten head is caught too).

- ``audit.chain``: offenders are the rows (``audit:<seq>``) where it breaks. Unpriced.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from billing_oss.server.assurance import checkpoints
from billing_oss.server.assurance.model import Context, Offender, Outcome
from billing_oss.server.store.pool import Connection


class AuditChain(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "audit.chain"
    version: int = 1
    family: str = "audit"
    title: str = "the audit log is unbroken up to and beyond its last signed checkpoint"
    sql: str = ("SELECT pos, seq, at, actor, action, entity, before, after, prev_hash, hash"
                " FROM audit_log ORDER BY pos")

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        found = None
        if ctx.checkpoint_dir:
            found = checkpoints.latest(Path(ctx.checkpoint_dir))
        problems: list[checkpoints.Problem] = []
        if found is not None:
            try:
                problems = await checkpoints.verify(conn, checkpoints.read(found))
            except ValueError as exc:
                problems = [checkpoints.Problem(0, str(exc))]
        else:
            problems = await checkpoints.verify(conn, checkpoints.Checkpoint(
                seq=0, hash="", at="", merkle_root="", leaves=0, public_key=""))
        rows = await conn.fetchval("SELECT count(*) FROM audit_log")
        offenders = [Offender(object=f"audit:{p.seq}", currency=None, at_stake_micros=None,
                              detail=p.reason) for p in problems]
        return Outcome(checked=rows, offending=len(offenders), unpriced=len(offenders),
                       at_stake_micros={}, evidence=offenders[:ctx.settings.evidence_limit],
                       query=self.sql)


CONTROLS = (AuditChain(),)
