-- Revenue assurance (server/assurance): each run of the controls, and per control its
-- outcome, the money at stake per currency and the evidence. Results are append-only; a
-- run's results are also chained into the audit log.
CREATE TABLE assurance_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    as_of        timestamptz NOT NULL,
    trigger      text NOT NULL CHECK (trigger IN ('cli', 'api', 'schedule')),
    actor        text NOT NULL,
    controls     integer NOT NULL,
    failed       integer NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    audit_seq    bigint
);

CREATE TABLE assurance_results (
    run_id          bigint NOT NULL REFERENCES assurance_runs,
    control         text NOT NULL,
    version         integer NOT NULL,
    family          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pass', 'fail', 'error')),
    checked         bigint,
    offending       bigint NOT NULL,
    unpriced        bigint NOT NULL,
    at_stake        jsonb NOT NULL,      -- {"EUR": "12.34"}: decimal strings, never floats
    evidence        jsonb NOT NULL,      -- up to evidence_limit offenders
    evidence_query  text NOT NULL,       -- runs as is in psql: lists every offender
    error           text,
    duration_ms     integer NOT NULL,
    PRIMARY KEY (run_id, control)
);
CREATE INDEX assurance_results_failed ON assurance_results (control, run_id)
    WHERE status <> 'pass';

CREATE TRIGGER assurance_runs_immutable BEFORE UPDATE OR DELETE ON assurance_runs
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER assurance_results_immutable BEFORE UPDATE OR DELETE ON assurance_results
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
