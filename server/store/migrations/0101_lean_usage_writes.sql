-- What the write path costs PostgreSQL per record, trimmed (measured with perf/bench_ingest.py):
--
-- usage_records.attrs is json, not jsonb: it is written once per record and only ever read
-- whole (attrs::text), and building a jsonb costs the server about as much as an index
-- insert, where json only checks the syntax.
ALTER TABLE usage_records ALTER COLUMN attrs TYPE json USING attrs::json;
ALTER TABLE usage_records ALTER COLUMN attrs SET DEFAULT '{}';

-- A charge is found from its usage through the primary key (account_id, event_time, ...):
-- a charge and its reversals carry their usage's event time. The second index on
-- (account_id, usage_id) cost one more b-tree insert per charge for no reader.
DROP INDEX charges_usage;
