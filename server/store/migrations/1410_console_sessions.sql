-- Console sign-ins: an API key exchanged for a session cookie. Only the sha256 of the cookie's
-- random id is stored, so a copy of the table signs nobody in. Each session carries its CSRF
-- token (forms and htmx requests echo it) and its expiry; revoking the key ends its sessions.
CREATE TABLE console_sessions (
    session_sha256  bytea PRIMARY KEY,
    key_id          text NOT NULL REFERENCES api_keys ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
