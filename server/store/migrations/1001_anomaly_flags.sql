-- Anomaly flags (DESIGN.md §10): what a detector found in an account × service's usage or
-- money, with the numbers that explain it. One flag per account × service × metric ×
-- granularity × period: detection run again finds the flag there and adds nothing.
-- The state is the operator's verdict: new → confirmed | dismissed.
CREATE TABLE anomaly_flags (
    flag_id           bigint GENERATED ALWAYS AS IDENTITY,
    account_id        text NOT NULL,
    service           text NOT NULL,
    metric            text NOT NULL CHECK (metric IN ('records', 'amount')),
    granularity       text NOT NULL CHECK (granularity IN ('hour', 'day')),
    period_start      timestamptz NOT NULL,
    observed          numeric NOT NULL,
    baseline          numeric NOT NULL,
    mad               numeric NOT NULL,
    score             double precision NOT NULL,
    direction         text NOT NULL CHECK (direction IN ('spike', 'drop')),
    method            text NOT NULL,
    explanation       text NOT NULL,
    state             text NOT NULL DEFAULT 'new'
                      CHECK (state IN ('new', 'confirmed', 'dismissed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    state_changed_at  timestamptz,
    state_changed_by  text,
    PRIMARY KEY (account_id, flag_id),
    UNIQUE (account_id, service, metric, granularity, period_start)
);
CREATE UNIQUE INDEX anomaly_flags_id ON anomaly_flags (flag_id);
CREATE INDEX anomaly_flags_state ON anomaly_flags (state, flag_id);
