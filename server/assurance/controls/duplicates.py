"""Cross-source duplicates: the same call seen by two switches and charged twice.

- ``duplicates.cross_source``: two voice records with the same calling and called numbers,
  starting within ``duplicate_tolerance_s`` of each other, from different sources, both
  with a live charge. The later record is the offender; at stake: its live charge.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

CROSS_SOURCE = SqlControl(
    name="duplicates.cross_source", version=2, family="duplicates",
    title="no call is charged twice from two sources",
    sql="""
WITH pairs AS (
    -- only number pairs that more than one source reported need their calls sorted
    SELECT calling, called FROM usage_records
    WHERE kind = 'voice' AND calling IS NOT NULL AND called IS NOT NULL AND ingested_at <= $1
    GROUP BY calling, called HAVING min(source) <> max(source)),
calls AS (
    SELECT u.account_id, u.usage_id, u.event_time, u.source, u.record_key, u.calling,
           u.called, lag(u.source) OVER w AS prev_source, lag(u.record_key) OVER w AS prev_key,
           lag(u.event_time) OVER w AS prev_time
    FROM usage_records u JOIN pairs p ON p.calling = u.calling AND p.called = u.called
    WHERE u.kind = 'voice' AND u.ingested_at <= $1
    WINDOW w AS (PARTITION BY u.calling, u.called ORDER BY u.event_time, u.usage_id))
SELECT format('usage:%s/%s', d.account_id, d.usage_id) AS object, c.currency,
       c.micros AS at_stake_micros,
       format('%s → %s at %s from %s (%s) is also %s from %s (%s)', d.calling, d.called,
              d.event_time, d.source, d.record_key, d.prev_time, d.prev_source, d.prev_key)
           AS detail
FROM calls d
JOIN LATERAL (SELECT trim(currency) AS currency, sum(amount_micros)::bigint AS micros
              FROM charges ch WHERE ch.account_id = d.account_id
              AND ch.event_time = d.event_time AND ch.usage_id = d.usage_id
              GROUP BY currency) c ON c.micros <> 0
WHERE d.prev_source IS NOT NULL AND d.prev_source <> d.source
  AND d.event_time - d.prev_time
      <= make_interval(secs => ($2::jsonb->>'duplicate_tolerance_s')::int)""",
)

CONTROLS = (CROSS_SOURCE,)
