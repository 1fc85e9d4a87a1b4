-- name: insert
INSERT INTO contacts (account_id, phone, email, first_name, last_name, country_code,
                      lifecycle_stage, tags, attributes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id, phone, email, first_name, last_name, country_code, lifecycle_stage, tags,
          attributes, created_at, updated_at;

-- name: get
SELECT id, phone, email, first_name, last_name, country_code, lifecycle_stage, tags,
       attributes, created_at, updated_at,
       (SELECT i.address FROM contact_identities i
        WHERE i.contact_id = contacts.id AND i.channel = 'viber') AS viber_user_id
FROM contacts WHERE account_id = $1 AND id = $2;

-- name: list
-- $2 lifecycle stage, $3 tag, ($4, $5) keyset position, $6 limit.
SELECT id, phone, email, first_name, last_name, country_code, lifecycle_stage, tags,
       attributes, created_at, updated_at,
       (SELECT i.address FROM contact_identities i
        WHERE i.contact_id = contacts.id AND i.channel = 'viber') AS viber_user_id
FROM contacts
WHERE account_id = $1
  AND ($2::text IS NULL OR lifecycle_stage = $2)
  AND ($3::text IS NULL OR tags @> ARRAY[$3::text])
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: search
-- As list, with $7 a prefix tsquery over names, email and phone digits (the GIN index).
SELECT id, phone, email, first_name, last_name, country_code, lifecycle_stage, tags,
       attributes, created_at, updated_at,
       (SELECT i.address FROM contact_identities i
        WHERE i.contact_id = contacts.id AND i.channel = 'viber') AS viber_user_id
FROM contacts
WHERE account_id = $1
  AND herald_contact_document(first_name, last_name, phone, email)
      @@ to_tsquery('simple', $7)
  AND ($2::text IS NULL OR lifecycle_stage = $2)
  AND ($3::text IS NULL OR tags @> ARRAY[$3::text])
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6;

-- name: update
-- Each $n::bool says whether the field after it was given; metadata merges, and a null
-- value in it removes that key.
UPDATE contacts SET
    phone = CASE WHEN $3 THEN $4 ELSE phone END,
    email = CASE WHEN $5 THEN $6 ELSE email END,
    first_name = CASE WHEN $7 THEN $8 ELSE first_name END,
    last_name = CASE WHEN $9 THEN $10 ELSE last_name END,
    country_code = CASE WHEN $11 THEN $12 ELSE country_code END,
    lifecycle_stage = CASE WHEN $13 THEN $14 ELSE lifecycle_stage END,
    tags = CASE WHEN $15 THEN $16::text[] ELSE tags END,
    attributes = CASE WHEN $17::jsonb IS NULL THEN attributes
                      ELSE jsonb_strip_nulls(attributes || $17::jsonb) END,
    updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING id, phone, email, first_name, last_name, country_code, lifecycle_stage, tags,
          attributes, created_at, updated_at,
          (SELECT i.address FROM contact_identities i
           WHERE i.contact_id = contacts.id AND i.channel = 'viber') AS viber_user_id;

-- name: set_identity
-- The contact's address on channel $3 is $4, set through the API ($1 account, $2 contact).
-- Another contact of the account that had the address loses it (unset_identity_elsewhere
-- runs first, in the same transaction). Callbacks older than this change do not undo it.
INSERT INTO contact_identities (account_id, contact_id, channel, address, updated_at)
SELECT c.account_id, c.id, $3, $4, now() FROM contacts c WHERE c.account_id = $1 AND c.id = $2
ON CONFLICT (contact_id, channel) DO UPDATE
SET address = EXCLUDED.address, updated_at = EXCLUDED.updated_at;

-- name: unset_identity_elsewhere
DELETE FROM contact_identities
WHERE account_id = $1 AND channel = $3 AND address = $4 AND contact_id <> $2;

-- name: clear_identity
DELETE FROM contact_identities WHERE account_id = $1 AND contact_id = $2 AND channel = $3;

-- name: delete
DELETE FROM contacts WHERE account_id = $1 AND id = $2 RETURNING id;

-- name: add_tags
-- Appends tags not already present, once each, in the order given.
UPDATE contacts c SET
    tags = c.tags || ARRAY(
        SELECT t FROM (
            SELECT t, min(o) AS o FROM unnest($3::text[]) WITH ORDINALITY AS u (t, o)
            WHERE NOT (t = ANY (c.tags)) GROUP BY t
        ) AS fresh ORDER BY o
    ),
    updated_at = now()
WHERE c.account_id = $1 AND c.id = $2
RETURNING c.id, c.tags;

-- name: remove_tag
UPDATE contacts SET tags = array_remove(tags, $3), updated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING id, tags;

-- name: set_preferences
-- Upserts per-channel choices for a contact of the account; nothing for another's.
INSERT INTO contact_preferences (contact_id, channel, opted_in)
SELECT c.id, p.channel, p.opted_in
FROM contacts c, unnest($3::text[], $4::bool[]) AS p (channel, opted_in)
WHERE c.account_id = $1 AND c.id = $2
ON CONFLICT (contact_id, channel)
DO UPDATE SET opted_in = EXCLUDED.opted_in, updated_at = now();

-- name: preferences
SELECT p.channel, p.opted_in, p.updated_at
FROM contact_preferences p JOIN contacts c ON c.id = p.contact_id
WHERE c.account_id = $1 AND c.id = $2
ORDER BY p.channel;

-- name: optouts
-- Contacts opted out of any channel ($2: of that channel), $3 optional tsquery.
SELECT c.id, c.phone, c.email, c.first_name, c.last_name, c.country_code, c.lifecycle_stage,
       c.tags, c.attributes, c.created_at, c.updated_at,
       (SELECT i.address FROM contact_identities i
        WHERE i.contact_id = c.id AND i.channel = 'viber') AS viber_user_id,
       ARRAY(SELECT p.channel FROM contact_preferences p
             WHERE p.contact_id = c.id AND NOT p.opted_in ORDER BY p.channel) AS opted_out
FROM contacts c
WHERE c.account_id = $1
  AND EXISTS (SELECT 1 FROM contact_preferences p
              WHERE p.contact_id = c.id AND NOT p.opted_in
                AND ($2::text IS NULL OR p.channel = $2))
  AND ($3::text IS NULL
       OR herald_contact_document(c.first_name, c.last_name, c.phone, c.email)
          @@ to_tsquery('simple', $3))
  AND ($4::timestamptz IS NULL OR (c.created_at, c.id) < ($4, $5::uuid))
ORDER BY c.created_at DESC, c.id DESC
LIMIT $6;

-- name: activity
-- A contact's messages from herald's own records: one event per milestone of each attempt
-- (sent when a provider took it; delivered, read or failed as folded; a read message was
-- delivered too, at the recipient's delivered_at) and skips.
WITH mine AS (
    SELECT r.campaign_id, r.id, r.status, r.channel, r.error_code, r.error_description,
           r.updated_at, r.delivered_at
    FROM recipients r JOIN campaigns c ON c.id = r.campaign_id AND c.account_id = $1
    WHERE r.contact_id = $2
), events AS (
    SELECT 'message.sent' AS type, a.channel, a.campaign_id,
           a.campaign_id || '.' || a.recipient_id || '.' || a.attempt_no AS message_id,
           a.created_at AS at, NULL::text AS error_code, NULL::text AS error_description
    FROM mine JOIN attempts a ON a.campaign_id = mine.campaign_id AND a.recipient_id = mine.id
    WHERE a.accepted OR a.outcome = 'accepted'
    UNION ALL
    SELECT 'message.' || a.status, a.channel, a.campaign_id,
           a.campaign_id || '.' || a.recipient_id || '.' || a.attempt_no,
           a.updated_at, a.error_code, a.error_description
    FROM mine JOIN attempts a ON a.campaign_id = mine.campaign_id AND a.recipient_id = mine.id
    WHERE a.status IN ('delivered', 'read', 'failed')
    UNION ALL
    SELECT 'message.delivered', a.channel, a.campaign_id,
           a.campaign_id || '.' || a.recipient_id || '.' || a.attempt_no,
           coalesce(mine.delivered_at, a.updated_at), NULL, NULL
    FROM mine JOIN attempts a ON a.campaign_id = mine.campaign_id AND a.recipient_id = mine.id
    WHERE a.status = 'read'
    UNION ALL
    SELECT 'message.skipped', mine.channel, mine.campaign_id,
           mine.campaign_id || '.' || mine.id || '.0',
           mine.updated_at, mine.error_code, mine.error_description
    FROM mine WHERE mine.status = 'skipped'
)
SELECT type, channel, campaign_id, message_id, at, error_code, error_description,
       message_id || ':' || type AS position
FROM events
WHERE $3::timestamptz IS NULL OR (at, message_id || ':' || type) < ($3, $4::text)
ORDER BY at DESC, position DESC
LIMIT $5;

-- name: create_stage
-- Bulk import stages each batch here (COPY cannot write jsonb through the pool's text codec),
-- then moves it into contacts in one statement.
CREATE TEMP TABLE IF NOT EXISTS contact_import_stage (
    id uuid, account_id text, phone text, email text, first_name text, last_name text,
    country_code text, lifecycle_stage text, tags text[], attributes text
) ON COMMIT DROP;

-- name: flush_stage
WITH moved AS (DELETE FROM contact_import_stage RETURNING *)
INSERT INTO contacts (id, account_id, phone, email, first_name, last_name, country_code,
                      lifecycle_stage, tags, attributes)
SELECT id, account_id, phone, email, first_name, last_name, country_code, lifecycle_stage,
       tags, attributes::jsonb
FROM moved;

-- name: reach
-- Which of $2 the account holds, and on what each can be reached: a campaign's contact_ids
-- checked at send (unknown ids are named; ids reachable on none of its channels refused).
SELECT c.id, c.phone IS NOT NULL AS phone, c.email IS NOT NULL AS email,
       EXISTS (SELECT 1 FROM contact_identities i
               WHERE i.contact_id = c.id AND i.channel = 'viber') AS viber
FROM contacts c
WHERE c.account_id = $1 AND c.id = ANY($2::uuid[]);

-- name: count
-- How many contacts `list` pages through, counted up to $4 rows (the API's meta.total).
SELECT count(*) FROM (
    SELECT 1 FROM contacts
    WHERE account_id = $1
      AND ($2::text IS NULL OR lifecycle_stage = $2)
      AND ($3::text IS NULL OR tags @> ARRAY[$3::text])
    LIMIT $4
) AS bounded;

-- name: count_search
-- As count, for `search` ($5 the tsquery; the GIN index).
SELECT count(*) FROM (
    SELECT 1 FROM contacts
    WHERE account_id = $1
      AND herald_contact_document(first_name, last_name, phone, email)
          @@ to_tsquery('simple', $5)
      AND ($2::text IS NULL OR lifecycle_stage = $2)
      AND ($3::text IS NULL OR tags @> ARRAY[$3::text])
    LIMIT $4
) AS bounded;
