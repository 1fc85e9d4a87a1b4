-- name: insert
INSERT INTO segments (account_id, name, description, rules) VALUES ($1, $2, $3, $4)
RETURNING id, name, description, rules, created_at, updated_at;

-- name: get
SELECT id, name, description, rules, created_at, updated_at
FROM segments WHERE account_id = $1 AND id = $2;

-- name: list
SELECT id, name, description, rules, created_at, updated_at
FROM segments
WHERE account_id = $1
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4;

-- name: update
UPDATE segments SET
    name = coalesce($3, name),
    description = coalesce($4, description),
    rules = coalesce($5::jsonb, rules),
    updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING id, name, description, rules, created_at, updated_at;

-- name: delete
-- Contacts stay; only the segment goes.
DELETE FROM segments WHERE account_id = $1 AND id = $2 RETURNING id;

-- name: count_members
-- {rules} is a condition compiled by domain/segments.py, with parameters from $2.
SELECT count(*) FROM contacts c WHERE c.account_id = $1 AND ({rules});

-- name: members
-- {rules} as above; $2 and $3 are the keyset position and $4 the limit, so compiled
-- parameters start at $5.
SELECT c.id, c.phone, c.email, c.first_name, c.last_name, c.country_code, c.lifecycle_stage,
       c.tags, c.attributes, c.created_at, c.updated_at
FROM contacts c
WHERE c.account_id = $1
  AND ($2::timestamptz IS NULL OR (c.created_at, c.id) < ($2, $3::uuid))
  AND ({rules})
ORDER BY c.created_at DESC, c.id DESC
LIMIT $4;
