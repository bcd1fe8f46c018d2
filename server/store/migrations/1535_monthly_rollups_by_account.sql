-- ``GET /v1/charges/totals?account_id=`` with no period reads the account's monthly rollup
-- rows (traffic_repo.totals): charge_rollups_monthly_day leads with the month, so that read
-- walked every account's index entries of the months kept (97 ms with 100 k accounts, 0.25
-- ms by this index), as charge_rollups did before migration 1411.
CREATE INDEX charge_rollups_monthly_account ON charge_rollups_monthly (account_id, day);
