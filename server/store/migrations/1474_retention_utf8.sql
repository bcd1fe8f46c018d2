-- A number's UTF-8 bytes, for the pseudonym's HMAC (server/retention/repo.py). convert_to is
-- STABLE (encoding conversions may be redefined), and Citus refuses a function that is not
-- IMMUTABLE inside the CASE of an UPDATE it sends to every shard; the UTF-8 encoding of a
-- text never changes, so this wrapper says IMMUTABLE. A plain SQL function: PostgreSQL
-- inlines it, so one server computes the same thing at the same cost as before.
CREATE FUNCTION retention_utf8(value text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT convert_to(value, 'UTF8') $$;
