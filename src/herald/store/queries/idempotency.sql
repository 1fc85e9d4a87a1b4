-- name: claim
-- Takes the key for a request, or answers who holds it. A row past retention, or one whose
-- request never finished (the process died) within $5 seconds, is taken over.
-- $1 account, $2 key, $3 request hash, $4 retention seconds, $5 abandoned-after seconds.
INSERT INTO idempotency_keys AS k (account_id, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (account_id, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status_code = NULL, content_type = NULL, body = NULL,
    created_at = now()
WHERE k.created_at < now() - $4::bigint * interval '1 second'
   OR (k.status_code IS NULL AND k.created_at < now() - $5::bigint * interval '1 second')
RETURNING true AS claimed;

-- name: find
SELECT request_hash, status_code, content_type, body FROM idempotency_keys
WHERE account_id = $1 AND key = $2;

-- name: complete
UPDATE idempotency_keys SET status_code = $4, content_type = $5, body = $6
WHERE account_id = $1 AND key = $2 AND request_hash = $3;

-- name: release
DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND request_hash = $3;

-- name: purge
DELETE FROM idempotency_keys WHERE created_at < now() - $1::bigint * interval '1 second';
