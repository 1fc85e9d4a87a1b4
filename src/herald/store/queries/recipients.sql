-- name: queued_chunk
-- Keyset page of a batch's recipients still queued, with the contact fields templates use,
-- the channels the contact opted out of and its Viber user id (a primary-key lookup per row,
-- read at send time so a user who unsubscribed after expansion is not addressed).
SELECT r.id, r.phone, r.email, r.contact_id::text AS contact_id, r.variant,
       c.first_name, c.last_name, c.attributes,
       ARRAY(SELECT p.channel FROM contact_preferences p
             WHERE p.contact_id = r.contact_id AND NOT p.opted_in) AS opted_out,
       (SELECT i.address FROM contact_identities i
        WHERE i.contact_id = r.contact_id AND i.channel = 'viber') AS viber_user_id
FROM recipients r LEFT JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = $1 AND r.id > $2 AND r.id <= $3 AND r.status = 'queued'
ORDER BY r.id
LIMIT $4;

-- name: open_by_ids
-- Recipients of fallback work that are not final yet (a late delivery may have won).
SELECT r.id, r.phone, r.email, r.contact_id::text AS contact_id, r.variant,
       c.first_name, c.last_name, c.attributes,
       ARRAY(SELECT p.channel FROM contact_preferences p
             WHERE p.contact_id = r.contact_id AND NOT p.opted_in) AS opted_out,
       (SELECT i.address FROM contact_identities i
        WHERE i.contact_id = r.contact_id AND i.channel = 'viber') AS viber_user_id
FROM recipients r LEFT JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = $1 AND r.id = ANY ($2::int[])
  AND r.status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled')
ORDER BY r.id;

-- name: lock_states
-- $1: campaign ids in order, $2: each one's recipient ids as an integer array literal
-- (store.queries.int_array). One index scan per campaign, campaign after campaign (a
-- lateral join runs in $1's order), so rows are locked in (campaign, id) order, as every
-- writer of them locks them; always by campaign_id (a partitioned table prunes
-- to the campaign's partition). Columns are read by position; the first is the campaign's
-- position in $1 (from 1), so no row carries its campaign id back.
SELECT c.n, r.id, r.status, r.accepted, r.channel, r.error_code, r.error_description,
       r.variant
FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS c (campaign_id, ids, n)
CROSS JOIN LATERAL (
    SELECT r.id, r.status, r.accepted, r.channel, r.error_code, r.error_description, r.variant
    FROM recipients r
    WHERE r.campaign_id = c.campaign_id AND r.id = ANY (c.ids::int[])
    ORDER BY r.id
    FOR UPDATE OF r
) AS r;

-- name: write_states
-- The fold's new states, one group per (campaign, state): $1 campaign ids, $2 each group's
-- recipient ids (an integer array literal), $3.. the state. A group is one index scan, and
-- the rows it names get no per-row parameters to parse. delivered_at and read_at are set the
-- first time the status reaches them (read implies delivered), in the same UPDATE.
UPDATE recipients r
SET status = g.status, accepted = g.accepted, channel = g.channel, error_code = g.error_code,
    error_description = g.error_description, updated_at = now(),
    delivered_at = CASE WHEN r.delivered_at IS NULL AND g.status IN ('delivered', 'read')
                        THEN now() ELSE r.delivered_at END,
    read_at = CASE WHEN r.read_at IS NULL AND g.status = 'read' THEN now() ELSE r.read_at END
FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::text[], $7::text[])
     AS g (campaign_id, ids, status, accepted, channel, error_code, error_description)
WHERE r.campaign_id = g.campaign_id AND r.id = ANY (g.ids::int[]);

-- name: set_fallback_due
-- In the fold transaction: the chain goes on at attempt n for these open recipients.
UPDATE recipients r SET next_attempt = s.n, fallback_published_at = NULL
FROM unnest($1::text[], $2::int[], $3::smallint[]) AS s (campaign_id, id, n)
WHERE r.campaign_id = s.campaign_id AND r.id = s.id
  AND r.status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled')
  AND (r.next_attempt IS NULL OR r.next_attempt < s.n);

-- name: republish_fallback
-- Fallback work a pause stopped: published again when the campaign resumes.
UPDATE recipients SET fallback_published_at = NULL
WHERE campaign_id = $1 AND id = ANY ($2::int[]) AND next_attempt IS NOT NULL;

-- name: fallback_due
SELECT r.campaign_id, c.account_id, r.id, r.next_attempt
FROM recipients r JOIN campaigns c ON c.id = r.campaign_id
WHERE r.next_attempt IS NOT NULL AND r.fallback_published_at IS NULL
  AND (r.hold_until IS NULL OR r.hold_until <= now() OR c.status = 'cancelled')
  AND c.status IN ('sending', 'cancelled')
ORDER BY r.campaign_id, r.id
LIMIT $1
FOR UPDATE OF r SKIP LOCKED;

-- name: mark_fallback_published
UPDATE recipients r SET fallback_published_at = now()
FROM unnest($1::text[], $2::int[]) AS k (campaign_id, id)
WHERE r.campaign_id = k.campaign_id AND r.id = k.id;

-- name: hold
-- Quiet hours: the recipient's chain resumes at attempt n once hold_until has passed (the
-- fallback publisher sends it out as work then).
UPDATE recipients r
SET next_attempt = s.n, hold_until = s.until, fallback_published_at = NULL
FROM unnest($2::int[], $3::smallint[], $4::timestamptz[]) AS s (id, n, until)
WHERE r.campaign_id = $1 AND r.id = s.id;

-- name: page
-- One page of a campaign's recipients for the API (GET /v1/campaigns/{id}/recipients), with
-- the latest attempt and the contact fields composition reads; call only for a campaign known
-- to be the caller's. sent_at is when that attempt went to a provider that took it (or whose
-- answer was lost): null while it is pending and when the provider refused it.
SELECT r.id, r.contact_id, r.phone, r.email, r.status, r.channel, r.error_code,
       r.error_description, r.updated_at, r.delivered_at, r.read_at,
       coalesce(r.created_at, (SELECT coalesce(c.started_at, c.created_at)
                               FROM campaigns c WHERE c.id = r.campaign_id)) AS created_at,
       k.first_name, k.last_name, k.attributes,
       a.attempt_no, a.provider_message_id,
       CASE WHEN a.accepted OR a.outcome IN ('accepted', 'ambiguous') THEN a.created_at END
           AS sent_at
FROM recipients r
LEFT JOIN contacts k ON k.id = r.contact_id
LEFT JOIN LATERAL (
    SELECT attempt_no, provider_message_id, created_at, outcome, accepted FROM attempts
    WHERE campaign_id = r.campaign_id AND recipient_id = r.id
    ORDER BY attempt_no DESC LIMIT 1
) a ON true
WHERE r.campaign_id = $1
  AND ($2::text IS NULL OR r.status = $2)
  AND r.id > $3
ORDER BY r.id
LIMIT $4;

-- name: count
-- How many of a campaign's recipients have status $2, counted up to $3 rows (meta.total of
-- a filtered page; the unfiltered total is the campaign's total_recipients).
SELECT count(*) FROM (
    SELECT 1 FROM recipients WHERE campaign_id = $1 AND status = $2 LIMIT $3
) AS bounded;
