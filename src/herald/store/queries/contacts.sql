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
