-- A dunning run writes a step for each overdue invoice it just read from the ledger; the
-- foreign key to ledger_entries checked each row again and locked its invoice's entry
-- (FOR KEY SHARE), two thirds of writing a first run's hundreds of thousands of steps.
-- Ledger entries are never deleted or changed (ledger_entries_immutable), so a step's
-- entry cannot go away: the key guarded nothing the run does not already ensure.
ALTER TABLE dunning_events DROP CONSTRAINT dunning_events_account_id_entry_id_fkey;
