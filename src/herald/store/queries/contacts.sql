-- name: insert_synthetic
-- Demo and benchmark audiences, generated set-based: $2 contacts with sequential phone numbers
-- starting at $3, tagged $4. Every $5-th contact has no first name, every $6-th a bad phone.
INSERT INTO contacts (account_id, phone, email, first_name, last_name, tags)
SELECT $1,
       CASE WHEN $6 > 0 AND g % $6 = 0 THEN '12345' ELSE '+' || ($3::bigint + g)::text END,
       'guest' || g::text || '@example.com',
       CASE WHEN $5 > 0 AND g % $5 = 0 THEN NULL ELSE 'Guest' || g::text END,
       'Demo',
       $4::text[]
FROM generate_series(0, $2 - 1) AS g;

-- name: phones_by_tag
SELECT phone, first_name FROM contacts WHERE account_id = $1 AND tags @> ARRAY[$2]::text[];

-- name: link_identity
-- From a provider callback: $1 contact id (any account: contact ids are unique), $2 channel,
-- $3 address, $4 when it was observed. A later observation wins; an older one changes nothing.
-- The address moves to this contact if another contact of the account had it (unlink_elsewhere
-- runs first, in the same transaction).
INSERT INTO contact_identities (account_id, contact_id, channel, address, updated_at)
SELECT c.account_id, c.id, $2, $3, $4 FROM contacts c
WHERE c.id = $1
  AND NOT EXISTS (SELECT 1 FROM contact_identities o
                  WHERE o.account_id = c.account_id AND o.channel = $2 AND o.address = $3
                    AND o.contact_id <> c.id)
ON CONFLICT (contact_id, channel) DO UPDATE
SET address = EXCLUDED.address, updated_at = EXCLUDED.updated_at
WHERE contact_identities.updated_at <= EXCLUDED.updated_at
RETURNING account_id;

-- name: unlink_elsewhere
-- $1 contact id, $2 channel, $3 address, $4 when: other contacts of $1's account lose the address.
DELETE FROM contact_identities i USING contacts c
WHERE c.id = $1 AND i.account_id = c.account_id AND i.channel = $2 AND i.address = $3
  AND i.contact_id <> c.id AND i.updated_at <= $4;

-- name: unlink_identity
-- The user left the channel ($1 channel, $2 address, $3 when): unlinked in every account.
DELETE FROM contact_identities
WHERE channel = $1 AND address = $2 AND updated_at <= $3;

-- name: phones
SELECT id::text, phone FROM contacts WHERE account_id = $1 AND phone IS NOT NULL ORDER BY id;

-- name: identities
SELECT count(*) FROM contact_identities WHERE account_id = $1 AND channel = $2;
