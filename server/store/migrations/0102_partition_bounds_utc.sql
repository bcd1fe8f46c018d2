-- Month partitions are UTC months, whatever the session's TimeZone: the writers pick the
-- month of a record in UTC, so bounds taken from a session in Europe/Paris (a database
-- or role default) would leave the last hour of each month without a partition.
CREATE OR REPLACE FUNCTION ensure_month_partition(parent regclass, month date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    first date := date_trunc('month', month)::date;
    name text := format('%s_%s', parent::text, to_char(first, 'YYYY_MM'));
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext(name));
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
        name, parent, first::timestamp AT TIME ZONE 'UTC',
        (first + interval '1 month')::timestamp AT TIME ZONE 'UTC');
END;
$$;
