-- Mediation pipeline: ids assigned by the database, file checkpoints, partial records and
-- the catalog generation the rater cache follows.

-- A claimed record key reserves its usage id, whether the record was charged or suspended:
-- a suspense retry then charges it under the same id, and a replay finds the key taken.
ALTER TABLE usage_keys ADD COLUMN usage_id bigint NOT NULL DEFAULT nextval('usage_id_seq');
ALTER TABLE usage_records ALTER COLUMN usage_id SET DEFAULT nextval('usage_id_seq');
ALTER TABLE charges ALTER COLUMN charge_id SET DEFAULT nextval('charge_id_seq');

-- Files are committed batch by batch: `committed_records` is how many items (records and
-- rejects, in file order) are committed, so a crashed ingest resumes exactly there.
-- `totals` maps currency to the micro-units charged from this file (decimal strings).
ALTER TABLE source_files
    ADD COLUMN committed_records bigint NOT NULL DEFAULT 0,
    ADD COLUMN totals jsonb NOT NULL DEFAULT '{}';

-- 3GPP partial records (same charging id, recordSequenceNumber 1..n) wait here until every
-- part has arrived; they are then rated as one usage and marked merged (a late copy of a
-- merged part is a duplicate). Parts still open after the timeout go to suspense.
CREATE TABLE partial_records (
    source          text NOT NULL,
    group_key       text NOT NULL,
    partial_seq     integer NOT NULL,
    is_last         boolean NOT NULL,
    record          jsonb NOT NULL,
    source_file_id  bigint,
    source_position text,
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'merged', 'expired')),
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, group_key, partial_seq)
);
CREATE INDEX partial_records_open ON partial_records (received_at) WHERE state = 'open';

CREATE INDEX suspense_state ON suspense (state, suspense_id);

-- Bumped by any change to what rating reads; a worker rebuilds its rater when it moves.
-- Listeners also get NOTIFY billing_catalog with the new generation.
CREATE TABLE catalog_generation (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation  bigint NOT NULL
);
INSERT INTO catalog_generation VALUES (true, 1);

CREATE FUNCTION bump_catalog_generation() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE catalog_generation SET generation = generation + 1 RETURNING generation INTO next;
    PERFORM pg_notify('billing_catalog', next::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER catalog_changed_tariffs AFTER INSERT OR UPDATE OR DELETE ON tariffs
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation();
CREATE TRIGGER catalog_changed_versions AFTER INSERT OR UPDATE OR DELETE ON tariff_versions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation();
CREATE TRIGGER catalog_changed_accounts AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation();
CREATE TRIGGER catalog_changed_identifiers AFTER INSERT OR UPDATE OR DELETE ON account_identifiers
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation();
CREATE TRIGGER catalog_changed_subscriptions AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_generation();
