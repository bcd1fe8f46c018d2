-- Account resolution apart from tariff compilation. `catalog_generation` now moves only with
-- the tariffs (what the rating kernel compiles: prefix tables, bands, rates). Identifiers and
-- subscriptions (what account resolution reads) move `account_generation` instead, and each
-- statement notes which accounts it touched in `account_changes` (one row per account, the
-- generation of its latest change), so a worker reloads just those accounts and keeps its
-- compiled tariffs. Rating reads nothing of `accounts` itself: its changes only notify.
-- Writers of one kind still serialise on their counter's row, so generations are handed out
-- in commit order: a reader that saw generation G has seen every change up to G.
-- Both kinds still NOTIFY billing_catalog (the HTTP account cache listens to it).

DROP TRIGGER catalog_changed_accounts ON accounts;
DROP TRIGGER catalog_changed_identifiers ON account_identifiers;
DROP TRIGGER catalog_changed_subscriptions ON subscriptions;

CREATE TABLE account_generation (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    generation  bigint NOT NULL
);
INSERT INTO account_generation VALUES (true, 1);

CREATE TABLE account_changes (
    account_id  text PRIMARY KEY,
    generation  bigint NOT NULL
);
CREATE INDEX account_changes_generation ON account_changes (generation);

-- Transition tables need one trigger per event; this function serves all three.
CREATE FUNCTION note_account_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    next bigint;
BEGIN
    UPDATE account_generation SET generation = generation + 1 RETURNING generation INTO next;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO account_changes SELECT DISTINCT account_id, next FROM new_rows
            ON CONFLICT (account_id) DO UPDATE SET generation = EXCLUDED.generation;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO account_changes SELECT DISTINCT account_id, next FROM old_rows
            ON CONFLICT (account_id) DO UPDATE SET generation = EXCLUDED.generation;
    ELSE
        INSERT INTO account_changes
            SELECT account_id, next FROM new_rows UNION SELECT account_id, next FROM old_rows
            ON CONFLICT (account_id) DO UPDATE SET generation = EXCLUDED.generation;
    END IF;
    PERFORM pg_notify('billing_catalog', 'accounts ' || next);
    RETURN NULL;
END;
$$;

CREATE FUNCTION notify_account_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('billing_catalog', 'accounts');
    RETURN NULL;
END;
$$;

CREATE TRIGGER accounts_changed AFTER INSERT OR UPDATE OR DELETE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION notify_account_change();

CREATE TRIGGER identifiers_inserted AFTER INSERT ON account_identifiers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_account_changes();
CREATE TRIGGER identifiers_updated AFTER UPDATE ON account_identifiers
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_account_changes();
CREATE TRIGGER identifiers_deleted AFTER DELETE ON account_identifiers
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_account_changes();

CREATE TRIGGER subscriptions_inserted AFTER INSERT ON subscriptions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_account_changes();
CREATE TRIGGER subscriptions_updated AFTER UPDATE ON subscriptions
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_account_changes();
CREATE TRIGGER subscriptions_deleted AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_account_changes();
