"""A control that is one SQL query listing its offenders (see ``model``).

The query runs once, materialised, and one statement over it returns the count, the money at
stake per currency, the unpriced offenders and the first ``evidence_limit`` offenders (by
object name, so two runs over the same data show the same evidence).
"""

from __future__ import annotations

import json

import msgspec

from billing_oss.server.assurance import repo
from billing_oss.server.assurance.model import Context, Offender, Outcome, bind
from billing_oss.server.store.pool import Connection


class SqlControl(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    family: str
    title: str
    sql: str                 # offenders: object, currency, at_stake_micros, detail
    checked_sql: str = ""    # optional, on $1 only: how many items the control looked at
    planner: tuple[str, ...] = ()  # SET LOCAL settings the query needs, each with its reason
    # A fold's lock the query is read after taking shared (store.compaction_lock.LOCK, the
    # journal days' fold lock): on Citus a fold commits node by node, and a read in between
    # sees half of it.
    lock_shared: str = ""

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        async with conn.transaction(readonly=True):
            for setting in self.planner:
                await repo.set_local(conn, setting)
            if self.lock_shared:
                await conn.execute(self.lock_shared)
            return await self._evaluate(conn, ctx)

    async def _evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        params = json.dumps(ctx.settings.params())
        row = await repo.offenders(conn, self.sql, ctx.as_of, params,
                                   ctx.settings.evidence_limit)
        checked = None
        if self.checked_sql:
            checked = await repo.count(conn, self.checked_sql, ctx.as_of)
        return Outcome(
            checked=checked, offending=row["n"], unpriced=row["unpriced"],
            at_stake_micros={k.strip(): int(v) for k, v in json.loads(row["stake"]).items()},
            evidence=msgspec.convert(json.loads(row["evidence"]), list[Offender]),
            query=bind(self.sql, ctx.as_of, ctx.settings))
