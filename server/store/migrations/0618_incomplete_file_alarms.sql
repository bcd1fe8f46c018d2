-- A remote file that stays incomplete (its header declares more than has arrived, no marker,
-- a size still changing) past the source's limit raises an 'incomplete' alarm in the ledger.
ALTER TABLE source_file_alarms DROP CONSTRAINT source_file_alarms_kind_check;
ALTER TABLE source_file_alarms ADD CONSTRAINT source_file_alarms_kind_check
    CHECK (kind IN ('gap', 'repeat', 'reused', 'incomplete'));
