-- Compaction counts from the deltas it folds, not from every compacted row of the days and
-- months they are in (issue #19: a run folding a minute's deltas of today and this month cost
-- 6.1 s at 10,000 accounts against 1.5 s for the fold alone). Each run reread, for each day
-- folded, its compacted per-account rows (the day level), the 7 days' of its week (the week
-- level), and, for each month, its compacted monthly rows (the month level, the per-account
-- months); and the fold itself deleted and rewrote every row of the day and month, a minute's
-- deltas or not.
--
-- Now one statement folds the deltas of the days (months) to fold, each into only the
-- compacted rows of its key (account × service × zone × currency × tariff version), and adds to the
-- levels what those deltas add: their sums to each group's row, and to its distinct accounts
-- the accounts the group had no compacted row of in that day, week or month before, which the
-- accounts' bits (charge_account_days, migration 1540; charge_account_presence, 1503) tell,
-- read in the same statement before it sets them. Exact as before, by induction: each level
-- row was the sums and distinct accounts of its period's compacted rows (the migrations'
-- counts), and a fold changes those rows by exactly its deltas (their sums; an account
-- counted once it has a row, and a compacted row is never removed). The deltas and the
-- levels change in one statement under the compaction's lock, so a reader, taking the lock
-- shared, sees both before or both after; a delta committed after the statement's snapshot is
-- neither folded nor counted. The levels' rows are unique per key (as the counts wrote them)
-- and are now updated in place: a unique index each lets the statement find them. On Citus
-- the account-less levels stay on the coordinator and charge_account_months is distributed
-- by account, its key holding the account.

-- On Citus, functions are created (and dropped) on every node, over one connection per node.
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

-- Citus sends a DDL statement's text on a distributed table (charge_account_months, once
-- placed) to the workers and refuses a text holding several statements, as a migration file
-- does: the indexes are created from PL/pgSQL (as in migrations 1475 and 1511).
DO $$
BEGIN
    CREATE UNIQUE INDEX charge_day_totals_key ON charge_day_totals
        (day, grouping, service, zone, tariff_version_id, tariff_id, currency)
        NULLS NOT DISTINCT;
    CREATE UNIQUE INDEX charge_week_totals_key ON charge_week_totals
        (day, grouping, service, zone, tariff_version_id, tariff_id, currency)
        NULLS NOT DISTINCT;
    CREATE UNIQUE INDEX charge_month_totals_key ON charge_month_totals
        (day, grouping, service, zone, tariff_version_id, tariff_id, currency)
        NULLS NOT DISTINCT;
    CREATE UNIQUE INDEX charge_account_months_key ON charge_account_months
        (account_id, day, currency);
END;
$$;

-- The deltas of the days ``days`` folded into the compacted rows of their keys, moved into
-- the account-less charge_totals (1423), added to the day and week levels (1500, 1502), and
-- their days marked (1540); one statement, so that a backlog of many days marks each
-- account's row once (a statement per day rewrote it once per day, and a row rewritten in one
-- transaction leaves every version behind for the next to walk). A week's bits may lie in two
-- years' rows (a week across New Year).
CREATE FUNCTION fold_and_count_charge_rollups(days date[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    zero CONSTANT bit(366) := 0::bit(366);
    before bigint;
    after bigint;
BEGIN
    WITH fresh AS MATERIALIZED (
        DELETE FROM charge_rollups r WHERE NOT r.compacted AND r.day = ANY (days)
        RETURNING r.*
    ), keys AS MATERIALIZED (
        SELECT DISTINCT account_id, day, service, zone, currency, tariff_version_id FROM fresh
    ), kept AS MATERIALIZED (
        DELETE FROM charge_rollups r USING keys k
        WHERE r.compacted AND r.day = k.day AND r.account_id = k.account_id
          AND r.service IS NOT DISTINCT FROM k.service AND r.zone IS NOT DISTINCT FROM k.zone
          AND r.currency = k.currency
          AND r.tariff_version_id IS NOT DISTINCT FROM k.tariff_version_id
        RETURNING r.*
    ), folded AS (
        INSERT INTO charge_rollups (account_id, day, service, zone, currency,
                                    tariff_version_id, amount_micros, records, units,
                                    reversals, reversed_micros, compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), sum(reversals),
               sum(reversed_micros), true
        FROM (SELECT * FROM fresh UNION ALL SELECT * FROM kept) f
        GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    ), old AS (
        DELETE FROM charge_totals t WHERE t.day IN (SELECT day FROM keys)
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
                     units, reversals, reversed_micros FROM fresh) f
        GROUP BY 1, 2, 3, 4, 5
        RETURNING 1
    ), groups AS MATERIALIZED (  -- per account × day × group: the deltas' sums
        SELECT g.account_id, g.day,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END AS grouping,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               sum(g.amount_micros) AS amount_micros, sum(g.records) AS records,
               sum(g.units) AS units
        FROM (SELECT f.*, tv.tariff_id FROM fresh f
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = f.tariff_version_id) g
        GROUP BY g.account_id, g.day, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id))
    ), weeks AS MATERIALIZED (  -- each week of a day folded: its days' bits in each year
        SELECT w.week, extract(year FROM x)::int AS year,
               bit_or(set_bit(zero, extract(doy FROM x)::int - 1, 1)) AS mask
        FROM (SELECT DISTINCT date_trunc('week', day::timestamp)::date AS week FROM keys) w,
             generate_series(w.week::timestamp, w.week + 6, interval '1 day') x
        GROUP BY 1, 2
    ), known AS MATERIALIZED (
        SELECT p.* FROM charge_account_days p
        WHERE p.account_id IN (SELECT account_id FROM keys)
          AND p.year IN (SELECT year FROM weeks)
    ), seen AS MATERIALIZED (  -- whether the group had the account that day, that week
        SELECT a.account_id, a.day, date_trunc('week', a.day::timestamp)::date AS week,
               extract(year FROM a.day)::int AS year, a.grouping, a.service, a.zone,
               a.tariff_version_id, a.tariff_id, a.currency, a.amount_micros, a.records,
               a.units,
               coalesce(bool_or(k.year = extract(year FROM a.day)
                                AND get_bit(k.days, extract(doy FROM a.day)::int - 1) = 1),
                        false) AS day_seen,
               coalesce(bool_or(k.days & w.mask <> zero), false) AS week_seen
        FROM groups a
        LEFT JOIN known k ON k.account_id = a.account_id
            AND k.grouping = a.grouping AND k.service IS NOT DISTINCT FROM a.service
            AND k.zone IS NOT DISTINCT FROM a.zone
            AND k.tariff_version_id IS NOT DISTINCT FROM a.tariff_version_id
            AND k.tariff_id IS NOT DISTINCT FROM a.tariff_id AND k.currency = a.currency
        LEFT JOIN weeks w ON w.week = date_trunc('week', a.day::timestamp)::date
            AND w.year = k.year
        GROUP BY a.account_id, a.day, a.grouping, a.service, a.zone, a.tariff_version_id,
                 a.tariff_id, a.currency, a.amount_micros, a.records, a.units
    ), marked AS (  -- run though unread, as ``moved``; a bit not set yet, once per row
        INSERT INTO charge_account_days AS p (account_id, year, grouping, service, zone,
                                              tariff_version_id, tariff_id, currency, days)
        SELECT account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
               currency, bit_or(set_bit(zero, extract(doy FROM day)::int - 1, 1))
        FROM seen WHERE NOT day_seen
        GROUP BY account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                 currency
        ON CONFLICT (account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                     currency)
        DO UPDATE SET days = p.days | excluded.days
        RETURNING 1
    ), day_level AS (
        INSERT INTO charge_day_totals AS t (day, grouping, service, zone, tariff_version_id,
                                            tariff_id, currency, amount_micros, records,
                                            units, accounts)
        SELECT day, grouping, service, zone, tariff_version_id, tariff_id, currency,
               sum(amount_micros), sum(records), sum(units), count(*) FILTER (WHERE NOT day_seen)
        FROM seen GROUP BY 1, 2, 3, 4, 5, 6, 7
        ON CONFLICT (day, grouping, service, zone, tariff_version_id, tariff_id, currency)
        DO UPDATE SET amount_micros = t.amount_micros + excluded.amount_micros,
                      records = t.records + excluded.records, units = t.units + excluded.units,
                      accounts = t.accounts + excluded.accounts
        RETURNING 1
    ), week_level AS (  -- an account of two days of the week, new to it: counted once
        INSERT INTO charge_week_totals AS t (day, grouping, service, zone, tariff_version_id,
                                             tariff_id, currency, amount_micros, records,
                                             units, accounts)
        SELECT week, grouping, service, zone, tariff_version_id, tariff_id, currency,
               sum(amount_micros), sum(records), sum(units),
               count(DISTINCT account_id) FILTER (WHERE NOT week_seen)
        FROM seen GROUP BY 1, 2, 3, 4, 5, 6, 7
        ON CONFLICT (day, grouping, service, zone, tariff_version_id, tariff_id, currency)
        DO UPDATE SET amount_micros = t.amount_micros + excluded.amount_micros,
                      records = t.records + excluded.records, units = t.units + excluded.units,
                      accounts = t.accounts + excluded.accounts
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM fresh) + (SELECT count(*) FROM kept),
           (SELECT count(*) FROM folded)
    INTO before, after;
    RETURN before - after;
END;
$$;

-- The monthly deltas of the months ``months`` (first days) folded into the compacted rows of
-- their keys, added to the month level and the per-account months (1500), and their months
-- marked (1503), in one statement as above.
CREATE FUNCTION fold_and_count_charge_rollups_monthly(months date[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    before bigint;
    after bigint;
BEGIN
    WITH fresh AS MATERIALIZED (
        DELETE FROM charge_rollups_monthly r WHERE NOT r.compacted AND r.day = ANY (months)
        RETURNING r.*
    ), keys AS MATERIALIZED (
        SELECT DISTINCT account_id, day, service, zone, currency, tariff_version_id FROM fresh
    ), kept AS MATERIALIZED (
        DELETE FROM charge_rollups_monthly r USING keys k
        WHERE r.compacted AND r.day = k.day AND r.account_id = k.account_id
          AND r.service IS NOT DISTINCT FROM k.service AND r.zone IS NOT DISTINCT FROM k.zone
          AND r.currency = k.currency
          AND r.tariff_version_id IS NOT DISTINCT FROM k.tariff_version_id
        RETURNING r.*
    ), folded AS (
        INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                            tariff_version_id, amount_micros, records, units,
                                            reversals, reversed_micros, compacted)
        SELECT account_id, day, service, zone, currency, tariff_version_id,
               sum(amount_micros), sum(records), sum(units), sum(reversals),
               sum(reversed_micros), true
        FROM (SELECT * FROM fresh UNION ALL SELECT * FROM kept) f
        GROUP BY 1, 2, 3, 4, 5, 6
        RETURNING 1
    ), groups AS MATERIALIZED (
        SELECT g.account_id, g.day,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END AS grouping,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               sum(g.amount_micros) AS amount_micros, sum(g.records) AS records,
               sum(g.units) AS units
        FROM (SELECT f.*, tv.tariff_id FROM fresh f
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = f.tariff_version_id) g
        GROUP BY g.account_id, g.day, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id))
    ), known AS MATERIALIZED (
        SELECT p.* FROM charge_account_presence p
        WHERE p.account_id IN (SELECT account_id FROM keys)
          AND p.year IN (SELECT extract(year FROM day)::int FROM keys)
    ), seen AS MATERIALIZED (  -- whether the group had the account that month
        SELECT a.account_id, a.day, extract(year FROM a.day)::int AS year, a.grouping,
               a.service, a.zone, a.tariff_version_id, a.tariff_id, a.currency,
               a.amount_micros, a.records, a.units,
               1 << (extract(month FROM a.day)::int - 1) AS bit,
               coalesce(bool_or(k.year = extract(year FROM a.day)
                                AND k.months & (1 << (extract(month FROM a.day)::int - 1)) <> 0),
                        false) AS month_seen
        FROM groups a LEFT JOIN known k ON k.account_id = a.account_id
            AND k.grouping = a.grouping AND k.service IS NOT DISTINCT FROM a.service
            AND k.zone IS NOT DISTINCT FROM a.zone
            AND k.tariff_version_id IS NOT DISTINCT FROM a.tariff_version_id
            AND k.tariff_id IS NOT DISTINCT FROM a.tariff_id AND k.currency = a.currency
        GROUP BY a.account_id, a.day, a.grouping, a.service, a.zone, a.tariff_version_id,
                 a.tariff_id, a.currency, a.amount_micros, a.records, a.units
    ), marked AS (  -- run though unread: a data-modifying WITH always runs, once
        INSERT INTO charge_account_presence AS p (account_id, year, grouping, service, zone,
                                                  tariff_version_id, tariff_id, currency,
                                                  months)
        SELECT account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
               currency, bit_or(bit)
        FROM seen WHERE NOT month_seen
        GROUP BY account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                 currency
        ON CONFLICT (account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                     currency)
        DO UPDATE SET months = p.months | excluded.months
        RETURNING 1
    ), month_level AS (
        INSERT INTO charge_month_totals AS t (day, grouping, service, zone, tariff_version_id,
                                              tariff_id, currency, amount_micros, records,
                                              units, accounts)
        SELECT day, grouping, service, zone, tariff_version_id, tariff_id, currency,
               sum(amount_micros), sum(records), sum(units),
               count(*) FILTER (WHERE NOT month_seen)
        FROM seen GROUP BY 1, 2, 3, 4, 5, 6, 7
        ON CONFLICT (day, grouping, service, zone, tariff_version_id, tariff_id, currency)
        DO UPDATE SET amount_micros = t.amount_micros + excluded.amount_micros,
                      records = t.records + excluded.records, units = t.units + excluded.units,
                      accounts = t.accounts + excluded.accounts
        RETURNING 1
    ), account_months AS (  -- an account's sums over its services, zones and versions
        INSERT INTO charge_account_months AS t (account_id, day, currency, amount_micros,
                                                records, units)
        SELECT account_id, day, currency, amount_micros, records, units
        FROM groups WHERE grouping = ''
        ON CONFLICT (account_id, day, currency)
        DO UPDATE SET amount_micros = t.amount_micros + excluded.amount_micros,
                      records = t.records + excluded.records, units = t.units + excluded.units
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM fresh) + (SELECT count(*) FROM kept),
           (SELECT count(*) FROM folded)
    INTO before, after;
    RETURN before - after;
END;
$$;

CREATE OR REPLACE FUNCTION compact_charge_rollups(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    RETURN fold_and_count_charge_rollups(ARRAY(
        SELECT DISTINCT day FROM charge_rollups
        WHERE NOT compacted AND day BETWEEN first AND last));
END;
$$;

CREATE OR REPLACE FUNCTION compact_charge_rollups_monthly(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    RETURN fold_and_count_charge_rollups_monthly(ARRAY(
        SELECT DISTINCT day FROM charge_rollups_monthly
        WHERE NOT compacted AND day BETWEEN date_trunc('month', first)::date AND last));
END;
$$;

-- 1540's folds are replaced by these.
DROP FUNCTION fold_and_mark_charge_rollups(date);
DROP FUNCTION fold_and_mark_charge_rollups_monthly(date);
