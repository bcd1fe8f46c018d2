"""Settlement controls (carriers, TAP3/RAP).

- ``settlement.tap_totals``: each TAP file's audit control info (event count, total charge)
  equals the events stored for it. At stake: the gap, in micro-units of the TAP currency.
- ``settlement.returns_open``: events a partner returned (RAP) and nobody corrected or
  resubmitted within ``suspense_age_days``. At stake: their charge in local currency.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

TAP_TOTALS = SqlControl(
    name="settlement.tap_totals", version=1, family="settlement",
    title="TAP audit totals = Σ events",
    sql="""
SELECT 'settlement_file:' || f.file_id AS object, f.tap_currency AS currency,
       (abs(f.total_charge - coalesce(e.total, 0)) * 10 ^ (6 - f.decimal_places))::bigint
           AS at_stake_micros,
       format('%s (%s %s): audit totals %s events / %s, stored events %s / %s', f.name,
              f.direction, f.partner, f.event_count, f.total_charge, coalesce(e.n, 0),
              coalesce(e.total, 0)) AS detail
FROM settlement_files f
LEFT JOIN (SELECT file_id, count(*) AS n, sum(tap_charge) AS total FROM settlement_events
           GROUP BY file_id) e ON e.file_id = f.file_id
WHERE f.file_type = 'tap' AND f.created_at <= $1 AND $2::jsonb IS NOT NULL
  AND f.state NOT IN ('rejected', 'superseded')
  AND (f.event_count <> coalesce(e.n, 0) OR f.total_charge <> coalesce(e.total, 0))""",
)

RETURNS_OPEN = SqlControl(
    name="settlement.returns_open", version=1, family="settlement",
    title="events a partner returned are corrected and resent",
    sql="""
SELECT 'settlement_event:' || e.event_id AS object, p.local_currency::text AS currency,
       e.charge_micros AS at_stake_micros,
       format('event %s/%s of %s returned by %s (error %s) on %s, still open', e.source,
              e.record_key, f.name, e.partner, e.error_code, r.created_at) AS detail
FROM settlement_events e
JOIN settlement_files f ON f.file_id = e.file_id
JOIN partners p ON p.tadig = e.partner
LEFT JOIN settlement_files r ON r.file_id = e.return_file_id
WHERE e.state = 'returned' AND e.direction = 'out'
  AND coalesce(r.created_at, f.created_at)
      <= $1::timestamptz - make_interval(days => ($2::jsonb->>'suspense_age_days')::int)""",
)

CONTROLS = (TAP_TOTALS, RETURNS_OPEN)
