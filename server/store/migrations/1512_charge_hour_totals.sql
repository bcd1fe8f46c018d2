-- A level finer than the day, without the account: per UTC hour × currency, the counts and
-- sums of every account's charges and reversals. Totals across all accounts over a period
-- whose ends fall inside days (``GET /v1/charges/totals?from=…T12:34Z&to=…T12:34Z``) read
-- the whole hours of the end days here and only the minutes at either end (under an hour
-- each) from the charges, instead of both partial days' charges (~166,000 a day at 10 M:
-- 208 ms p99; issue #24).
--
-- Exact by construction: whoever writes charges appends this level's deltas in the same
-- transaction (server/store/charge_writes.py, as the per-account rollups since migration
-- 1475): one row per batch × hour × currency, so at any snapshot
--     Σ charges of an hour = Σ charge_hour_totals of that hour (folded rows + deltas).
-- Compaction folds the deltas into one row per hour and currency (compact_charge_hour_totals,
-- on the clock of the other levels) under the same advisory lock; readers read both
-- partitions, so a fold only shortens their read. An archived month's rows stay, as in the
-- other levels: readers skip the months whose charges partition is gone.
--
-- Partitioned by ``compacted`` as the rollups (migration 1511): each partition has the one
-- index its readers need (the hours of a range). The sums are numeric: an hour of every
-- account's charges may pass what a bigint holds where no account's day does. No account:
-- on Citus it stays on the coordinator, as charge_totals (migration 1423); the ingest's
-- transaction writes it there beside the distributed charges.
CREATE TABLE charge_hour_totals (
    hour             timestamptz NOT NULL,  -- the UTC hour's start
    currency         char(3) NOT NULL,
    charges          bigint NOT NULL,       -- rows of kind 'charge'
    reversals        bigint NOT NULL,       -- rows of kind 'reversal'
    charged_micros   numeric NOT NULL,      -- Σ amount_micros of the charges
    reversed_micros  numeric NOT NULL,      -- Σ amount_micros of the reversals (negative)
    compacted        boolean NOT NULL DEFAULT false
) PARTITION BY LIST (compacted);
CREATE TABLE charge_hour_totals_deltas PARTITION OF charge_hour_totals FOR VALUES IN (false);
CREATE TABLE charge_hour_totals_kept PARTITION OF charge_hour_totals FOR VALUES IN (true);
CREATE INDEX charge_hour_totals_deltas_hour ON charge_hour_totals_deltas (hour);
CREATE INDEX charge_hour_totals_kept_hour ON charge_hour_totals_kept (hour);

-- Every delta committed before it folded into the kept row of its hour and currency (the
-- kept row read, deleted and written anew with them); rows folded away. Deltas committed
-- after its snapshot stay deltas. The lock is the rollups' compaction lock: two folds never
-- run at once, and readers across accounts take it shared (server/store/compaction_lock.py).
CREATE FUNCTION compact_charge_hour_totals() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    WITH gone AS MATERIALIZED (
        DELETE FROM charge_hour_totals_deltas RETURNING *
    ), old AS MATERIALIZED (
        DELETE FROM charge_hour_totals_kept k
        WHERE (k.hour, k.currency) IN (SELECT hour, currency FROM gone)
        RETURNING k.*
    ), moved AS (
        INSERT INTO charge_hour_totals (hour, currency, charges, reversals, charged_micros,
                                        reversed_micros, compacted)
        SELECT hour, currency, sum(charges), sum(reversals), sum(charged_micros),
               sum(reversed_micros), true
        FROM (SELECT * FROM gone UNION ALL SELECT * FROM old) f
        GROUP BY 1, 2
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM old), (SELECT count(*) FROM moved)
    INTO before, after;
    RETURN before - after;
END;
$$;

-- Backfill: the charges there are, one kept row per hour and currency.
INSERT INTO charge_hour_totals (hour, currency, charges, reversals, charged_micros,
                                reversed_micros, compacted)
SELECT date_trunc('hour', event_time, 'UTC'), currency,
       count(*) FILTER (WHERE kind = 'charge'), count(*) FILTER (WHERE kind = 'reversal'),
       coalesce(sum(amount_micros) FILTER (WHERE kind = 'charge'), 0),
       coalesce(sum(amount_micros) FILTER (WHERE kind = 'reversal'), 0), true
FROM charges GROUP BY 1, 2;
