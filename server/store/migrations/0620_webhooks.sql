-- Webhooks (issue 17): endpoints subscribed to event types, their signing secrets, one
-- delivery per endpoint × event read from the outbox, and the log of every attempt.
--
-- Outbox consumers keep one cursor per stream (outbox_cursors): the last seq they handled,
-- moved in the transaction that records what they did with the events, so each event is
-- handled once. Committing into a stream notifies 'outbox_events' with the stream's name,
-- so consumers wake at the commit instead of polling every stream's head.

CREATE TABLE outbox_cursors (
    consumer  text NOT NULL,
    stream    text NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (consumer, stream)
);

CREATE FUNCTION outbox_heads_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', NEW.stream);
    RETURN NULL;
END;
$$;
CREATE TRIGGER outbox_heads_notify AFTER INSERT OR UPDATE ON outbox_heads
    FOR EACH ROW EXECUTE FUNCTION outbox_heads_notify();

CREATE TABLE webhook_endpoints (
    endpoint_id      bigserial PRIMARY KEY,
    url              text NOT NULL,
    event_types      text[] NOT NULL,
    description      text NOT NULL DEFAULT '',
    max_concurrency  integer NOT NULL CHECK (max_concurrency >= 1),
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    -- deliveries dead-lettered since the endpoint's last success: at the configured number
    -- the endpoint is disabled (and an event says so)
    dead_in_a_row    integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every secret that has not expired signs each attempt: during a rotation's grace window the
-- old and the new one both do, so a receiver can switch at its own pace.
CREATE TABLE webhook_secrets (
    secret_id    bigserial PRIMARY KEY,
    endpoint_id  bigint NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz
);
CREATE INDEX webhook_secrets_endpoint ON webhook_secrets (endpoint_id);

-- Within one endpoint and stream, deliveries go out in delivery_id order, one at a time:
-- the next waits until the one before is delivered or dead-lettered.
CREATE TABLE webhook_deliveries (
    delivery_id      bigserial PRIMARY KEY,
    endpoint_id      bigint NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    stream           text NOT NULL,
    seq              bigint NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    account_id       text,
    replay           boolean NOT NULL DEFAULT false,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    last_latency_ms  double precision,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, stream, delivery_id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, delivery_id);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (stream, seq);

CREATE TABLE webhook_attempts (
    delivery_id   bigint NOT NULL REFERENCES webhook_deliveries ON DELETE CASCADE,
    attempt       integer NOT NULL,
    endpoint_id   bigint NOT NULL,
    attempted_at  timestamptz NOT NULL,
    status        integer,
    latency_ms    double precision NOT NULL,
    error         text,
    PRIMARY KEY (delivery_id, attempt)
);

-- Replaying one event finds it by its id.
CREATE INDEX outbox_events_event_id ON outbox_events (event_id);
