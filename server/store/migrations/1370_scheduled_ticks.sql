-- Work that serve runs on a clock (controls and checkpoints): when each task last ran, so
-- that among several worker processes one runs it per interval (server.scheduled).
CREATE TABLE scheduled_ticks (
    task     text PRIMARY KEY,
    last_at  timestamptz NOT NULL  -- the last run's end, or the first start when none ran
);
