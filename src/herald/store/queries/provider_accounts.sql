-- name: for_account
-- The account's own provider accounts first, then the deployment's defaults, by priority.
SELECT id::text AS id, account_id, channel, provider, label, priority, base_url, options,
       secret_ref
FROM provider_accounts
WHERE enabled AND (account_id = $1 OR account_id IS NULL)
ORDER BY channel, (account_id IS NULL), priority, created_at;
