-- Pricing simulations (server.simulation): what was asked and the result, the only rows a
-- simulation writes. It reads every billing table in one read-only snapshot and changes none.
CREATE TABLE simulations (
    simulation_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    state          text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued', 'running', 'done', 'failed')),
    requested_by   text NOT NULL,
    request        jsonb NOT NULL,  -- periods, account filter, thresholds, candidate catalog
    result         jsonb,           -- the deterministic report (manifest included)
    run            jsonb,           -- snapshot time and timings of the run that made it
    error          text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz
);
