-- Customer keys: a `customer` key is scoped to one account and sees only that account.
-- The key names its account; no other role carries one (operator keys see every account).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role_check;
ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_role_check
        CHECK (role IN ('admin', 'operator', 'viewer', 'ingest', 'customer')),
    ADD COLUMN account_id text REFERENCES accounts (account_id),
    ADD CONSTRAINT api_keys_customer_account
        CHECK ((role = 'customer') = (account_id IS NOT NULL));
CREATE INDEX api_keys_account ON api_keys (account_id) WHERE account_id IS NOT NULL;
