-- Idempotency-Key on the API's POSTs: the first request's successful answer, replayed to a
-- retry of the same request under the same key within the retention.
CREATE TABLE idempotency_keys (
    account_id      text NOT NULL,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    status_code     integer,          -- NULL while the first request runs
    content_type    text,
    body            bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
