-- The outbox distributes with the traffic (DESIGN.md §7, §8): on Citus its heads and events
-- are distributed by account_id, co-located with usage, so an account's event is written on
-- the shard its change was. A distributed table cannot hold NULL in that column, so an event
-- about no account (streams "source:…", "partner:…", "control:…", "webhook:…") is stored
-- under the reserved account '' (no account has an empty id): those streams share one
-- shard, which is fine for events that come per file, partner or control, not per record.
-- The repository reads '' back as no account.
--
-- The head row's lock still orders one stream's emitters (the stream lives on one shard).
-- The NOTIFY that wakes the consumers moves from the heads' trigger into the emitting
-- transaction (server/integrations/repo.py): on Citus a trigger on a distributed table
-- fires on a worker, while the servers LISTEN on the coordinator.

DROP TRIGGER outbox_heads_notify ON outbox_heads;
DROP FUNCTION outbox_heads_notify();

ALTER TABLE outbox_heads ADD COLUMN account_id text NOT NULL DEFAULT '';
UPDATE outbox_heads SET account_id = substr(stream, 6) WHERE stream LIKE 'acct:%';
ALTER TABLE outbox_heads DROP CONSTRAINT outbox_heads_pkey;
ALTER TABLE outbox_heads ADD PRIMARY KEY (account_id, stream);

ALTER TABLE outbox_events DISABLE TRIGGER outbox_events_immutable;
UPDATE outbox_events SET account_id = '' WHERE account_id IS NULL;
ALTER TABLE outbox_events ENABLE TRIGGER outbox_events_immutable;
ALTER TABLE outbox_events ALTER COLUMN account_id SET DEFAULT '';
ALTER TABLE outbox_events ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_pkey;
ALTER TABLE outbox_events ADD PRIMARY KEY (account_id, stream, seq);
DROP INDEX outbox_events_provisioning;
CREATE INDEX outbox_events_provisioning ON outbox_events (account_id, stream, seq)
    WHERE type IN ('account.suspend', 'account.resume', 'account.terminate');
