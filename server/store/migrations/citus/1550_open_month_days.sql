-- Migration 1550 as a Citus coordinator runs it (server/store/migrate.py): month tables
-- stay month tables. The layout of days for the open month is one level, as Citus needs,
-- but folding a month means detaching and attaching distributed partitions under the
-- parent's lock on every worker; it is not measured there, so the functions exist (the
-- housekeeping calls them) and change nothing.
CREATE FUNCTION split_month_partition(parent regclass, month date) RETURNS boolean
LANGUAGE sql AS $$ SELECT false $$;

CREATE FUNCTION fold_month_partition(parent regclass, month date) RETURNS bigint
LANGUAGE sql AS $$ SELECT NULL::bigint $$;

CREATE FUNCTION hold_month_for_writes(month date) RETURNS void
LANGUAGE sql AS $$ SELECT $$;
