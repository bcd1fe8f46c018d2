-- Years of data (DESIGN.md §7): month partitions of usage_records and charges archived to
-- files and dropped once nothing needs them, and the policy the server applies.

-- The retention policy in force, written by the server from [retention] at each tick, so a
-- control that runs anywhere checks the period the server actually applies.
CREATE TABLE retention_policy (
    singleton                boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    pseudonymise_after_days  integer NOT NULL,
    archive_after_months     integer NOT NULL,
    updated_at               timestamptz NOT NULL DEFAULT now()
);

-- The last housekeeping tick done: several processes share one tick (advisory lock + this).
CREATE TABLE retention_ticks (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    tick       bigint NOT NULL,
    done_at    timestamptz NOT NULL
);

-- One row per archived UTC month; the files and the manifest live in `directory`.
CREATE TABLE retention_archives (
    archive_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    month            date NOT NULL CHECK (extract(day FROM month) = 1),
    directory        text NOT NULL,
    manifest_sha256  text NOT NULL,
    manifest         jsonb NOT NULL,
    state            text NOT NULL CHECK (state IN ('dropped', 'restored')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    restored_at      timestamptz
);
-- A month can be archived more than once: usage that arrives late for an archived month
-- makes its partition again, and a later run archives that into a directory of its own.
CREATE INDEX retention_archives_month ON retention_archives (month);

-- Per archived partition: what the file holds and what the database dropped, counted in the
-- transaction that dropped it (the control compares the two, and the file's sha256).
CREATE TABLE retention_archive_tables (
    archive_id    bigint NOT NULL REFERENCES retention_archives,
    table_name    text NOT NULL,
    partition     text NOT NULL,
    file          text NOT NULL,
    rows          bigint NOT NULL,
    sha256        text NOT NULL,
    dropped_rows  bigint NOT NULL,
    PRIMARY KEY (archive_id, table_name)
);

-- Source files with usage in an archived month: their ingest totals are no longer all in
-- the database (conservation.file_totals leaves them to the archive's manifest).
CREATE TABLE retention_archived_files (
    source_file_id  bigint NOT NULL,
    month           date NOT NULL,
    PRIMARY KEY (source_file_id, month)
);

-- When an open suspense record happened: its record's event_time when it reads as a time,
-- else when it was suspended (a malformed time must not stop the archive from planning).
CREATE FUNCTION retention_suspense_time(record jsonb, created_at timestamptz)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN coalesce((record->>'event_time')::timestamptz, created_at);
EXCEPTION WHEN others THEN
    RETURN created_at;
END;
$$;
