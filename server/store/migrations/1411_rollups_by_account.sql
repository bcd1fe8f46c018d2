-- The console's account page charts an account's daily usage from the rollups: without an
-- index led by the account, that read scanned every account's rows of the 90 days
-- (charge_rollups_day leads with the day).
CREATE INDEX charge_rollups_account ON charge_rollups (account_id, day);
