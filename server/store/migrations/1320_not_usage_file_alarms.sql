-- A file an SFTP usage source leaves to another module (a RAP file among TAP files) stays
-- where it is and is named once in the ledger as a 'not_usage' alarm.
ALTER TABLE source_file_alarms DROP CONSTRAINT source_file_alarms_kind_check;
ALTER TABLE source_file_alarms ADD CONSTRAINT source_file_alarms_kind_check
    CHECK (kind IN ('gap', 'repeat', 'reused', 'incomplete', 'not_usage'));
