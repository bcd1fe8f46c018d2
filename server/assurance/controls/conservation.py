"""Conservation controls: nothing lost, nothing doubled between intake and charges.

- ``conservation.file_balance``: per finished file, ``in = charged + suspense + duplicates +
  filtered + pending`` (DESIGN.md §3 invariant 2), from the counts stored at ingest.
- ``conservation.file_totals``: per file and currency, the total the file charged at ingest
  equals its original charges (before any rerating), summed by the file each charge carries
  (``charges.source_file_id``, written in the same COPY as the charge and its usage record).
  At stake: the difference, e.g. a charge deleted or its amount changed behind the
  application's back. A file with usage in an archived month is left to the archive's
  manifest (``retention.archives``).
  Trusting the charge's own file leaves one thing unseen here: a charge carried to another
  file (its ``source_file_id`` changed) shows as one file short and one over, unless it is
  offset — two charges of one amount swapped between files, or a move paired with a change of
  amount — and then the files still add up while the charges are no longer those of their
  records. ``usage_charged`` covers it: it compares each original charge's file with its
  usage record's.
- ``conservation.usage_charged``: every usage record has exactly one live charge (charges
  minus reversals), its original charge carries the record's file, and every charge belongs
  to a stored usage record. Unpriced for a usage record (the missing charge's amount is what
  ``file_totals`` reports); a charge without its usage, or of another file, at its amount.
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
    name="conservation.file_totals", version=3, family="conservation",
    title="per file and currency: the total charged at ingest is still in the charges",
    # One pass over the charges: an original charge carries its file (written with it).
    sql="""
WITH stored AS (
    SELECT f.source_file_id, f.name, t.key AS currency, t.value::bigint AS micros
    FROM source_files f, jsonb_each_text(f.totals) t
    WHERE f.state = 'done' AND f.received_at <= $1
      AND f.source_file_id NOT IN (SELECT source_file_id FROM retention_archived_files)),
found AS (
    SELECT source_file_id, trim(currency) AS currency, sum(amount_micros)::bigint AS micros
    FROM charges
    WHERE source_file_id IS NOT NULL AND kind = 'charge' AND rerate_job_id IS NULL
    GROUP BY 1, 2)
SELECT 'source_file:' || coalesce(s.source_file_id, f.source_file_id) AS object,
       coalesce(s.currency, f.currency) AS currency,
       abs(coalesce(s.micros, 0) - coalesce(f.micros, 0)) AS at_stake_micros,
       format('%s charged %s micro-units of %s at ingest, its charges now carry %s',
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
)

USAGE_CHARGED = SqlControl(
    name="conservation.usage_charged", version=3, family="conservation",
    title="every usage record has exactly one live charge, of its file; every charge its usage",
    # First over whole tables, one plain scan each: as many live charges (charges −
    # reversals) as usage records, the same sum of a hash of their keys (account, event
    # time, usage id) on both sides, and the same sum of a hash of usage id and file between
    # usage and original charges. Only when these differ are the accounts summed one by one
    # the same way, and only the accounts where the sums differ looked at usage by usage.
    sql="""
WITH usage_total AS MATERIALIZED (
    SELECT count(*) AS n,
           coalesce(sum(hash_record_extended((account_id, event_time, usage_id), 0)), 0)
               AS keys,
           coalesce(sum(hashint8extended(usage_id, coalesce(source_file_id, 0))), 0) AS files
    FROM usage_records WHERE ingested_at <= $1),
charge_total AS MATERIALIZED (
    SELECT coalesce(sum(CASE WHEN kind = 'charge' THEN 1 ELSE -1 END), 0) AS n,
           coalesce(sum(CASE WHEN kind = 'charge' THEN 1 ELSE -1 END
                        * hash_record_extended((account_id, event_time, usage_id), 0)), 0)
               AS keys,
           coalesce(sum(hashint8extended(usage_id, coalesce(source_file_id, 0)))
                        FILTER (WHERE kind = 'charge' AND rerate_job_id IS NULL), 0) AS files
    FROM charges WHERE usage_id IS NOT NULL AND created_at <= $1),
unbalanced AS (
    SELECT (u.n, u.keys, u.files) IS DISTINCT FROM (c.n, c.keys, c.files) AS yes
    FROM usage_total u, charge_total c),
usage_sums AS (
    SELECT account_id, count(*) AS n,
           sum(hash_record_extended((account_id, event_time, usage_id), 0)) AS keys,
           sum(hashint8extended(usage_id, coalesce(source_file_id, 0))) AS files
    FROM usage_records WHERE ingested_at <= $1 AND (SELECT yes FROM unbalanced)
    GROUP BY account_id),
charge_sums AS (
    SELECT account_id,
           sum(CASE WHEN kind = 'charge' THEN 1 ELSE -1 END) AS n,
           sum(CASE WHEN kind = 'charge' THEN 1 ELSE -1 END
               * hash_record_extended((account_id, event_time, usage_id), 0)) AS keys,
           sum(hashint8extended(usage_id, coalesce(source_file_id, 0)))
               FILTER (WHERE kind = 'charge' AND rerate_job_id IS NULL) AS files
    FROM charges WHERE usage_id IS NOT NULL AND created_at <= $1 AND (SELECT yes FROM unbalanced)
    GROUP BY account_id),
suspect AS (
    SELECT coalesce(u.account_id, c.account_id) AS account_id
    FROM usage_sums u FULL JOIN charge_sums c ON c.account_id = u.account_id
    WHERE (u.n, u.keys, u.files) IS DISTINCT FROM (c.n, c.keys, c.files)),
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
       CASE WHEN u.usage_id IS NULL
            THEN format('charge %s of %s at %s points to usage %s, which is not stored',
                        c.charge_id, c.account_id, c.event_time, c.usage_id)
            ELSE format('charge %s of %s at %s carries file %s, its usage %s file %s',
                        c.charge_id, c.account_id, c.event_time,
                        coalesce(c.source_file_id::text, 'none'), c.usage_id,
                        coalesce(u.source_file_id::text, 'none')) END
FROM suspect s
-- LATERAL: the suspect accounts first (the planner would anti-join every charge otherwise)
CROSS JOIN LATERAL (
    SELECT * FROM charges c
    WHERE c.account_id = s.account_id AND c.usage_id IS NOT NULL AND c.created_at <= $1) c
LEFT JOIN usage_records u ON u.account_id = c.account_id AND u.event_time = c.event_time
     AND u.usage_id = c.usage_id
WHERE u.usage_id IS NULL
   OR (c.kind = 'charge' AND c.rerate_job_id IS NULL
       AND c.source_file_id IS DISTINCT FROM u.source_file_id)""",
)


CONTROLS = (FILE_BALANCE, FILE_TOTALS, USAGE_CHARGED)
