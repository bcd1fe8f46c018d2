"""Conservation controls: nothing lost, nothing doubled between intake and charges.

- ``conservation.file_balance``: per finished file, ``in = charged + suspense + duplicates +
  filtered + pending`` (DESIGN.md §3 invariant 2), from the counts stored at ingest.
- ``conservation.file_totals``: per file and currency, the total the file charged at ingest
  equals the charges its usage records still carry (original charges, before any rerating).
  At stake: the difference, e.g. a charge deleted behind the application's back. A file
  with usage in an archived month is left to the archive's manifest (``retention.archives``).
- ``conservation.usage_charged``: every usage record has exactly one live charge (charges
  minus reversals), and every charge belongs to a stored usage record. Unpriced: the missing
  charge's amount is what ``file_totals`` reports.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

FILE_BALANCE = SqlControl(
    name="conservation.file_balance", version=1, family="conservation",
    title="per file: in = charged + suspense + duplicates + filtered + pending",
    sql="""
SELECT 'source_file:' || source_file_id AS object, NULL::text AS currency,
       NULL::bigint AS at_stake_micros,
       format('%s (%s): in %s but charged %s + suspense %s + duplicates %s + filtered %s'
              ' + pending %s = %s', name, source, count_in, count_charged, count_suspense,
              count_duplicates, count_filtered, count_pending,
              count_charged + count_suspense + count_duplicates + count_filtered
              + count_pending) AS detail
FROM source_files
WHERE state = 'done' AND received_at <= $1 AND $2::jsonb IS NOT NULL
  AND count_in <> count_charged + count_suspense + count_duplicates + count_filtered
                  + count_pending""",
    checked_sql="SELECT count(*) FROM source_files WHERE state = 'done' AND received_at <= $1",
)

FILE_TOTALS = SqlControl(
    name="conservation.file_totals", version=2, family="conservation",
    title="per file and currency: the total charged at ingest is still in the charges",
    sql="""
WITH stored AS (
    SELECT f.source_file_id, f.name, t.key AS currency, t.value::bigint AS micros
    FROM source_files f, jsonb_each_text(f.totals) t
    WHERE f.state = 'done' AND f.received_at <= $1
      AND f.source_file_id NOT IN (SELECT source_file_id FROM retention_archived_files)),
found AS (
    SELECT u.source_file_id, trim(c.currency) AS currency, sum(c.amount_micros)::bigint AS micros
    FROM usage_records u JOIN charges c ON c.account_id = u.account_id
         AND c.event_time = u.event_time AND c.usage_id = u.usage_id
    WHERE u.source_file_id IS NOT NULL AND c.kind = 'charge' AND c.rerate_job_id IS NULL
    GROUP BY 1, 2)
SELECT 'source_file:' || coalesce(s.source_file_id, f.source_file_id) AS object,
       coalesce(s.currency, f.currency) AS currency,
       abs(coalesce(s.micros, 0) - coalesce(f.micros, 0)) AS at_stake_micros,
       format('%s charged %s micro-units of %s at ingest, its usage now carries %s',
              coalesce(s.name, 'file ' || f.source_file_id), coalesce(s.micros, 0),
              coalesce(s.currency, f.currency), coalesce(f.micros, 0)) AS detail
FROM stored s FULL JOIN found f
     ON f.source_file_id = s.source_file_id AND f.currency = s.currency
WHERE coalesce(s.micros, 0) <> coalesce(f.micros, 0)
  AND (s.source_file_id IS NOT NULL
       OR f.source_file_id IN (SELECT source_file_id FROM source_files
                               WHERE state = 'done' AND received_at <= $1
                               EXCEPT SELECT source_file_id FROM retention_archived_files))
  AND $2::jsonb IS NOT NULL""",
    # The planner takes the three join keys as independent and expects one row out of the
    # join, so it would sort all of them to group 100 files; hashing them is 20 % faster.
    planner=("enable_sort = off",),
)

USAGE_CHARGED = SqlControl(
    name="conservation.usage_charged", version=2, family="conservation",
    title="every usage record has exactly one live charge; every charge has its usage",
    # First per account, cheaply: as many live charges (charges − reversals) as usage
    # records, and the same sum of usage ids on both sides. Only accounts where either
    # differs are then looked at usage by usage.
    sql="""
WITH usage_sums AS (
    SELECT account_id, count(*) AS n, sum(usage_id) AS ids FROM usage_records
    WHERE ingested_at <= $1 GROUP BY account_id),
charge_sums AS (
    SELECT account_id,
           sum(CASE WHEN kind = 'charge' THEN 1 ELSE -1 END) AS n,
           sum(CASE WHEN kind = 'charge' THEN usage_id ELSE -usage_id END) AS ids
    FROM charges WHERE usage_id IS NOT NULL AND created_at <= $1 GROUP BY account_id),
suspect AS (
    SELECT coalesce(u.account_id, c.account_id) AS account_id
    FROM usage_sums u FULL JOIN charge_sums c ON c.account_id = u.account_id
    WHERE u.n IS DISTINCT FROM c.n OR u.ids IS DISTINCT FROM c.ids),
live AS (
    SELECT account_id, event_time, usage_id,
           count(*) FILTER (WHERE kind = 'charge') - count(*) FILTER (WHERE kind = 'reversal')
               AS n,
           min(trim(currency)) AS currency
    FROM charges WHERE usage_id IS NOT NULL AND created_at <= $1
      AND account_id IN (SELECT account_id FROM suspect)
    GROUP BY 1, 2, 3)
SELECT format('usage:%s/%s', u.account_id, u.usage_id) AS object, l.currency,
       NULL::bigint AS at_stake_micros,
       format('usage %s of %s at %s (record %s/%s) has %s live charges', u.usage_id,
              u.account_id, u.event_time, u.source, u.record_key, coalesce(l.n, 0)) AS detail
FROM usage_records u LEFT JOIN live l ON l.account_id = u.account_id
     AND l.event_time = u.event_time AND l.usage_id = u.usage_id
WHERE u.account_id IN (SELECT account_id FROM suspect)
  AND coalesce(l.n, 0) <> 1 AND u.ingested_at <= $1 AND $2::jsonb IS NOT NULL
UNION ALL
SELECT format('charge:%s/%s', c.account_id, c.charge_id), trim(c.currency), c.amount_micros,
       format('charge %s of %s at %s points to usage %s, which is not stored', c.charge_id,
              c.account_id, c.event_time, c.usage_id)
FROM suspect s
-- LATERAL: the suspect accounts first (the planner would anti-join every charge otherwise)
CROSS JOIN LATERAL (
    SELECT * FROM charges c
    WHERE c.account_id = s.account_id AND c.usage_id IS NOT NULL AND c.created_at <= $1
      AND NOT EXISTS (SELECT 1 FROM usage_records u WHERE u.account_id = c.account_id
                      AND u.event_time = c.event_time AND u.usage_id = c.usage_id)) c""",
)


CONTROLS = (FILE_BALANCE, FILE_TOTALS, USAGE_CHARGED)
