-- The rollup trigger looks each charge's usage up by its key. With some statistics (a partition
-- freshly analysed, PostgreSQL 18's costing) the planner still preferred reading the whole
-- month's usage partition once per statement, the cost that grows as the month fills. Inside
-- the trigger only, sequential scans are priced out, so the lookup always goes through the key.
ALTER FUNCTION roll_up_charges() SET enable_seqscan = off;
