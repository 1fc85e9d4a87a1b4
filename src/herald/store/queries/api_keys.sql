-- name: account_for_key
SELECT account_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL;

-- name: is_admin
SELECT coalesce(bool_or(admin), false) FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL;

-- name: ensure_account
-- Creates the account when missing and leaves an existing one (and its rate) alone.
INSERT INTO accounts (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING;

-- name: insert
-- $1 account, $2 name, $3 sha256 of the key, $4 prefix, $5 admin. A known hash inserts
-- nothing.
INSERT INTO api_keys (account_id, name, key_hash, prefix, admin) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key_hash) DO NOTHING
RETURNING id, account_id, name, prefix, admin, created_at, revoked_at;

-- name: list
SELECT id, account_id, name, prefix, admin, created_at, revoked_at FROM api_keys
WHERE account_id = $1 ORDER BY created_at, id;

-- name: revoke
UPDATE api_keys SET revoked_at = now()
WHERE account_id = $1 AND id = $2 AND revoked_at IS NULL
RETURNING id;

-- name: lock_account
-- Serialises key creation per account, so the cap on live keys holds under concurrency.
SELECT id FROM accounts WHERE id = $1 FOR UPDATE;

-- name: live_count
SELECT count(*) FROM api_keys WHERE account_id = $1 AND revoked_at IS NULL;
