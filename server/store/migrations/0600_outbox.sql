-- The outbox (DESIGN.md §8): domain events written in the transaction of the change that
-- caused them; everything that reaches outside (webhooks, provisioning commands) is
-- delivered from here, at least once, in order per stream.
--
-- A stream is an account ("acct:<id>") or, for events about no account, the object they
-- are about ("source:<name>", "partner:<tadig>", "control:<name>"). Each stream numbers its
-- events without gaps: emitting upserts the stream's head row, whose lock orders the
-- transactions that emit into one stream, so a consumer that sees seq n+2 but not n+1 knows
-- n+1 is still committing and waits. Streams are keyed like the traffic tables (the account
-- first), so the outbox distributes with them (DESIGN.md §7).

CREATE TABLE outbox_heads (
    stream  text PRIMARY KEY,
    seq     bigint NOT NULL
);

CREATE TABLE outbox_events (
    stream       text NOT NULL,
    seq          bigint NOT NULL,
    event_id     text NOT NULL,
    type         text NOT NULL,
    version      integer NOT NULL,
    account_id   text,
    payload      jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, seq)
);
CREATE INDEX outbox_events_time ON outbox_events (occurred_at);
CREATE INDEX outbox_events_type ON outbox_events (type, occurred_at);

CREATE FUNCTION outbox_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'outbox events are append-only' USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER outbox_events_immutable BEFORE UPDATE ON outbox_events
    FOR EACH ROW EXECUTE FUNCTION outbox_events_append_only();
