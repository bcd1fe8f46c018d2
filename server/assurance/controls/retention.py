"""Retention controls: old usage holds no clear number, archived months are whole.

- ``retention.pseudonymised``: no usage record older than the pseudonymisation period the
  server applies (``retention_policy``, from ``[retention]``) still holds a calling, called,
  imsi or msisdn in the clear, unless an open dispute of its account covers it (the numbers
  wait for the dispute to close). Unpriced: it is a privacy breach, not money.
- ``retention.archives``: every archived month's manifest is where the archive put it, with
  the sha256 recorded when it was written; each table's file has the manifest's sha256, and
  the manifest's row count equals the rows the database dropped. Unpriced.
"""

from __future__ import annotations

import asyncio

import msgspec

from billing_oss.server.assurance.model import Context, Offender, Outcome
from billing_oss.server.assurance.sql_control import SqlControl
from billing_oss.server.retention import archive
from billing_oss.server.retention.repo import IDENTIFIERS, PSEUDONYM_PREFIX, clear, disputed
from billing_oss.server.store.pool import Connection

_CLEAR_NAMES = ", ".join(
    f"CASE WHEN u.{c} IS NOT NULL AND u.{c} NOT LIKE '{PSEUDONYM_PREFIX}%' THEN '{c}' END"
    for c in IDENTIFIERS)
_OLD = ("FROM retention_policy p JOIN usage_records u ON p.pseudonymise_after_days > 0"
        " AND u.event_time < $1::timestamptz - make_interval(days => p.pseudonymise_after_days)")

PSEUDONYMISED = SqlControl(
    name="retention.pseudonymised", version=1, family="retention",
    title="no usage older than the privacy period holds a subscriber number in the clear",
    sql=f"""
SELECT format('usage:%s/%s', u.account_id, u.usage_id) AS object, NULL::text AS currency,
       NULL::bigint AS at_stake_micros,
       format('usage %s of %s at %s (record %s/%s) holds %s in the clear, older than %s days',
              u.usage_id, u.account_id, u.event_time, u.source, u.record_key,
              concat_ws(', ', {_CLEAR_NAMES}), p.pseudonymise_after_days) AS detail
{_OLD}
WHERE $2::jsonb IS NOT NULL AND ({clear('u')}) AND NOT {disputed('u')}""",
    checked_sql=f"SELECT count(*) {_OLD}",
)


class Archives(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "retention.archives"
    version: int = 1
    family: str = "retention"
    title: str = "archived months have their manifest, files and dropped row counts intact"
    sql: str = ("SELECT a.month, a.directory, a.manifest_sha256, t.table_name, t.file,"
                " t.rows, t.sha256, t.dropped_rows FROM retention_archives a"
                " JOIN retention_archive_tables t USING (archive_id)"
                " WHERE a.state = 'dropped' AND a.created_at <= $1 ORDER BY a.month")

    async def evaluate(self, conn: Connection, ctx: Context) -> Outcome:
        found = [a for a in await archive.list_archives(conn)
                 if a.state == "dropped" and a.created_at <= ctx.as_of]
        offenders = []
        for a in found:
            for p in await asyncio.to_thread(archive.check_files, a):
                offenders.append(Offender(object=f"archive:{a.month}", currency=None,
                                          at_stake_micros=None, detail=f"{p.file}: {p.reason}"))
        return Outcome(checked=len(found), offending=len(offenders), unpriced=len(offenders),
                       at_stake_micros={}, evidence=offenders[:ctx.settings.evidence_limit],
                       query=self.sql)


CONTROLS = (PSEUDONYMISED, Archives())
