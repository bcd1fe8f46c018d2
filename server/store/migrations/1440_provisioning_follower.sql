-- The MQTT provisioning publisher follows the outbox like the other consumers: the consumer
-- 'provisioning' of outbox_cursors (server/integrations/cursors.py) instead of its own
-- cursor table and poll. Its position moves over: each stream's cursor is put just before
-- the first provisioning event it had not delivered (nothing undelivered is skipped, nothing
-- delivered goes out again), or at the stream's head when none waits, so the follower does
-- not read the outbox's history again.
INSERT INTO outbox_cursors (consumer, stream, seq)
SELECT 'provisioning', h.stream,
       coalesce((SELECT min(e.seq) - 1 FROM outbox_events e
                 WHERE e.stream = h.stream AND e.seq > coalesce(c.seq, 0)
                   AND e.type IN ('account.suspend', 'account.resume', 'account.terminate')
                   AND e.account_id IS NOT NULL), h.seq)
FROM outbox_heads h LEFT JOIN provisioning_cursors c ON c.stream = h.stream
ON CONFLICT (consumer, stream) DO NOTHING;

DROP TABLE provisioning_cursors;
-- The follower reads streams by (stream, seq), the primary key.
DROP INDEX outbox_events_provisioning;
