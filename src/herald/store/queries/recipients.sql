-- name: queued_chunk
-- Keyset page of a batch's recipients still queued, with the contact fields templates use.
SELECT r.id, r.phone, r.email, r.contact_id::text AS contact_id,
       c.first_name, c.last_name, c.attributes
FROM recipients r LEFT JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = $1 AND r.id > $2 AND r.id <= $3 AND r.status = 'queued'
ORDER BY r.id
LIMIT $4;

-- name: lock_states
SELECT r.campaign_id, r.id, r.status, r.accepted, r.channel, r.error_code, r.error_description
FROM recipients r
JOIN unnest($1::text[], $2::int[]) AS k (campaign_id, id)
  ON r.campaign_id = k.campaign_id AND r.id = k.id
ORDER BY r.campaign_id, r.id
FOR UPDATE OF r;

-- name: write_states
UPDATE recipients r
SET status = s.status, accepted = s.accepted, channel = s.channel, error_code = s.error_code,
    error_description = s.error_description, updated_at = now()
FROM unnest($1::text[], $2::int[], $3::text[], $4::bool[], $5::text[], $6::text[], $7::text[])
     AS s (campaign_id, id, status, accepted, channel, error_code, error_description)
WHERE r.campaign_id = s.campaign_id AND r.id = s.id;
