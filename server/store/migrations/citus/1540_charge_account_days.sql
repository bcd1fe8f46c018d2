-- Migration 1540 as a Citus coordinator runs it (server/store/migrate.py: a file of this
-- folder stands in for the migration of its name on Citus, recorded under the original's
-- sha256): the same tables and functions, the backfill without GROUPING SETS.

-- The days each account had charges in, per dimension value, for the distinct accounts of a
-- report over days that are not whole periods of a level without the account: the partial
-- weeks and months at a range's ends, the days at the ends of a total over several months,
-- a total over a range holding no whole month (``report revenue --period week|month|total``
-- by service, zone, tariff (version), currency or nothing, from any day to any day). Those
-- days were read from the per-account daily rollups and sorted for count(DISTINCT account):
-- one row per account × day × service × zone × tariff version, 1–3 s at 10,000 accounts for
-- 15 October to 19 December, growing with accounts × the end days (up to 30 at each end).
--
-- charge_account_days: per account × year × grouping × its values (as the account-less levels
-- of migration 1500 name them) × currency, ``days`` with bit doy − 1 (from the left) set when
-- the account has a compacted daily row of that group on that day of the year. One row per
-- account and value a year whatever its days, services, zones and tariff versions; the
-- accounts of any set of days in a year are those whose bits meet the set's. Sums come from
-- the account-less day level (migration 1500), which holds them exactly.
--
-- Marked from the deltas being folded, not from every compacted row of the days (and months,
-- for charge_account_presence, migration 1503) folded: a compacted row exists only because a
-- delta of its key was folded, and is never removed (a reversal nets it to zero, it stays),
-- so the bits of the deltas each fold consumes, OR-ed into what is kept, are those of every
-- compacted row. Each fold marks in the statement that deletes the deltas it folds (its
-- DELETE … RETURNING): a delta committed after that statement's snapshot is neither folded
-- nor marked, so no read sees one without the other. Migration 1503 instead reread every
-- compacted monthly row of the months folded, each run (a GROUPING SETS pass over the month's
-- per-account rows, the biggest of the costs that made a run four times the fold alone).
-- Distributed by account on Citus (server/store/citus.py), beside the rollups it is set from.

-- On Citus, functions are created on every node, over one connection per node (as in 1480).
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

CREATE TABLE charge_account_days (
    account_id         text NOT NULL,
    year               int NOT NULL,
    grouping           text NOT NULL,
    service            text,
    zone               text,
    tariff_version_id  bigint,
    tariff_id          text,
    currency           char(3) NOT NULL,
    days               bit(366) NOT NULL
);
CREATE UNIQUE INDEX charge_account_days_key ON charge_account_days
    (account_id, year, grouping, service, zone, tariff_version_id, tariff_id, currency)
    NULLS NOT DISTINCT;
CREATE INDEX charge_account_days_grouping ON charge_account_days (grouping, year);

-- fold_charge_rollups (migration 1423, renamed by 1500) for the day ``d``, marking the bits of
-- the deltas it folds in the same statement. The marks written are those not set yet: most
-- runs fold accounts already marked for the day, and an upsert of every group would lock and
-- rewrite each of their rows, every run.
CREATE FUNCTION fold_and_mark_charge_rollups(d date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    WITH gone AS MATERIALIZED (
        DELETE FROM charge_rollups r WHERE r.day = d RETURNING r.*
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
    ), marks AS MATERIALIZED (
        SELECT g.account_id, g.year,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END AS grouping,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               bit_or(g.bit) AS days
        FROM (SELECT g.account_id, g.service, g.zone, g.tariff_version_id, g.currency,
                     tv.tariff_id, extract(year FROM g.day)::int AS year,
                     set_bit(repeat('0', 366)::bit(366), extract(doy FROM g.day)::int - 1, 1)
                         AS bit
              FROM gone g
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = g.tariff_version_id
              WHERE NOT g.compacted) g
        GROUP BY g.account_id, g.year, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id))
    ), known AS MATERIALIZED (
        SELECT p.account_id, p.year, p.grouping, p.service, p.zone, p.tariff_version_id,
               p.tariff_id, p.currency, p.days
        FROM charge_account_days p
        WHERE p.account_id IN (SELECT account_id FROM marks)
          AND p.year = extract(year FROM d)::int
    ), marked AS (  -- run though unread, as ``moved``
        INSERT INTO charge_account_days AS p (account_id, year, grouping, service, zone,
                                              tariff_version_id, tariff_id, currency, days)
        SELECT m.* FROM marks m
        WHERE NOT EXISTS (
            SELECT 1 FROM known k WHERE k.account_id = m.account_id AND k.year = m.year
              AND k.grouping = m.grouping AND k.service IS NOT DISTINCT FROM m.service
              AND k.zone IS NOT DISTINCT FROM m.zone
              AND k.tariff_version_id IS NOT DISTINCT FROM m.tariff_version_id
              AND k.tariff_id IS NOT DISTINCT FROM m.tariff_id AND k.currency = m.currency
              AND k.days | m.days = k.days)
        ON CONFLICT (account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                     currency)
        DO UPDATE SET days = p.days | excluded.days
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

-- fold_charge_rollups_monthly (migration 1421, renamed by 1500) for the month ``m`` (its
-- first day), marking the months of the deltas it folds in charge_account_presence (1503) in
-- the same statement, as above.
CREATE FUNCTION fold_and_mark_charge_rollups_monthly(m date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    WITH gone AS MATERIALIZED (
        DELETE FROM charge_rollups_monthly r WHERE r.day = m RETURNING r.*
    ), folded AS (
        INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                            tariff_version_id, amount_micros, records, units,
                                            reversals, reversed_micros, compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), sum(reversals),
               sum(reversed_micros), true
        FROM gone GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    ), marks AS MATERIALIZED (
        SELECT g.account_id, g.year,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END AS grouping,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               bit_or(g.bit) AS months
        FROM (SELECT g.account_id, g.service, g.zone, g.tariff_version_id, g.currency,
                     tv.tariff_id, extract(year FROM g.day)::int AS year,
                     1 << (extract(month FROM g.day)::int - 1) AS bit
              FROM gone g
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = g.tariff_version_id
              WHERE NOT g.compacted) g
        GROUP BY g.account_id, g.year, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id))
    ), known AS MATERIALIZED (
        SELECT p.account_id, p.year, p.grouping, p.service, p.zone, p.tariff_version_id,
               p.tariff_id, p.currency, p.months
        FROM charge_account_presence p
        WHERE p.account_id IN (SELECT account_id FROM marks)
          AND p.year = extract(year FROM m)::int
    ), marked AS (  -- run though unread: a data-modifying WITH always runs, once
        INSERT INTO charge_account_presence AS p (account_id, year, grouping, service, zone,
                                                  tariff_version_id, tariff_id, currency,
                                                  months)
        SELECT k.* FROM marks k
        WHERE NOT EXISTS (
            SELECT 1 FROM known o WHERE o.account_id = k.account_id AND o.year = k.year
              AND o.grouping = k.grouping AND o.service IS NOT DISTINCT FROM k.service
              AND o.zone IS NOT DISTINCT FROM k.zone
              AND o.tariff_version_id IS NOT DISTINCT FROM k.tariff_version_id
              AND o.tariff_id IS NOT DISTINCT FROM k.tariff_id AND o.currency = k.currency
              AND o.months | k.months = o.months)
        ON CONFLICT (account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                     currency)
        DO UPDATE SET months = p.months | excluded.months
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM folded) INTO before, after;
    RETURN before - after;
END;
$$;

-- Migration 1502's daily compaction and 1503's monthly one, each fold now marking: the
-- monthly one no longer rereads its months' compacted rows for their bits
-- (mark_charge_account_presence stays, for a backfill).
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
        folded := folded + fold_and_mark_charge_rollups(d);
    END LOOP;
    PERFORM count_charge_groups('charge_rollups', 'charge_day_totals', days);
    PERFORM count_charge_week_groups(
        ARRAY(SELECT DISTINCT date_trunc('week', x::timestamp)::date FROM unnest(days) x));
    RETURN folded;
END;
$$;

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
        folded := folded + fold_and_mark_charge_rollups_monthly(m);
    END LOOP;
    PERFORM count_charge_groups('charge_rollups_monthly', 'charge_month_totals', months);
    PERFORM sum_charge_account_months(months);
    RETURN folded;
END;
$$;

-- Backfill: the days compacted already. On a Citus coordinator whose charge_rollups is
-- distributed already (a release before this one placed it), GROUPING SETS over it are refused
-- ("could not run distributed query with GROUPING"): each row is repeated once per grouping
-- set, the columns outside the set nulled, and one plain GROUP BY (the account, the
-- distribution column, in it) forms the same rows the original statement's sets form.
INSERT INTO charge_account_days (account_id, year, grouping, service, zone, tariff_version_id,
                                 tariff_id, currency, days)
SELECT g.account_id, g.year, s.grouping,
       CASE WHEN s.service THEN g.service END, CASE WHEN s.zone THEN g.zone END,
       CASE WHEN s.tariff_version THEN g.tariff_version_id END,
       CASE WHEN s.tariff THEN g.tariff_id END, g.currency, bit_or(g.bit)
FROM (SELECT r.account_id, r.service, r.zone, r.tariff_version_id, r.currency, tv.tariff_id,
             extract(year FROM r.day)::int AS year,
             set_bit(repeat('0', 366)::bit(366), extract(doy FROM r.day)::int - 1, 1) AS bit
      FROM charge_rollups r
      LEFT JOIN tariff_versions tv ON tv.tariff_version_id = r.tariff_version_id
      WHERE r.compacted) g
CROSS JOIN (VALUES ('', false, false, false, false),
                   ('service', true, false, false, false),
                   ('zone', false, true, false, false),
                   ('tariff_version', false, false, true, false),
                   ('tariff', false, false, false, true),
                   ('service,zone', true, true, false, false),
                   ('service,tariff_version', true, false, true, false),
                   ('service,tariff', true, false, false, true))
    AS s (grouping, service, zone, tariff_version, tariff)
GROUP BY g.account_id, g.year, g.currency, s.grouping, 4, 5, 6, 7;
