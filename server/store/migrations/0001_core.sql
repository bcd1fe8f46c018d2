-- Core tables (DESIGN.md §4). Tables that grow with traffic carry account_id in their keys
-- so they can later be distributed by account; usage and charges are partitioned by month.

CREATE TABLE accounts (
    account_id   text PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'active'
                 CHECK (status IN ('active', 'suspended', 'closed')),
    currency     char(3) NOT NULL DEFAULT 'EUR',
    timezone     text NOT NULL DEFAULT 'UTC',
    billing_day  smallint NOT NULL DEFAULT 1 CHECK (billing_day BETWEEN 1 AND 28),
    attrs        jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- MSISDN, IMSI, meter id...: each identifies at most one account.
CREATE TABLE account_identifiers (
    identifier  text PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts,
    kind        text NOT NULL DEFAULT 'msisdn'
);
CREATE INDEX account_identifiers_account ON account_identifiers (account_id);

CREATE TABLE tariffs (
    tariff_id    text PRIMARY KEY,
    currency     char(3) NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- A published version is never edited: corrections are new versions.
CREATE TABLE tariff_versions (
    tariff_version_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tariff_id          text NOT NULL REFERENCES tariffs,
    effective_from     timestamptz NOT NULL,
    definition         jsonb NOT NULL,
    sha256             text NOT NULL,
    published_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tariff_id, effective_from)
);

CREATE TABLE subscriptions (
    account_id       text NOT NULL REFERENCES accounts,
    subscription_id  bigint GENERATED ALWAYS AS IDENTITY,
    tariff_id        text NOT NULL REFERENCES tariffs,
    product          text NOT NULL DEFAULT '',
    valid_from       timestamptz NOT NULL,
    valid_to         timestamptz,
    attrs            jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (account_id, subscription_id),
    CHECK (valid_to IS NULL OR valid_to > valid_from)
);

-- The ledger of received files: one row per distinct content per source.
CREATE TABLE source_files (
    source_file_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source            text NOT NULL,
    name              text NOT NULL,
    partner           text,
    format            text NOT NULL,
    sequence_no       bigint,
    size_bytes        bigint,
    sha256            text NOT NULL,
    state             text NOT NULL DEFAULT 'claimed'
                      CHECK (state IN ('claimed', 'done', 'error')),
    count_in          bigint NOT NULL DEFAULT 0,
    count_charged     bigint NOT NULL DEFAULT 0,
    count_suspense    bigint NOT NULL DEFAULT 0,
    count_duplicates  bigint NOT NULL DEFAULT 0,
    count_filtered    bigint NOT NULL DEFAULT 0,
    count_pending     bigint NOT NULL DEFAULT 0,
    error             text,
    received_at       timestamptz NOT NULL DEFAULT now(),
    completed_at      timestamptz,
    UNIQUE (source, sha256)
);
CREATE INDEX source_files_sequence ON source_files (source, sequence_no);

-- Committed positions of message sources (MQTT message, HTTP idempotency key): a replay
-- finds its position here and changes nothing; `result` is what the first delivery answered.
CREATE TABLE source_offsets (
    source        text NOT NULL,
    position      text NOT NULL,
    result        jsonb,
    committed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, position)
);

-- Dedupe: unique (source, record_key) across all monthly partitions of usage_records
-- (a unique index on a partitioned table would have to include the partition key).
CREATE TABLE usage_keys (
    source      text NOT NULL,
    record_key  text NOT NULL,
    account_id  text,
    event_time  timestamptz NOT NULL,
    PRIMARY KEY (source, record_key)
);

CREATE SEQUENCE usage_id_seq AS bigint CACHE 1000;
CREATE SEQUENCE charge_id_seq AS bigint CACHE 1000;

CREATE TABLE usage_records (
    account_id      text NOT NULL,
    usage_id        bigint NOT NULL,
    event_time      timestamptz NOT NULL,
    source          text NOT NULL,
    record_key      text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('voice', 'sms', 'data', 'event')),
    duration_s      bigint,
    volume_up       bigint,
    volume_down     bigint,
    quantity        numeric,
    unit            text,
    calling         text,
    called          text,
    imsi            text,
    msisdn          text,
    charge          numeric,
    partial_seq     integer,
    attrs           jsonb NOT NULL DEFAULT '{}',
    source_file_id  bigint,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, event_time, usage_id)
) PARTITION BY RANGE (event_time);

-- Append-only: a correction is a reversal row plus a new charge row, never an UPDATE.
CREATE TABLE charges (
    account_id          text NOT NULL,
    charge_id           bigint NOT NULL,
    event_time          timestamptz NOT NULL,
    usage_id            bigint,
    kind                text NOT NULL CHECK (kind IN ('charge', 'reversal')),
    amount_micros       bigint NOT NULL,
    currency            char(3) NOT NULL,
    tariff_version_id   bigint,
    zone                text,
    band                text,
    reverses_charge_id  bigint,
    rerate_job_id       bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, event_time, charge_id)
) PARTITION BY RANGE (event_time);
CREATE INDEX charges_usage ON charges (account_id, usage_id);

-- Records that could not be charged, with their raw form and why. Never deleted: a retry or
-- a discard changes `state` and records the resolution.
CREATE TABLE suspense (
    suspense_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source           text NOT NULL,
    record_key       text,
    account_id       text,
    reason           text NOT NULL,
    detail           text NOT NULL DEFAULT '',
    record           jsonb,
    raw              bytea,
    source_file_id   bigint,
    source_position  text,
    state            text NOT NULL DEFAULT 'open'
                     CHECK (state IN ('open', 'retried', 'discarded')),
    resolution       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz
);
CREATE INDEX suspense_open ON suspense (reason, created_at) WHERE state = 'open';

-- Monthly partitions are created on demand, under a lock so concurrent workers can race.
CREATE FUNCTION ensure_month_partition(parent regclass, month date) RETURNS void
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
        name, parent, first, (first + interval '1 month')::date);
END;
$$;
