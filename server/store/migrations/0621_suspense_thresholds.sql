-- Open suspense per source against the configured threshold (pipeline.suspense_alarm_records):
-- a source is marked when its count goes over, and the event suspense.threshold_crossed
-- commits with the mark; the mark clears once the count is back under, so the next crossing
-- is told again.
CREATE TABLE suspense_thresholds (
    source         text PRIMARY KEY,
    over           boolean NOT NULL,
    open_records   bigint NOT NULL,
    threshold      bigint NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now()
);
