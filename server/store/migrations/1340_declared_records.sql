-- How many records a file's own header declares (32.297 header CDR count, TAP3 audit
-- CallEventDetailsCount); NULL for formats that declare nothing (CSV, JSON lines).
-- collection.record_counts compares it with the records the file delivered.
ALTER TABLE source_files ADD COLUMN declared_records bigint;
