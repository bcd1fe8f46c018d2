-- Rerate jobs: rate an account's (or everyone's) usage of a period again under the current
-- catalog. A job only ever adds rows to `charges` (a reversal of the active charge and a new
-- charge, both tagged with the job) and commits chunk by chunk with its own progress, so a
-- restarted job resumes after the last committed usage and never rerates it twice.
CREATE TABLE rerate_jobs (
    rerate_job_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL CHECK (period_end > period_start),
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'failed')),
    requested_by    text NOT NULL,
    usage_total     bigint,
    usage_done      bigint NOT NULL DEFAULT 0,
    usage_changed   bigint NOT NULL DEFAULT 0,
    usage_failed    bigint NOT NULL DEFAULT 0,
    -- Key of the last usage committed: (event_time, usage_id).
    resume_time     timestamptz,
    resume_usage_id bigint,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX rerate_jobs_queued ON rerate_jobs (rerate_job_id) WHERE state IN ('queued', 'running');

-- Per account and currency: what the job's usage was charged before and after.
CREATE TABLE rerate_job_accounts (
    rerate_job_id   bigint NOT NULL REFERENCES rerate_jobs,
    account_id      text NOT NULL,
    currency        char(3) NOT NULL,
    usage_count     bigint NOT NULL DEFAULT 0,
    usage_changed   bigint NOT NULL DEFAULT 0,
    before_micros   numeric NOT NULL DEFAULT 0,
    after_micros    numeric NOT NULL DEFAULT 0,
    PRIMARY KEY (rerate_job_id, account_id, currency)
);
