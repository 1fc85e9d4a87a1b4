-- name: insert
INSERT INTO templates (account_id, name, channel, language, category, sender, subject, body,
                       components, approval_status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING *;

-- name: get
SELECT * FROM templates WHERE account_id = $1 AND id = $2;

-- name: get_many
SELECT * FROM templates WHERE account_id = $1 AND id = ANY ($2::uuid[]);

-- name: list
SELECT * FROM templates
WHERE account_id = $1
  AND ($2::text IS NULL OR channel = $2)
  AND ($3::text IS NULL OR approval_status = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: replace
-- A full update: the caller validated the merged template; $10 is the approval status.
UPDATE templates SET name = $3, language = $4, category = $5, sender = $6, subject = $7,
                     body = $8, components = $9, approval_status = $10,
                     rejection_reason = CASE WHEN $10 = 'rejected' THEN rejection_reason END,
                     updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING *;

-- name: set_approval
UPDATE templates SET approval_status = $3, rejection_reason = $4, updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING *;

-- name: delete
DELETE FROM templates WHERE account_id = $1 AND id = $2 RETURNING id;
