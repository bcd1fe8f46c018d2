-- Collection adapters: meter readings (usage is the difference between readings) and
-- alarms about received files' sequence numbers.

-- Every accepted reading of a cumulative meter, so a reading's usage can be recomputed from
-- its predecessor whenever the message carrying it is delivered again.
CREATE TABLE meter_readings (
    source       text NOT NULL,
    meter        text NOT NULL,
    ts           timestamptz NOT NULL,
    reading      numeric NOT NULL,
    unit         text NOT NULL,
    serial       text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, meter, ts)
);

-- Sequence problems seen when a file arrives: a gap (numbers skipped), a repeat (the same
-- content again) or a reused number (same number, different content).
CREATE TABLE source_file_alarms (
    alarm_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('gap', 'repeat', 'reused')),
    name            text NOT NULL,
    sequence_no     bigint,
    first_missing   bigint,
    last_missing    bigint,
    source_file_id  bigint,
    detail          text NOT NULL DEFAULT '',
    raised_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX source_file_alarms_source ON source_file_alarms (source, raised_at);
