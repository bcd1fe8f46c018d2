-- The rollups are written by whoever writes the charges, in the same transaction
-- (server/store/charge_writes.py): file ingest computes the deltas on its CPU stage from the
-- batch it rates and sends them by one COPY per level; a rerate from the usage rows it reads.
-- The statement trigger goes: on Citus it fired on each shard and rebuilt its statement
-- with the co-located shards' names (issue #21: nothing relies on triggers on distributed
-- tables), and everywhere it probed every charge's usage row by key and appended about one
-- delta row per charge (issue #24).
--
-- DROP TRIGGER on a distributed table drops it on its shards too; Citus sends the statement's
-- text to the workers, and refuses a text holding several statements, as a migration file
-- does: each runs here on its own, from PL/pgSQL. The function is distributed too, and Citus
-- drops one over a single connection per node only: the trigger's drop goes the same way
-- (the setting is a mere placeholder on one PostgreSQL, where both are the plain DDL).
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';
DO $$
BEGIN
    DROP TRIGGER IF EXISTS charges_roll_up ON charges;
    DROP FUNCTION IF EXISTS roll_up_charges();
END;
$$;
