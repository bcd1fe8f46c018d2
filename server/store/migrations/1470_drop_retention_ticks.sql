-- Retention's housekeeping is a clock task of server.scheduled (its row in scheduled_ticks):
-- its own once-per-tick record is no longer read.
DROP TABLE IF EXISTS retention_ticks;
