"""Collection controls: did every file and message the network sent arrive, once?

- ``collection.sequence_gaps``: per source and partner, sequence numbers missing between the
  files received (a file lost on the way). Unpriced: what a missing file held is unknown.
- ``collection.sequence_repeats``: a sequence number taken by more than one file (a file
  sent again under another name). At stake: what the later files charged.
- ``collection.silent_sources``: a source that has sent nothing (file or message) for longer
  than ``silent_factor`` times its usual interval (the median of its last 20 gaps), and
  at least ``silent_min_s``.
- ``collection.late_files``: a file that arrived after the source (and partner) had already
  delivered records more than ``late_after_h`` hours newer than its own newest record: the
  file for an earlier period came late, and its usage may have missed its bill. At stake:
  what the late file charged.
- ``collection.record_counts``: a finished file whose header declared a record count
  (32.297 CDR count, TAP3 CallEventDetailsCount) delivered another number of records
  (records in, rejected ones included). Unpriced: what the missing records held is unknown.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl

SEQUENCE_GAPS = SqlControl(
    name="collection.sequence_gaps", version=1, family="collection",
    title="file sequence numbers run without gaps per source and partner",
    sql="""
SELECT format('source:%s%s/seq:%s', source, coalesce('/' || partner, ''),
              CASE WHEN sequence_no - prev_seq = 2 THEN (prev_seq + 1)::text
                   ELSE (prev_seq + 1) || '-' || (sequence_no - 1) END) AS object,
       NULL::text AS currency, NULL::bigint AS at_stake_micros,
       format('%s file(s) missing between %s (seq %s) and %s (seq %s)',
              sequence_no - prev_seq - 1, prev_name, prev_seq, name, sequence_no) AS detail
FROM (SELECT source, partner, sequence_no, name,
             lag(sequence_no) OVER w AS prev_seq, lag(name) OVER w AS prev_name
      FROM (SELECT DISTINCT ON (source, partner, sequence_no) source, partner, sequence_no, name
            FROM source_files WHERE sequence_no IS NOT NULL AND received_at <= $1
            ORDER BY source, partner, sequence_no, source_file_id) f
      WINDOW w AS (PARTITION BY source, partner ORDER BY sequence_no)) s
WHERE sequence_no > prev_seq + 1""",
    checked_sql="SELECT count(*) FROM source_files WHERE sequence_no IS NOT NULL"
                " AND received_at <= $1",
)

# The repeats first (source_files, a coordinator table on Citus), then what their usage
# charged: a distributed query given the repeats' ids, not a lateral join from the local table
# into the distributed ones, which Citus cannot plan.
SEQUENCE_REPEATS = SqlControl(
    name="collection.sequence_repeats", version=2, family="collection",
    title="no sequence number is taken by two files",
    sql="""
WITH repeats AS MATERIALIZED (
    SELECT source_file_id, source, partner, sequence_no, name, first_name, first_id
    FROM (SELECT source_file_id, source, partner, sequence_no, name,
                 first_value(name) OVER w AS first_name,
                 first_value(source_file_id) OVER w AS first_id, row_number() OVER w AS nth
          FROM source_files
          WHERE sequence_no IS NOT NULL AND received_at <= $1 AND state <> 'error'
          WINDOW w AS (PARTITION BY source, partner, sequence_no ORDER BY source_file_id)) f
    WHERE nth > 1),
charged AS MATERIALIZED (
    SELECT u.source_file_id, ch.currency::text AS currency,
           sum(ch.amount_micros)::bigint AS micros
    FROM usage_records u JOIN charges ch ON ch.account_id = u.account_id
         AND ch.event_time = u.event_time AND ch.usage_id = u.usage_id
    WHERE u.source_file_id IN (SELECT source_file_id FROM repeats)
    GROUP BY u.source_file_id, ch.currency)
SELECT 'source_file:' || f.source_file_id AS object, c.currency,
       coalesce(c.micros, 0) AS at_stake_micros,
       format('%s repeats sequence %s of %s%s, first taken by %s (source_file:%s)',
              f.name, f.sequence_no, f.source, coalesce('/' || f.partner, ''),
              f.first_name, f.first_id) AS detail
FROM repeats f LEFT JOIN charged c ON c.source_file_id = f.source_file_id""",
)

SILENT_SOURCES = SqlControl(
    name="collection.silent_sources", version=1, family="collection",
    title="every source sends within its usual interval",
    sql="""
WITH arrivals AS (
    SELECT source, received_at AS at FROM source_files WHERE received_at <= $1
    UNION ALL
    SELECT source, committed_at FROM source_offsets WHERE committed_at <= $1),
recent AS (
    SELECT source, at, at - lag(at) OVER (PARTITION BY source ORDER BY at) AS gap,
           row_number() OVER (PARTITION BY source ORDER BY at DESC) AS back
    FROM arrivals),
usual AS (
    SELECT source, max(at) AS last_at, count(gap) AS gaps,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS median_gap
    FROM recent WHERE back <= 21 GROUP BY source)
SELECT 'source:' || source AS object, NULL::text AS currency, NULL::bigint AS at_stake_micros,
       format('nothing since %s (%s); it usually sends every %s',
              last_at, date_trunc('second', $1 - last_at), date_trunc('second', median_gap))
           AS detail
FROM usual
WHERE gaps >= 3 AND median_gap > interval '0'
  AND $1 - last_at > greatest(median_gap * ($2::jsonb->>'silent_factor')::int,
                             make_interval(secs => ($2::jsonb->>'silent_min_s')::int))""",
)

LATE_FILES = SqlControl(
    name="collection.late_files", version=1, family="collection",
    title="no file arrives after newer usage of its source and partner",
    sql="""
WITH files AS (
    SELECT f.source_file_id, f.source, f.partner, f.name, f.received_at, f.totals, u.newest
    FROM source_files f
    JOIN (SELECT source_file_id, max(event_time) AS newest FROM usage_records
          GROUP BY source_file_id) u ON u.source_file_id = f.source_file_id
    WHERE f.received_at <= $1 AND f.state <> 'error'),
ordered AS (
    SELECT *, max(newest) OVER (PARTITION BY source, partner ORDER BY received_at,
                                source_file_id ROWS BETWEEN UNBOUNDED PRECEDING
                                AND 1 PRECEDING) AS ahead
    FROM files)
SELECT 'source_file:' || o.source_file_id AS object, t.key AS currency,
       t.value::bigint AS at_stake_micros,
       format('%s of %s%s received %s: its newest record (%s) is %s behind what the source had'
              ' already delivered (%s)', o.name, o.source, coalesce('/' || o.partner, ''),
              date_trunc('second', o.received_at), o.newest, o.ahead - o.newest, o.ahead)
           AS detail
FROM ordered o
LEFT JOIN LATERAL jsonb_each_text(o.totals) t ON true
WHERE o.ahead - o.newest > make_interval(hours => ($2::jsonb->>'late_after_h')::int)""",
    checked_sql="SELECT count(*) FROM source_files WHERE received_at <= $1",
)

RECORD_COUNTS = SqlControl(
    name="collection.record_counts", version=1, family="collection",
    title="every file delivers the record count its header declares",
    sql="""
SELECT 'source_file:' || source_file_id AS object, NULL::text AS currency,
       NULL::bigint AS at_stake_micros,
       format('%s of %s%s (%s): header declares %s records, %s came in (%s %s)', name,
              source, coalesce('/' || partner, ''), format, declared_records, count_in,
              abs(declared_records - count_in),
              CASE WHEN declared_records > count_in THEN 'missing' ELSE 'more' END) AS detail
FROM source_files
WHERE declared_records IS NOT NULL AND state = 'done' AND received_at <= $1
  AND $2::jsonb IS NOT NULL AND declared_records <> count_in""",
    checked_sql="SELECT count(*) FROM source_files WHERE declared_records IS NOT NULL"
                " AND state = 'done' AND received_at <= $1",
)

CONTROLS = (SEQUENCE_GAPS, SEQUENCE_REPEATS, SILENT_SOURCES, LATE_FILES, RECORD_COUNTS)
