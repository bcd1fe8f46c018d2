-- The months each account had charges in, per dimension value, for the distinct accounts of
-- a report over several months without the account (``--period total`` by service, zone,
-- tariff (version), currency or nothing over a quarter, a year, or any range holding whole
-- months; the segments report by those). No level of a period answers it: an account of two
-- months is one account of the quarter, and such a report read the per-account monthly
-- rollups (one row per account × month × service × zone × tariff version: 96 a year per
-- account in the bench) and sorted them for count(DISTINCT account).
--
-- charge_account_presence: per account × year × grouping × its values (as the account-less
-- levels of migration 1500 name them) × currency, ``months`` with bit m − 1 set when the
-- account has a compacted monthly row of that group in month m. One row per account and
-- value a year whatever the months, services, zones and tariff versions it combines; the
-- accounts of a span of months are those whose bits meet the span's. Sums come from the
-- account-less month level, which holds them exactly.
--
-- Exact: a compacted monthly row is never removed (a reversal nets it to zero, it stays), so
-- the bits only grow, and compaction sets those of the months it folds from all their
-- compacted rows, in the same transaction as the fold; a reader adds the accounts of the
-- monthly deltas not folded yet. Distributed by account on Citus (server/store/citus.py),
-- beside the monthly rollups it is set from.

CREATE TABLE charge_account_presence (
    account_id         text NOT NULL,
    year               int NOT NULL,
    grouping           text NOT NULL,
    service            text,
    zone               text,
    tariff_version_id  bigint,
    tariff_id          text,
    currency           char(3) NOT NULL,
    months             int NOT NULL
);
CREATE UNIQUE INDEX charge_account_presence_key ON charge_account_presence
    (account_id, year, grouping, service, zone, tariff_version_id, tariff_id, currency)
    NULLS NOT DISTINCT;
CREATE INDEX charge_account_presence_grouping ON charge_account_presence (grouping, year);

-- The bits of the months ``folded`` (their first days), set from their compacted monthly
-- rollups: read first (on Citus: gathered from the shards, where no GROUPING SETS runs). Only
-- a bit not set yet is written: most runs fold accounts already marked for the month, and an
-- upsert of every group would lock and rewrite each of their rows, every run.
CREATE FUNCTION mark_charge_account_presence(folded date[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH g AS MATERIALIZED (
        SELECT r.account_id, r.day, r.service, r.zone, r.tariff_version_id, r.currency
        FROM charge_rollups_monthly r WHERE r.compacted AND r.day = ANY (folded)
    ), marks AS MATERIALIZED (
        SELECT g.account_id, g.year,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END AS grouping,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               bit_or(g.bit) AS months
        FROM (SELECT g.*, tv.tariff_id, extract(year FROM g.day)::int AS year,
                     1 << (extract(month FROM g.day)::int - 1) AS bit FROM g
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = g.tariff_version_id) g
        GROUP BY g.account_id, g.year, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id))
    ), known AS MATERIALIZED (
        SELECT p.account_id, p.year, p.grouping, p.service, p.zone, p.tariff_version_id,
               p.tariff_id, p.currency, p.months
        FROM charge_account_presence p
        WHERE p.account_id IN (SELECT account_id FROM g)
          AND p.year IN (SELECT extract(year FROM x)::int FROM unnest(folded) x)
    )
    INSERT INTO charge_account_presence AS p (account_id, year, grouping, service, zone,
                                              tariff_version_id, tariff_id, currency, months)
    SELECT m.* FROM marks m
    WHERE NOT EXISTS (
        SELECT 1 FROM known k WHERE k.account_id = m.account_id AND k.year = m.year
          AND k.grouping = m.grouping AND k.service IS NOT DISTINCT FROM m.service
          AND k.zone IS NOT DISTINCT FROM m.zone
          AND k.tariff_version_id IS NOT DISTINCT FROM m.tariff_version_id
          AND k.tariff_id IS NOT DISTINCT FROM m.tariff_id AND k.currency = m.currency
          AND k.months | m.months = k.months)
    ON CONFLICT (account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                 currency)
    DO UPDATE SET months = p.months | excluded.months;
END;
$$;

-- Migration 1500's monthly compaction, unchanged but for its last step: the months folded
-- set their bits too, in the same transaction and under the same lock.
CREATE OR REPLACE FUNCTION compact_charge_rollups_monthly(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    months date[];
    m date;
    folded bigint := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    months := ARRAY(SELECT DISTINCT day FROM charge_rollups_monthly
                    WHERE NOT compacted AND day BETWEEN date_trunc('month', first)::date
                    AND last);
    FOREACH m IN ARRAY months LOOP
        folded := folded + fold_charge_rollups_monthly(m, m);
    END LOOP;
    PERFORM count_charge_groups('charge_rollups_monthly', 'charge_month_totals', months);
    PERFORM sum_charge_account_months(months);
    PERFORM mark_charge_account_presence(months);
    RETURN folded;
END;
$$;

-- Backfill: what is compacted already.
SELECT mark_charge_account_presence(ARRAY(SELECT DISTINCT day FROM charge_rollups_monthly
                                          WHERE compacted));
