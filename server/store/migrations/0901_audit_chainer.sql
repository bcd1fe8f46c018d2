-- Audit writes stop serialising on one row. A writer only INSERTs its entry (seq from a
-- sequence, visible with its change at commit); a chainer (server.store.audit.chain_pending,
-- run by serve every second and before every verification or checkpoint) gives committed
-- entries their position in the chain (pos, gapless) and their prev_hash/hash, holding the
-- audit_head lock only for that short update. Rows already chained keep pos = seq.
ALTER TABLE audit_log
    ALTER COLUMN prev_hash DROP NOT NULL,
    ALTER COLUMN hash DROP NOT NULL,
    ADD COLUMN pos bigint;

ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only;
UPDATE audit_log SET pos = seq;
ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only;

ALTER TABLE audit_log ADD CONSTRAINT audit_log_chained
    CHECK ((pos IS NULL) = (hash IS NULL) AND (pos IS NULL) = (prev_hash IS NULL));
CREATE UNIQUE INDEX audit_log_pos ON audit_log (pos);
CREATE INDEX audit_log_unchained ON audit_log (seq) WHERE pos IS NULL;

CREATE SEQUENCE audit_log_seq AS bigint OWNED BY audit_log.seq;
SELECT setval('audit_log_seq', coalesce(max(seq), 0) + 1, false) FROM audit_log;
ALTER TABLE audit_log ALTER COLUMN seq SET DEFAULT nextval('audit_log_seq');

-- audit_head.seq is now the position of the last chained row.
-- Still append-only, except the one update that chains a row: from unchained to chained,
-- every other column as it was.
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.pos IS NULL AND NEW.pos IS NOT NULL
       AND (NEW.seq, NEW.at, NEW.actor, NEW.action, NEW.entity, NEW.before, NEW.after)
           IS NOT DISTINCT FROM
           (OLD.seq, OLD.at, OLD.actor, OLD.action, OLD.entity, OLD.before, OLD.after) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
