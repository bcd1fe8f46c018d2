-- The month being written is split into its UTC days; a month that has closed is folded
-- back into one table. Arrival-order ingest into one month table slows as the month grows
-- (the account-led primary keys gain a level and split half-full: 73.6 % of the 1 M rate
-- at 10 M, perf/README.md), while a day's indexes stay the size of a day (90.9 %). Reads
-- without a time bound plan every partition kept, so days are kept only while a month is
-- open: a year of retention is 12 month tables and one month of days, not 396 tables.
--
-- One level of partitions, so Citus (one level only) could take the same layout; its
-- variant of this migration keeps month tables (server/store/migrations/citus/).

-- The months made of days: the current UTC month, and the next one from two days before
-- it starts (records stamped a little ahead land in days, not in a month table).
CREATE FUNCTION month_partition_is_open(first date, at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT first >= date_trunc('month', at AT TIME ZONE 'UTC')::date
       AND first <= date_trunc('month', (at AT TIME ZONE 'UTC') + interval '2 days')::date
$$;

-- usage_records_2026_12: a month's table, and the prefix of its days' (…_2026_12_06).
CREATE FUNCTION month_partition_name(parent regclass, month date) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('%s_%s', parent::text, to_char(date_trunc('month', month), 'YYYY_MM'))
$$;

CREATE FUNCTION make_day_partitions(parent regclass, first date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    day date;
BEGIN
    FOR day IN SELECT generate_series(first, (first + interval '1 month - 1 day')::date,
                                      interval '1 day')::date
    LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
            format('%s_%s', parent::text, to_char(day, 'YYYY_MM_DD')), parent,
            day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END;
$$;

-- On demand, under a lock per month so concurrent writers can race: an open month as its
-- days, any other as one table. Either form, once there, is the month's. (IF NOT EXISTS:
-- the second look may miss a table the lock's holder made, as the advisory lock does not
-- refresh the catalog cache.)
CREATE OR REPLACE FUNCTION ensure_month_partition(parent regclass, month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := month_partition_name(parent, month);
BEGIN
    IF to_regclass(name) IS NOT NULL OR to_regclass(name || '_01') IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(name));
    IF to_regclass(name) IS NOT NULL OR to_regclass(name || '_01') IS NOT NULL THEN
        RETURN;
    END IF;
    IF month_partition_is_open(first, now()) THEN
        PERFORM make_day_partitions(parent, first);
    ELSE
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       name, parent, first::timestamp AT TIME ZONE 'UTC',
                       (first + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    END IF;
END;
$$;

-- A month table made ahead, still empty, replaced by its days as the month opens (by the
-- database's clock, as ``ensure_month_partition`` decides); false when it is not open or
-- holds records (they stay where they are: one month table is correct, only
-- slower to fill). The parent is locked first, so no writer waits on something held here.
CREATE FUNCTION split_month_partition(parent regclass, month date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := month_partition_name(parent, month);
    empty boolean;
BEGIN
    IF NOT month_partition_is_open(first, now()) OR to_regclass(name || '_01') IS NOT NULL THEN
        RETURN false;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(name));
    IF to_regclass(name) IS NOT NULL THEN
        PERFORM set_config('lock_timeout', '1s', true);
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', parent);
        EXECUTE format('SELECT NOT EXISTS (SELECT FROM %I)', name) INTO empty;
        IF NOT empty THEN
            RETURN false;
        END IF;
        EXECUTE format('DROP TABLE %I', name);
    END IF;
    PERFORM make_day_partitions(parent, first);
    RETURN true;
END;
$$;

-- Held (shared) by a batch writing records of the month, for its transaction, before it
-- locks usage_records or charges; a fold holds it alone. A late record of the month being
-- folded waits here, holding nothing the fold needs, instead of on a day under the parent.
CREATE FUNCTION month_writes_key(month date) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtext('month writes ' || to_char(date_trunc('month', month), 'YYYY_MM'))
$$;

CREATE FUNCTION hold_month_for_writes(month date) RETURNS void
LANGUAGE sql AS $$ SELECT pg_advisory_xact_lock_shared(month_writes_key(month)) $$;

-- A month of days folded into one table: the rows copied and indexed while the days take
-- no writes (reads go on), then, under the parent's lock for a moment, the days detached,
-- the month attached (its CHECK spares the scan) and the days dropped. Records of the
-- month arriving meanwhile wait for the commit and land in the month table.
--
-- The batches of the pipeline wait at ``hold_month_for_writes`` (up to 10 s for those in
-- flight to finish). Other writers (a rerate, a suspense retry) may wait on a day while
-- holding the parent: past that first wait, waits are bounded (lock_timeout 500 ms, under
-- the default 1 s deadlock_timeout), and the parent's lock is not asked for while a writer
-- waits on a day, so the fold gives way (55P03, tried again at the next housekeeping) and
-- never leaves a writer to be chosen as a deadlock's victim. NULL: the month is not days.
CREATE FUNCTION fold_month_partition(parent regclass, month date) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := month_partition_name(parent, month);
    lo timestamptz := first::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := (first + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    writes bigint := month_writes_key(first);
    days regclass[];
    day regclass;
    ddl text;
    moved bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext(name));
    SELECT array_agg(i.inhrelid::regclass ORDER BY c.relname) INTO days
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = parent AND c.relname ~ ('^' || name || '_[0-9]{2}$');
    IF days IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('lock_timeout', '10s', true);
    PERFORM pg_advisory_xact_lock(writes);
    PERFORM set_config('lock_timeout', '500ms', true);
    FOREACH day IN ARRAY days LOOP
        EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', day);
    END LOOP;
    EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                   ' INCLUDING STORAGE)', name, parent);
    EXECUTE format('INSERT INTO %I SELECT * FROM %s WHERE event_time >= %L AND event_time < %L',
                   name, parent, lo, hi);
    GET DIAGNOSTICS moved = ROW_COUNT;
    -- Built after the copy (a sort, not a descent per row); the parent's primary key as a
    -- constraint, so that attaching takes these indexes instead of building its own.
    FOR ddl IN
        SELECT CASE WHEN k.oid IS NOT NULL
                    THEN format('ALTER TABLE %I ADD %s', name, pg_get_constraintdef(k.oid))
                    ELSE regexp_replace(pg_get_indexdef(x.indexrelid),
                                        ' INDEX \S+ ON ONLY \S+', format(' INDEX ON %I', name))
               END
          FROM pg_index x
          LEFT JOIN pg_constraint k ON k.conindid = x.indexrelid AND k.conrelid = parent
         WHERE x.indrelid = parent
    LOOP
        EXECUTE ddl;
    END LOOP;
    EXECUTE format('ANALYZE %I', name);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (event_time >= %L AND event_time < %L)',
                   name, name || '_bound', lo, hi);
    -- Someone holding the parent and waiting on a day or on this month's writes (a
    -- delivery writing a second month in its transaction) would wait on this, and this on it.
    IF EXISTS (SELECT FROM pg_locks w JOIN pg_locks h ON h.pid = w.pid
               WHERE NOT w.granted AND h.granted AND h.relation = parent
                 AND (w.relation = ANY(days::oid[])
                      OR (w.locktype = 'advisory' AND w.objsubid = 1
                          AND w.objid = (writes & 4294967295)::text::oid))) THEN
        RAISE EXCEPTION 'a writer holding % waits on the fold of %', parent, name
            USING ERRCODE = '55P03';
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', parent);
    FOREACH day IN ARRAY days LOOP
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, day);
    END LOOP;
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   parent, name, lo, hi);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', name, name || '_bound');
    FOREACH day IN ARRAY days LOOP
        EXECUTE format('DROP TABLE %s', day);
    END LOOP;
    RETURN moved;
END;
$$;

-- Migration 1542's span, read from month and day names alike.
CREATE OR REPLACE FUNCTION charges_live_span(OUT since date, OUT until date)
LANGUAGE sql STABLE AS $$
    SELECT min(m), (max(m) + interval '1 month')::date
    FROM (SELECT to_date(substring(c.relname FROM '_([0-9]{4}_[0-9]{2})(_[0-9]{2})?$'),
                         'YYYY_MM') AS m
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = 'charges'::regclass) p
$$;
