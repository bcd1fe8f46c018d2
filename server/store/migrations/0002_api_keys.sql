-- API keys: only a sha256 of the 256-bit secret is stored; the token is shown once at creation.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    secret_sha256 bytea NOT NULL,
    role         text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'ingest')),
    name         text NOT NULL DEFAULT '',
    -- For ingest keys: the source name their usage is recorded under.
    source       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
