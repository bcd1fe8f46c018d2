-- A level of the rollups without the account: per UTC day × service × zone × currency ×
-- tariff version, the sums of every account's compacted rollup rows. Totals across all
-- accounts (``GET /v1/charges/totals`` with no account) read a row per key and day here
-- instead of one per account and day (600 k rows for 10 k accounts × 60 days: over a second).
--
-- Exact by construction: compaction moves the per-account deltas it folds into this level in
-- the same transaction, so at any snapshot
--     Σ charge_rollups = Σ charge_totals + Σ charge_rollups WHERE NOT compacted
-- and a reader adds the deltas not folded yet (the partial index charge_rollups_fresh finds
-- them). No trigger writes it and it has no account: on Citus it stays on the coordinator,
-- filled by the compaction the server runs on its clock (server/analytics/compaction.py),
-- never by the ingest, and no row is updated in place: compaction folds its days anew.
-- Compactions take a transaction-scoped advisory lock, so two never fold the same day at once.

CREATE TABLE charge_totals (
    day                date NOT NULL,
    service            text,
    zone               text,
    currency           char(3) NOT NULL,
    tariff_version_id  bigint,
    amount_micros      bigint NOT NULL,
    records            bigint NOT NULL,
    units              numeric NOT NULL,
    reversals          bigint NOT NULL,
    reversed_micros    bigint NOT NULL
);
CREATE INDEX charge_totals_day ON charge_totals (day);

CREATE OR REPLACE FUNCTION compact_charge_rollups(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    WITH days AS (
        SELECT DISTINCT day FROM charge_rollups
        WHERE NOT compacted AND day BETWEEN first AND last
    ), gone AS MATERIALIZED (
        DELETE FROM charge_rollups r USING days d WHERE r.day = d.day
        RETURNING r.*
    ), folded AS (
        INSERT INTO charge_rollups (account_id, day, service, zone, currency,
                                    tariff_version_id, amount_micros, records, units,
                                    reversals, reversed_micros, compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), sum(reversals),
               sum(reversed_micros), true
        FROM gone GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    ), old AS (
        -- the account-less rows of the days whose deltas are folded now: folded anew with
        -- those deltas, one row per key
        DELETE FROM charge_totals t WHERE t.day IN (SELECT day FROM gone WHERE NOT compacted)
        RETURNING t.*
    ), moved AS (  -- run though unread: a data-modifying WITH always runs, once
        INSERT INTO charge_totals (day, service, zone, currency, tariff_version_id,
                                   amount_micros, records, units, reversals, reversed_micros)
        SELECT day, service, zone, currency, tariff_version_id, sum(amount_micros),
               sum(records), sum(units), sum(reversals), sum(reversed_micros)
        FROM (SELECT day, service, zone, currency, tariff_version_id, amount_micros, records,
                     units, reversals, reversed_micros FROM old
              UNION ALL
              SELECT day, service, zone, currency, tariff_version_id, amount_micros, records,
                     units, reversals, reversed_micros FROM gone WHERE NOT compacted) f
        GROUP BY 1, 2, 3, 4, 5
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

-- Backfill: what is compacted already.
INSERT INTO charge_totals (day, service, zone, currency, tariff_version_id, amount_micros,
                           records, units, reversals, reversed_micros)
SELECT day, service, zone, currency, tariff_version_id, sum(amount_micros), sum(records),
       sum(units), sum(reversals), sum(reversed_micros)
FROM charge_rollups WHERE compacted GROUP BY 1, 2, 3, 4, 5;
