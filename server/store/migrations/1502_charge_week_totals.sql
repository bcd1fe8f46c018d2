-- Revenue per ISO week (Monday to Sunday, UTC days) by a dimension, with its distinct-account
-- count, without the account: the week level beside the day and month ones of migration 1500.
-- A weekly report by service, zone, tariff (version), currency or nothing read the per-account
-- daily rollups and sorted them for count(DISTINCT account) — a quarter of 5,000 accounts was
-- 920 k rows, growing with accounts × days — since no sum of the day level's counts gives the
-- accounts of a week (an account of two days of it would count twice).
--
-- charge_week_totals: the rows of charge_day_totals' shape, ``day`` the week's Monday, one per
-- week × grouping × its values × currency, the sums and distinct accounts of every compacted
-- daily row of the week's seven days. Exact as the day level: compaction counts each week
-- holding a day it folds anew from all of that week's compacted rows, in the same transaction
-- and under the same lock; a reader adds the deltas not folded yet and counts an account of a
-- delta only when the week has no compacted row of it in the same group. No account, no
-- trigger: on Citus it stays on the coordinator with the other account-less levels.

CREATE TABLE charge_week_totals (LIKE charge_day_totals);
CREATE INDEX charge_week_totals_grouping ON charge_week_totals (grouping, day);

-- The rows of charge_week_totals for the weeks (Mondays) ``weeks``, counted anew from the
-- compacted daily rollups of their days (read by ``day = ANY``, as count_charge_groups reads,
-- so the day index serves and, on Citus, the shards are read before the GROUPING SETS).
CREATE FUNCTION count_charge_week_groups(weeks date[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    days date[] := ARRAY(SELECT w + i FROM unnest(weeks) w, generate_series(0, 6) i);
BEGIN
    DELETE FROM charge_week_totals WHERE day = ANY (weeks);
    WITH g AS MATERIALIZED (
        SELECT r.account_id, r.day, r.service, r.zone, r.tariff_version_id,
               r.currency, r.amount_micros, r.records, r.units
        FROM charge_rollups r WHERE r.compacted AND r.day = ANY (days)
    )
    INSERT INTO charge_week_totals (day, grouping, service, zone, tariff_version_id,
                                    tariff_id, currency, amount_micros, records, units,
                                    accounts)
    SELECT g.week,
           CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
               WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
               WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
               WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
               WHEN 6 THEN 'service,tariff' END,
           g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
           sum(g.amount_micros), sum(g.records), sum(g.units),
           count(DISTINCT g.account_id COLLATE "C")
    FROM (SELECT g.*, date_trunc('week', g.day::timestamp)::date AS week, tv.tariff_id FROM g
          LEFT JOIN tariff_versions tv ON tv.tariff_version_id = g.tariff_version_id) g
    GROUP BY g.week, g.currency, GROUPING SETS ((), (g.service), (g.zone),
        (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
        (g.service, g.tariff_version_id), (g.service, g.tariff_id));
END;
$$;

-- Migration 1500's daily compaction, unchanged but for its last step: the weeks of the days
-- it folded are counted too, in the same transaction and under the same lock.
CREATE OR REPLACE FUNCTION compact_charge_rollups(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    days date[];
    d date;
    folded bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    days := ARRAY(SELECT DISTINCT day FROM charge_rollups
                  WHERE NOT compacted AND day BETWEEN first AND last);
    FOREACH d IN ARRAY days LOOP
        folded := folded + fold_charge_rollups(d, d);
    END LOOP;
    PERFORM count_charge_groups('charge_rollups', 'charge_day_totals', days);
    PERFORM count_charge_week_groups(
        ARRAY(SELECT DISTINCT date_trunc('week', x::timestamp)::date FROM unnest(days) x));
    RETURN folded;
END;
$$;

-- Backfill: the weeks compacted already.
SELECT count_charge_week_groups(
    ARRAY(SELECT DISTINCT date_trunc('week', day::timestamp)::date FROM charge_rollups
          WHERE compacted));
