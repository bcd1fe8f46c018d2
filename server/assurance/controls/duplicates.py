"""Cross-source duplicates: the same call seen by two switches and charged twice.

- ``duplicates.cross_source``: two voice records with the same calling and called numbers,
  starting within ``duplicate_tolerance_s`` of each other, from different sources, both
  with a live charge. The later record is the offender; at stake: its live charge.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

# Each step is one query Citus can plan over usage and charges distributed by account: the
# candidate calls (from any account) are gathered first, sorted per number pair where they
# meet, and only the duplicates' charges are then summed, by account.
CROSS_SOURCE = SqlControl(
    name="duplicates.cross_source", version=3, family="duplicates",
    title="no call is charged twice from two sources",
    sql="""
WITH pairs AS MATERIALIZED (
    -- only number pairs that more than one source reported need their calls sorted
    SELECT calling, called FROM usage_records
    WHERE kind = 'voice' AND calling IS NOT NULL AND called IS NOT NULL AND ingested_at <= $1
    GROUP BY calling, called HAVING min(source) <> max(source)),
candidates AS MATERIALIZED (
    SELECT u.account_id, u.usage_id, u.event_time, u.source, u.record_key, u.calling, u.called
    FROM usage_records u JOIN pairs p ON p.calling = u.calling AND p.called = u.called
    WHERE u.kind = 'voice' AND u.ingested_at <= $1),
calls AS MATERIALIZED (
    SELECT *, lag(source) OVER w AS prev_source, lag(record_key) OVER w AS prev_key,
           lag(event_time) OVER w AS prev_time
    FROM candidates
    WINDOW w AS (PARTITION BY calling, called ORDER BY event_time, usage_id)),
dups AS MATERIALIZED (
    SELECT * FROM calls
    WHERE prev_source IS NOT NULL AND prev_source <> source
      AND event_time - prev_time
          <= make_interval(secs => ($2::jsonb->>'duplicate_tolerance_s')::int)),
charged AS MATERIALIZED (
    SELECT ch.account_id, ch.event_time, ch.usage_id, trim(ch.currency) AS currency,
           sum(ch.amount_micros)::bigint AS micros
    FROM charges ch JOIN dups d ON ch.account_id = d.account_id
         AND ch.event_time = d.event_time AND ch.usage_id = d.usage_id
    GROUP BY ch.account_id, ch.event_time, ch.usage_id, trim(ch.currency))
SELECT format('usage:%s/%s', d.account_id, d.usage_id) AS object, c.currency,
       c.micros AS at_stake_micros,
       format('%s → %s at %s from %s (%s) is also %s from %s (%s)', d.calling, d.called,
              d.event_time, d.source, d.record_key, d.prev_time, d.prev_source, d.prev_key)
           AS detail
FROM dups d JOIN charged c ON c.account_id = d.account_id AND c.event_time = d.event_time
     AND c.usage_id = d.usage_id
WHERE c.micros <> 0""",
)

CONTROLS = (CROSS_SOURCE,)
