-- A revoked key is refused at once by every server process, not after its cache entry
-- expires: each process LISTENs on api_key_revoked (server.http.auth) and drops the key
-- named in the payload. A trigger, so that every way of revoking (API, CLI, SQL) tells them.
CREATE FUNCTION api_key_revoked_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('api_key_revoked', NEW.key_id);
    RETURN NULL;
END $$;

CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION api_key_revoked_notify();
