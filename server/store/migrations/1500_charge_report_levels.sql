-- Revenue per day and per month by a dimension, with its distinct-account count, without the
-- account (``report revenue|usage|mrr --period day|month`` by service, zone, tariff, tariff
-- version, currency or nothing). Every report row carries the accounts it holds (active
-- accounts, ARPU), a count no account-less sum can add up: the reports read it from the
-- per-account rollups and sorted them for count(DISTINCT) — a year of 5,000 accounts by month
-- was 480 k rows and a sort, seconds under load, growing with every account.
--
-- charge_day_totals (of charge_rollups) and charge_month_totals (of charge_rollups_monthly,
-- ``day`` the month's first): one row per day or month × grouping × its values × currency,
-- the sums and the distinct accounts of every compacted per-account row. ``grouping`` names
-- the dimensions the row is keyed by, in this order joined by commas ('' for none: the
-- total per currency); the columns of the others are NULL. Tariff is the tariff version's
-- (tariff_versions), as a report joins it.
--
-- Exact by construction, as charge_totals (migration 1423): compaction counts the rows of
-- every day (month) it folds anew from all its compacted rows, in the same transaction and
-- under the same lock, so at any snapshot a level holds exactly the compacted rows' sums
-- and counts. A reader adds the deltas not folded yet (sums), and counts an account of a
-- delta only when it has no compacted row in the same group (else the level counted it).
-- No trigger writes them and they have no account: on Citus they stay on the coordinator
-- like charge_totals, and readers take the compaction's advisory lock shared, as totals do.
--
-- charge_account_months: per account × month × currency, the sums of its compacted monthly
-- rows over services, zones and tariff versions, for the reports by account or by an
-- account's attribute (country, segment, attrs; top accounts, segments), which read one row
-- per account and month instead of one per service × zone × tariff version (8 in the bench,
-- tens for a real catalog), plus the monthly deltas not folded yet. Written by the monthly
-- compaction from the same rows; distributed by account on Citus (server/store/citus.py),
-- beside the rollups it folds, so an account's rows here and its deltas commit together.

CREATE TABLE charge_day_totals (
    day                date NOT NULL,
    grouping           text NOT NULL,
    service            text,
    zone               text,
    tariff_version_id  bigint,
    tariff_id          text,
    currency           char(3) NOT NULL,
    amount_micros      bigint NOT NULL,
    records            bigint NOT NULL,
    units              numeric NOT NULL,
    accounts           bigint NOT NULL
);
CREATE INDEX charge_day_totals_grouping ON charge_day_totals (grouping, day);
CREATE TABLE charge_month_totals (LIKE charge_day_totals);
CREATE INDEX charge_month_totals_grouping ON charge_month_totals (grouping, day);

CREATE TABLE charge_account_months (
    account_id     text NOT NULL,
    day            date NOT NULL,  -- the month's first
    currency       char(3) NOT NULL,
    amount_micros  bigint NOT NULL,
    records        bigint NOT NULL,
    units          numeric NOT NULL
);
CREATE INDEX charge_account_months_day ON charge_account_months (day, account_id);

-- The rows of charge_account_months for the months ``days``, summed anew from the compacted
-- monthly rollups.
CREATE FUNCTION sum_charge_account_months(days date[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM charge_account_months WHERE day = ANY (days);
    INSERT INTO charge_account_months (account_id, day, currency, amount_micros, records,
                                       units)
    SELECT account_id, day, currency, sum(amount_micros), sum(records), sum(units)
    FROM charge_rollups_monthly WHERE compacted AND day = ANY (days)
    GROUP BY account_id, day, currency;
END;
$$;

-- The rows of ``target`` for ``days``, counted anew from the compacted rows of ``source``:
-- one GROUPING SETS pass, each set's count sorting the days' rows once. The rows are read
-- first (on Citus: gathered from the shards, where no GROUPING SETS runs).
CREATE FUNCTION count_charge_groups(source regclass, target regclass, days date[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %s WHERE day = ANY ($1)', target) USING days;
    EXECUTE format($sql$
        WITH g AS MATERIALIZED (
            SELECT r.account_id, r.day, r.service, r.zone, r.tariff_version_id,
                   r.currency, r.amount_micros, r.records, r.units
            FROM %2$s r WHERE r.compacted AND r.day = ANY ($1)
        )
        INSERT INTO %1$s (day, grouping, service, zone, tariff_version_id, tariff_id, currency,
                          amount_micros, records, units, accounts)
        SELECT g.day,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               sum(g.amount_micros), sum(g.records), sum(g.units),
               count(DISTINCT g.account_id COLLATE "C")
        FROM (SELECT g.*, tv.tariff_id FROM g
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = g.tariff_version_id) g
        GROUP BY g.day, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id)) $sql$,
        target, source) USING days;
END;
$$;

-- The compactions of migration 1423 keep folding; each is now called per day (month) with
-- deltas, and the days (months) folded are then counted, in the same transaction and under
-- the same lock. A day's fold sees the deltas committed before it: those committed after are
-- deltas still, at the count and for the readers.
ALTER FUNCTION compact_charge_rollups(date, date) RENAME TO fold_charge_rollups;
ALTER FUNCTION compact_charge_rollups_monthly(date, date) RENAME TO fold_charge_rollups_monthly;

CREATE FUNCTION compact_charge_rollups(first date, last date) RETURNS bigint
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
    RETURN folded;
END;
$$;

CREATE FUNCTION compact_charge_rollups_monthly(first date, last date) RETURNS bigint
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
    RETURN folded;
END;
$$;

-- Backfill: what is compacted already.
SELECT count_charge_groups('charge_rollups', 'charge_day_totals',
                           ARRAY(SELECT DISTINCT day FROM charge_rollups WHERE compacted));
SELECT count_charge_groups('charge_rollups_monthly', 'charge_month_totals',
                           ARRAY(SELECT DISTINCT day FROM charge_rollups_monthly
                                 WHERE compacted));
SELECT sum_charge_account_months(ARRAY(SELECT DISTINCT day FROM charge_rollups_monthly
                                       WHERE compacted));
