-- Provisioning commands (server/integrations/provisioning.py): how far the MQTT publisher
-- has delivered each outbox stream. A stream's cursor moves only after the broker
-- acknowledged (PUBACK) the command and the retained state of every event up to it, so a
-- crash or a broker restart re-publishes from here: at least once, in order per account.
CREATE TABLE provisioning_cursors (
    stream      text PRIMARY KEY,
    seq         bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The publisher reads only provisioning events (rare next to the rest of the outbox).
CREATE INDEX outbox_events_provisioning ON outbox_events (stream, seq)
    WHERE type IN ('account.suspend', 'account.resume', 'account.terminate');
