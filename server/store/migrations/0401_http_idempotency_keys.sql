-- The body each HTTP Idempotency-Key was first sent with (its SHA-256), bound before anything
-- of the request is stored, so the same key with another body is refused instead of answered
-- with the first body's outcome while the new body is silently dropped.
CREATE TABLE http_idempotency_keys (
    source           text NOT NULL,
    idempotency_key  text NOT NULL,
    body_sha256      text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, idempotency_key)
);
