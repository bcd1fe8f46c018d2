"""The journal's days kept at posting (migration 1543) equal the journal of the ledger.

- ``ledger.journal_days``: per currency, every day whose kept entries, debit or credit
  (``ledger_journal_days`` and the deltas not folded yet) differ from those of the day's
  ledger entries as the export books them (``ledger_journal_moves``, the builder's amounts:
  ``tests/integration/test_ledger_journal_sides.py``). One offender per currency,
  ``journal_days:<currency>``, naming the first differing day with both sides, and how many
  days differ, and the verb that repairs them (``billing-oss ledger rebuild``). At stake:
  Σ over those days of the debit's difference (or the credit's, if larger). A writer of the
  ledger that skipped the days, or a level changed by hand, shows.

One aggregate of the ledger entries by day (an index-only read of a row per entry with its
documents' amounts), against a row per day: the totals' own read is a row per day.
"""

from __future__ import annotations

from billing_oss.server.assurance.sql_control import SqlControl
from billing_oss.server.collections.journal_days_repo import FOLD_LOCK_SHARED

# Read under the fold's lock shared: on Citus a fold commits the coordinator's days and the
# workers' deltas one after the other, and a read between would see a day's deltas twice or
# not at all.
JOURNAL_DAYS = SqlControl(
    name="ledger.journal_days", version=1, family="ledger",
    title="the journal's days kept at posting = the journal of the ledger's entries",
    sql="""
WITH kept AS (
    SELECT currency, entry_date, sum(entries)::bigint AS entries,
           sum(debit_micros)::bigint AS debit, sum(credit_micros)::bigint AS credit
    FROM (SELECT currency, entry_date, entries, debit_micros, credit_micros
          FROM ledger_journal_days
          UNION ALL
          SELECT currency, entry_date, entries, debit_micros, credit_micros
          FROM ledger_journal_deltas) k
    GROUP BY 1, 2
), booked AS (
    SELECT currency, entry_date, count(*)::bigint AS entries,
           sum(debit_micros)::bigint AS debit, sum(credit_micros)::bigint AS credit
    FROM ledger_journal_moves GROUP BY 1, 2
), differ AS (
    SELECT trim(coalesce(k.currency, b.currency)) AS currency,
           coalesce(k.entry_date, b.entry_date) AS day,
           coalesce(k.entries, 0) AS k_entries, coalesce(k.debit, 0) AS k_debit,
           coalesce(k.credit, 0) AS k_credit, coalesce(b.entries, 0) AS b_entries,
           coalesce(b.debit, 0) AS b_debit, coalesce(b.credit, 0) AS b_credit
    FROM kept k FULL JOIN booked b ON b.currency = k.currency AND b.entry_date = k.entry_date
    WHERE (coalesce(k.entries, 0), coalesce(k.debit, 0), coalesce(k.credit, 0))
          IS DISTINCT FROM (coalesce(b.entries, 0), coalesce(b.debit, 0), coalesce(b.credit, 0))
)
SELECT format('journal_days:%s', currency) AS object, currency,
       sum(greatest(abs(k_debit - b_debit), abs(k_credit - b_credit)))::bigint
           AS at_stake_micros,
       (array_agg(format('first differing day %s: kept %s entries, debit %s, credit %s;'
                         ' the ledger %s entries, debit %s, credit %s (micro-units)',
                         day, k_entries, k_debit, k_credit, b_entries, b_debit, b_credit)
                  ORDER BY day))[1]
       || format('; %s day(s) differ (repair: billing-oss ledger rebuild --kept journal)',
                 count(*)) AS detail
FROM differ
WHERE $1::timestamptz IS NOT NULL AND $2::jsonb IS NOT NULL
GROUP BY currency""",
    checked_sql="SELECT count(*) FROM ledger_journal_days WHERE $1::timestamptz IS NOT NULL",
    lock_shared=FOLD_LOCK_SHARED,
)


CONTROLS = (JOURNAL_DAYS,)
