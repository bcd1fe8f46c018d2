-- The rollup levels recomputed from the charges (issues #19, #24): what a level must hold is
-- defined once here, for the control that compares every level with the charges
-- (``rollups.levels``, server/assurance/controls/rollups.py) and for the rebuild of a range of
-- days (``billing-oss report rebuild``): per account × UTC day × service × zone × currency ×
-- tariff version (charge_level_days) and per UTC hour × currency (charge_level_hours), the
-- sums the charges' writers append as deltas (server/store/charge_writes.py).
--
-- A rebuild writes each level's kept rows as the charges' sums less the deltas not folded yet,
-- read in one statement (one snapshot: the functions reading the charges are STABLE, so they
-- read with the statement's): a writer commits its charges and their deltas together, so
-- both are in the snapshot or neither is, and a charge committed during the rebuild stays
-- counted once, by its delta, which the next compaction folds as any other. On Citus no
-- snapshot spans the nodes: exact there for days no charge is written to meanwhile.
-- Deltas are never deleted by a rebuild, so its days need not be whole weeks or months: the
-- levels counted from kept rows (the account-less day, week and month levels, the accounts'
-- months, days and months bits) are then recounted from the kept rows of the periods holding
-- the days rebuilt, as compaction's counts did (migrations 1500, 1502, 1503). Every key with
-- charges or deltas keeps a row, zero when all its charges are still deltas: the levels count
-- its account, the bits hold its day, and the fold of those deltas adds their sums only, as
-- for any key already kept. It runs under the compaction's lock, taken exclusive.
--
-- The monthly rollups are rebuilt for the whole months holding the days (a month's row needs
-- all its charges); the hourly level for the hours of the days. A month whose charges are
-- archived (its partition gone) is refused: its levels are all that is left of it.

-- On Citus, functions are created (and dropped) on every node, over one connection per node.
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

-- The per-account daily sums the charges of the UTC days [lo, hi) make, as their writers
-- append them: the service and units of each charge's usage row (none: no service, one
-- unit), a reversal counted -1 record and minus its units. PL/pgSQL, as the next: Citus
-- plans no SQL function reading distributed tables with parameters.
CREATE FUNCTION charge_level_days(lo date, hi date)
RETURNS TABLE (account_id text, day date, service text, zone text, currency char(3),
               tariff_version_id bigint, amount_micros bigint, records bigint, units numeric,
               reversals bigint, reversed_micros bigint)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT c.account_id, (c.event_time AT TIME ZONE 'UTC')::date, u.kind, c.zone, c.currency,
           c.tariff_version_id, sum(c.amount_micros)::bigint,
           sum(CASE c.kind WHEN 'reversal' THEN -1 ELSE 1 END)::bigint,
           coalesce(sum(CASE c.kind WHEN 'reversal' THEN -1 ELSE 1 END
                        * charge_rollup_units(u.kind, u.duration_s, u.volume_up,
                                              u.volume_down, u.quantity)), 0),
           count(*) FILTER (WHERE c.kind = 'reversal'),
           coalesce(sum(c.amount_micros) FILTER (WHERE c.kind = 'reversal'), 0)::bigint
    FROM charges c
    LEFT JOIN usage_records u ON u.account_id = c.account_id
        AND u.event_time = c.event_time AND u.usage_id = c.usage_id
        AND u.event_time >= lo::timestamp AT TIME ZONE 'UTC'
        AND u.event_time < hi::timestamp AT TIME ZONE 'UTC'
    WHERE c.event_time >= lo::timestamp AT TIME ZONE 'UTC'
      AND c.event_time < hi::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1, 2, 3, 4, 5, 6;
END;
$$;

-- The hourly level's sums (migration 1512) the charges of the UTC days [lo, hi) make.
CREATE FUNCTION charge_level_hours(lo date, hi date)
RETURNS TABLE (hour timestamptz, currency char(3), charges bigint, reversals bigint,
               charged_micros numeric, reversed_micros numeric)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT date_trunc('hour', event_time, 'UTC'), currency,
           count(*) FILTER (WHERE kind = 'charge'), count(*) FILTER (WHERE kind = 'reversal'),
           coalesce(sum(amount_micros) FILTER (WHERE kind = 'charge'), 0)::numeric,
           coalesce(sum(amount_micros) FILTER (WHERE kind = 'reversal'), 0)::numeric
    FROM charges
    WHERE event_time >= lo::timestamp AT TIME ZONE 'UTC'
      AND event_time < hi::timestamp AT TIME ZONE 'UTC'
    GROUP BY 1, 2;
END;
$$;

-- The days the charges' partitions hold: from the first day of the earliest month still in
-- the database (months before it are archived) to the day after the last (NULLs: none).
CREATE FUNCTION charges_live_span(OUT since date, OUT until date)
LANGUAGE sql STABLE AS $$
    SELECT min(to_date(right(c.relname, 7), 'YYYY_MM')),
           (max(to_date(right(c.relname, 7), 'YYYY_MM')) + interval '1 month')::date
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'charges'::regclass
$$;

-- The days bits (migration 1540) of the days ``days``, cleared, then set from the kept daily
-- rows of those days; a row left with no bit counts no account, as one never written.
CREATE FUNCTION remark_charge_account_days(rebuilt date[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    zero CONSTANT bit(366) := 0::bit(366);
    y int;
    mask bit(366);
BEGIN
    FOR y, mask IN
        SELECT extract(year FROM d)::int, bit_or(set_bit(zero, extract(doy FROM d)::int - 1, 1))
        FROM unnest(rebuilt) d GROUP BY 1
    LOOP
        UPDATE charge_account_days SET days = days & ~mask
        WHERE year = y AND days & mask <> zero;
    END LOOP;
    WITH g AS MATERIALIZED (
        SELECT r.account_id, r.day, r.service, r.zone, r.tariff_version_id, r.currency
        FROM charge_rollups r WHERE r.compacted AND r.day = ANY (rebuilt)
    ), marks AS MATERIALIZED (
        SELECT g.account_id, g.year,
               CASE GROUPING(g.service, g.zone, g.tariff_version_id, g.tariff_id)
                   WHEN 15 THEN '' WHEN 7 THEN 'service' WHEN 11 THEN 'zone'
                   WHEN 13 THEN 'tariff_version' WHEN 14 THEN 'tariff'
                   WHEN 3 THEN 'service,zone' WHEN 5 THEN 'service,tariff_version'
                   WHEN 6 THEN 'service,tariff' END AS grouping,
               g.service, g.zone, g.tariff_version_id, g.tariff_id, g.currency,
               bit_or(g.bit) AS days
        FROM (SELECT g.*, tv.tariff_id, extract(year FROM g.day)::int AS year,
                     set_bit(zero, extract(doy FROM g.day)::int - 1, 1) AS bit FROM g
              LEFT JOIN tariff_versions tv ON tv.tariff_version_id = g.tariff_version_id) g
        GROUP BY g.account_id, g.year, g.currency, GROUPING SETS ((), (g.service), (g.zone),
            (g.tariff_version_id), (g.tariff_id), (g.service, g.zone),
            (g.service, g.tariff_version_id), (g.service, g.tariff_id))
    )
    INSERT INTO charge_account_days AS p (account_id, year, grouping, service, zone,
                                          tariff_version_id, tariff_id, currency, days)
    SELECT * FROM marks
    ON CONFLICT (account_id, year, grouping, service, zone, tariff_version_id, tariff_id,
                 currency)
    DO UPDATE SET days = p.days | excluded.days;
END;
$$;

-- The daily rollups' kept rows of the days first..last rewritten from the charges (less the
-- deltas), then every level counted from them: the account-less daily sums (1423), the day
-- and week levels (1500, 1502) and the days bits (1540). Rows written.
CREATE FUNCTION rebuild_charge_rollups_daily(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    days date[] := ARRAY(SELECT generate_series(first::timestamp, last::timestamp,
                                                interval '1 day')::date);
    written bigint;
BEGIN
    DELETE FROM charge_rollups WHERE compacted AND day BETWEEN first AND last;
    INSERT INTO charge_rollups (account_id, day, service, zone, currency, tariff_version_id,
                                amount_micros, records, units, reversals, reversed_micros,
                                compacted)
    SELECT account_id, day, service, zone, currency, tariff_version_id, sum(amount_micros),
           sum(records), sum(units), sum(reversals), sum(reversed_micros), true
    FROM (SELECT * FROM charge_level_days(first, last + 1)
          UNION ALL
          SELECT account_id, day, service, zone, currency, tariff_version_id, -amount_micros,
                 -records, -units, -reversals, -reversed_micros
          FROM charge_rollups WHERE NOT compacted AND day BETWEEN first AND last) f
    GROUP BY 1, 2, 3, 4, 5, 6;
    GET DIAGNOSTICS written = ROW_COUNT;
    DELETE FROM charge_totals WHERE day BETWEEN first AND last;
    INSERT INTO charge_totals (day, service, zone, currency, tariff_version_id, amount_micros,
                               records, units, reversals, reversed_micros)
    SELECT day, service, zone, currency, tariff_version_id, sum(amount_micros), sum(records),
           sum(units), sum(reversals), sum(reversed_micros)
    FROM charge_rollups WHERE compacted AND day BETWEEN first AND last
    GROUP BY 1, 2, 3, 4, 5;
    PERFORM count_charge_groups('charge_rollups', 'charge_day_totals', days);
    PERFORM count_charge_week_groups(
        ARRAY(SELECT DISTINCT date_trunc('week', x::timestamp)::date FROM unnest(days) x));
    PERFORM remark_charge_account_days(days);
    RETURN written;
END;
$$;

-- The monthly rollups' kept rows of the months holding first..last rewritten from the
-- charges (less the deltas), then the month level, the accounts' months (1500) and the
-- months bits (1503) counted from them. Rows written.
CREATE FUNCTION rebuild_charge_rollups_monthly(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    lo date := date_trunc('month', first::timestamp)::date;
    hi date := (date_trunc('month', last::timestamp) + interval '1 month')::date;
    periods date[] := ARRAY(SELECT generate_series(lo::timestamp, (hi - 1)::timestamp,
                                                   interval '1 month')::date);
    y int;
    mask int;
    written bigint;
BEGIN
    DELETE FROM charge_rollups_monthly WHERE compacted AND day = ANY (periods);
    INSERT INTO charge_rollups_monthly (account_id, day, service, zone, currency,
                                        tariff_version_id, amount_micros, records, units,
                                        reversals, reversed_micros, compacted)
    SELECT account_id, month, service, zone, currency, tariff_version_id, sum(amount_micros),
           sum(records), sum(units), sum(reversals), sum(reversed_micros), true
    FROM (SELECT account_id, date_trunc('month', day::timestamp)::date AS month, service, zone,
                 currency, tariff_version_id, amount_micros, records, units, reversals,
                 reversed_micros
          FROM charge_level_days(lo, hi)
          UNION ALL
          SELECT account_id, day, service, zone, currency, tariff_version_id, -amount_micros,
                 -records, -units, -reversals, -reversed_micros
          FROM charge_rollups_monthly WHERE NOT compacted AND day = ANY (periods)) f
    GROUP BY 1, 2, 3, 4, 5, 6;
    GET DIAGNOSTICS written = ROW_COUNT;
    PERFORM count_charge_groups('charge_rollups_monthly', 'charge_month_totals', periods);
    PERFORM sum_charge_account_months(periods);
    FOR y, mask IN
        SELECT extract(year FROM m)::int, bit_or(1 << (extract(month FROM m)::int - 1))
        FROM unnest(periods) m GROUP BY 1
    LOOP
        UPDATE charge_account_presence SET months = months & ~mask
        WHERE year = y AND months & mask <> 0;
    END LOOP;
    PERFORM mark_charge_account_presence(periods);
    RETURN written;
END;
$$;

-- The hourly level's kept rows of the hours of the days first..last rewritten from the
-- charges (less the deltas). Rows written.
CREATE FUNCTION rebuild_charge_hour_totals(first date, last date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := first::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (last + 1)::timestamp AT TIME ZONE 'UTC';
    written bigint;
BEGIN
    DELETE FROM charge_hour_totals WHERE compacted AND hour >= lo AND hour < hi;
    INSERT INTO charge_hour_totals (hour, currency, charges, reversals, charged_micros,
                                    reversed_micros, compacted)
    SELECT hour, currency, sum(charges), sum(reversals), sum(charged_micros),
           sum(reversed_micros), true
    FROM (SELECT * FROM charge_level_hours(first, last + 1)
          UNION ALL
          SELECT hour, currency, -charges, -reversals, -charged_micros, -reversed_micros
          FROM charge_hour_totals WHERE NOT compacted AND hour >= lo AND hour < hi) f
    GROUP BY 1, 2;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END;
$$;

-- The levels ``levels`` (daily, monthly, hourly; each with the levels counted from it) of
-- the days first..last rebuilt under the compaction's lock: one row per level, the rows
-- written. Idempotent: a second run writes the same rows.
CREATE FUNCTION rebuild_charge_levels(first date, last date,
                                      levels text[] DEFAULT ARRAY['daily', 'monthly', 'hourly'])
RETURNS TABLE (level text, rows_written bigint)
LANGUAGE plpgsql AS $$
DECLARE
    since date := (charges_live_span()).since;
    unknown text[] := ARRAY(SELECT unnest(levels) EXCEPT
                            SELECT unnest(ARRAY['daily', 'monthly', 'hourly']));
BEGIN
    IF first > last THEN
        RAISE EXCEPTION 'empty range: % is after %', first, last
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(unknown) > 0 THEN
        RAISE EXCEPTION 'no level %: daily, monthly or hourly', unknown
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF since IS NULL THEN
        RAISE EXCEPTION 'no charges are stored: no level to rebuild from them'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF date_trunc('month', first::timestamp)::date < since THEN
        RAISE EXCEPTION 'the charges before % are archived: their levels are all that is left of them',
            since USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('compact_charge_rollups'));
    IF 'daily' = ANY (levels) THEN
        level := 'daily';
        rows_written := rebuild_charge_rollups_daily(first, last);
        RETURN NEXT;
    END IF;
    IF 'monthly' = ANY (levels) THEN
        level := 'monthly';
        rows_written := rebuild_charge_rollups_monthly(first, last);
        RETURN NEXT;
    END IF;
    IF 'hourly' = ANY (levels) THEN
        level := 'hourly';
        rows_written := rebuild_charge_hour_totals(first, last);
        RETURN NEXT;
    END IF;
END;
$$;

-- The folds of migrations 1421/1423 (renamed by 1500) fold a day's deltas without the levels
-- compaction keeps in place since 1541 (no live function calls them: 1500–1503's loops were
-- replaced by 1540's and 1541's): a call would leave those levels short of what it folded.
DROP FUNCTION fold_charge_rollups(date, date);
DROP FUNCTION fold_charge_rollups_monthly(date, date);
