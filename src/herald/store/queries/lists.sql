-- name: insert
INSERT INTO lists (account_id, name, description) VALUES ($1, $2, $3)
RETURNING id, name, description, 0 AS member_count, created_at, updated_at;

-- name: get
SELECT l.id, l.name, l.description, l.created_at, l.updated_at,
       (SELECT count(*) FROM list_members m WHERE m.list_id = l.id) AS member_count
FROM lists l WHERE l.account_id = $1 AND l.id = $2;

-- name: list
SELECT l.id, l.name, l.description, l.created_at, l.updated_at,
       (SELECT count(*) FROM list_members m WHERE m.list_id = l.id) AS member_count
FROM lists l
WHERE l.account_id = $1
  AND ($2::timestamptz IS NULL OR (l.created_at, l.id) < ($2, $3::uuid))
ORDER BY l.created_at DESC, l.id DESC
LIMIT $4;

-- name: update
UPDATE lists SET name = coalesce($3, name), description = coalesce($4, description),
                 updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING id;

-- name: delete
-- Members stay contacts; only the list and its memberships go.
DELETE FROM lists WHERE account_id = $1 AND id = $2 RETURNING id;

-- name: members
-- Members newest first, keyset on (added_at, contact id).
SELECT c.id, c.phone, c.email, c.first_name, c.last_name, c.country_code, c.lifecycle_stage,
       c.tags, c.attributes, c.created_at, c.updated_at, m.added_at
FROM list_members m JOIN contacts c ON c.id = m.contact_id
WHERE m.list_id = $1
  AND ($2::timestamptz IS NULL OR (m.added_at, m.contact_id) < ($2, $3::uuid))
ORDER BY m.added_at DESC, m.contact_id DESC
LIMIT $4;

-- name: add_members
-- Adds the account's contacts among $3 to list $2 (already a member: nothing changes).
-- Returns the ids that are the account's contacts.
WITH mine AS (
    SELECT c.id FROM contacts c WHERE c.account_id = $1 AND c.id = ANY ($3::uuid[])
), added AS (
    INSERT INTO list_members (list_id, contact_id)
    SELECT $2, mine.id FROM mine
    ON CONFLICT (list_id, contact_id) DO NOTHING
    RETURNING contact_id
)
SELECT mine.id, (added.contact_id IS NOT NULL) AS added
FROM mine LEFT JOIN added ON added.contact_id = mine.id;

-- name: remove_members
DELETE FROM list_members m USING lists l
WHERE l.id = m.list_id AND l.account_id = $1 AND m.list_id = $2
  AND m.contact_id = ANY ($3::uuid[])
RETURNING m.contact_id;

-- name: touch
UPDATE lists SET updated_at = now() WHERE id = $1;
