-- ``GET /v1/charges/totals?account_id=`` with no period reads the account's monthly rollup
-- rows (traffic_repo.totals): charge_rollups_monthly_kept_day leads with the month, so that
-- read walked every account's index entries of the months kept (97 ms with 100 k accounts,
-- 0.25 ms by this index), as charge_rollups did before migration 1411. Only the folded rows'
-- partition takes it: the deltas keep their one index on the day (migration 1511), which
-- the account's deltas not yet folded, about a minute of traffic, are read through.
CREATE INDEX charge_rollups_monthly_kept_account ON charge_rollups_monthly_kept (account_id, day);
