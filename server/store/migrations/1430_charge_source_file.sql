-- The file an original charge was ingested from (source_files), written by the ingest writer
-- in the same COPY as the charge and its usage record: conservation.file_totals sums charges
-- by it, instead of joining every charge to its usage record to find the file. NULL for usage
-- that came by MQTT or HTTP, and for a rerate's reversals and new charges (the control sums
-- original charges only).
ALTER TABLE charges ADD COLUMN source_file_id bigint;

-- Original charges stored before: their usage record's file. One pass over the charges (on
-- Citus a co-located join on account_id, run on every shard).
UPDATE charges c SET source_file_id = u.source_file_id
FROM usage_records u
WHERE u.account_id = c.account_id AND u.event_time = c.event_time AND u.usage_id = c.usage_id
  AND u.source_file_id IS NOT NULL AND c.kind = 'charge' AND c.rerate_job_id IS NULL;
