"""Settlement controls (carriers, TAP3/RAP).

- ``settlement.tap_totals``: each TAP file's audit control info (event count, total charge)
  equals the events stored for it. At stake: the gap, in micro-units of the TAP currency.
- ``settlement.returns_open``: events a partner returned (RAP) and nobody corrected or
  resubmitted within ``suspense_age_days``. At stake: their charge in local currency.
- ``settlement.netting``: per partner, calendar month (UTC) of the files and TAP currency,
  the net position the settlement report states from the files' audit totals (sent −
  returned − (received − returned by us)) equals the same netting over the events: the
  events of each TAP file, and the events each RAP file returned. A month holding a TAP file
  whose totals disagree with its events is left to ``settlement.tap_totals``. At stake: the
  gap, in micro-units of the TAP currency.
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

NETTING = SqlControl(
    name="settlement.netting", version=1, family="settlement",
    title="per partner and month: the report's net position = netting of the events",
    sql="""
WITH files AS (
    SELECT f.file_id, f.partner, p.tap_currency AS currency, f.name, f.file_type,
           to_char(f.created_at AT TIME ZONE 'UTC', 'YYYY-MM') AS period,
           CASE WHEN f.direction = 'out' AND f.file_type IN ('tap', 'notification')
                     AND f.state <> 'superseded' THEN 1
                WHEN f.direction = 'in' AND f.file_type = 'rap' AND f.state <> 'rejected' THEN -1
                WHEN f.direction = 'in' AND f.file_type = 'tap' AND f.state = 'accepted' THEN -1
                WHEN f.direction = 'out' AND f.file_type = 'rap' THEN 1 END AS sign,
           (f.total_charge * 10 ^ (6 - f.decimal_places))::bigint AS stated,
           f.event_count, f.total_charge, f.decimal_places
    FROM settlement_files f JOIN partners p ON p.tadig = f.partner
    WHERE f.created_at <= $1 AND $2::jsonb IS NOT NULL),
counted AS (
    SELECT f.*, coalesce(CASE WHEN f.file_type = 'rap' THEN r.micros ELSE t.micros END, 0)
               AS events_micros,
           f.file_type = 'tap' AND (f.event_count <> coalesce(t.n, 0)
                                    OR f.total_charge <> coalesce(t.total, 0)) AS tap_off
    FROM files f
    LEFT JOIN LATERAL (
        SELECT count(*) AS n, sum(e.tap_charge) AS total,
               sum(e.tap_charge * 10 ^ (6 - f.decimal_places))::bigint AS micros
        FROM settlement_events e WHERE e.file_id = f.file_id) t ON f.file_type <> 'rap'
    LEFT JOIN LATERAL (
        SELECT sum(e.tap_charge * 10 ^ (6 - s.decimal_places))::bigint AS micros
        FROM settlement_events e JOIN settlement_files s ON s.file_id = e.file_id
        WHERE e.return_file_id = f.file_id) r ON f.file_type = 'rap'
    WHERE f.sign IS NOT NULL),
nets AS (
    SELECT partner, period, currency, sum(sign * stated)::bigint AS stated,
           sum(sign * events_micros)::bigint AS netted, bool_or(tap_off) AS tap_off,
           string_agg(CASE WHEN stated <> events_micros THEN name END, ', ' ORDER BY name)
               AS files
    FROM counted GROUP BY 1, 2, 3)
SELECT format('partner:%s/%s', partner, period) AS object, currency,
       abs(stated - netted) AS at_stake_micros,
       format('%s %s: report net position %s, events net %s (%s micro-units); files whose'
              ' events disagree: %s', partner, period, stated, netted, currency, files)
           AS detail
FROM nets WHERE stated <> netted AND NOT tap_off""",
    checked_sql="SELECT count(DISTINCT (partner, date_trunc('month', created_at AT TIME ZONE"
                " 'UTC'))) FROM settlement_files WHERE created_at <= $1",
)

CONTROLS = (TAP_TOTALS, RETURNS_OPEN, NETTING)
