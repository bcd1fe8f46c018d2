-- Assurance runs asked for over HTTP (POST /v1/assurance/runs) wait here until the
-- background worker runs them. A job's id is the id its run will have: it is drawn from
-- the run ids' own sequence, and the run is stored under it, so the id the API answers
-- with shows the job's progress first and the run's results once it is done.
CREATE TABLE assurance_jobs (
    assurance_job_id  bigint PRIMARY KEY
                      DEFAULT nextval(pg_get_serial_sequence('assurance_runs', 'run_id')),
    state             text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'done', 'failed')),
    requested_by      text NOT NULL,
    controls          text[],       -- control or family names; NULL: all
    as_of             timestamptz,  -- NULL: the moment the job starts
    controls_total    integer NOT NULL,
    controls_done     integer NOT NULL DEFAULT 0,
    error             text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz
);
