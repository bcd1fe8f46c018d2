-- Bill runs as jobs (server.jobs, like rerate_jobs): a run is queued by whoever asks for it,
-- claimed and run by a worker, and commits batch by batch with its progress and the last
-- account of the batch, so a run interrupted by a crash or a shutdown resumes after its
-- last committed batch. The finalisation asked with the run commits with its end.
ALTER TABLE bill_runs DROP CONSTRAINT bill_runs_state_check;
ALTER TABLE bill_runs ADD CONSTRAINT bill_runs_state_check
    CHECK (state IN ('queued', 'running', 'done', 'failed'));
ALTER TABLE bill_runs ALTER COLUMN state SET DEFAULT 'queued';

ALTER TABLE bill_runs
    ADD COLUMN requested_by    text,
    ADD COLUMN finalize        boolean NOT NULL DEFAULT false,
    ADD COLUMN force           boolean NOT NULL DEFAULT false,
    ADD COLUMN created_at      timestamptz,
    ADD COLUMN accounts_total  integer,
    ADD COLUMN accounts_done   integer NOT NULL DEFAULT 0,
    ADD COLUMN frozen          integer NOT NULL DEFAULT 0,
    -- The last account of the last committed batch: a resumed run starts after it.
    ADD COLUMN resume_account  text,
    ADD COLUMN invoice_ids     bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN finalized       bigint[] NOT NULL DEFAULT '{}',
    -- Drafts left unfinalised because their grace period was not over, and until when.
    ADD COLUMN in_grace        bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN in_grace_until  timestamptz;

-- Runs from before: who asked is in the audit log; they were created when they started.
UPDATE bill_runs b SET requested_by = coalesce(
    (SELECT a.actor FROM audit_log a WHERE a.entity = 'bill_run:' || b.bill_run_id
     AND a.action = 'bill_run.start' ORDER BY a.seq LIMIT 1), 'unknown'),
    created_at = b.started_at;
ALTER TABLE bill_runs
    ALTER COLUMN requested_by SET NOT NULL,
    ALTER COLUMN created_at SET NOT NULL,
    ALTER COLUMN created_at SET DEFAULT now(),
    -- A queued run has not started yet.
    ALTER COLUMN started_at DROP NOT NULL,
    ALTER COLUMN started_at DROP DEFAULT;

CREATE INDEX bill_runs_open ON bill_runs (bill_run_id) WHERE state IN ('queued', 'running');
