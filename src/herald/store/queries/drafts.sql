-- name: insert
INSERT INTO campaign_drafts (id, account_id, name, description, sending_mode, spec,
                             scheduled_at, ready_to_send)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id;

-- name: get
-- The pipeline's columns added after the view (0004) come straight from campaigns.
SELECT *,
       (SELECT c.cancelled FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id) AS cancelled,
       (SELECT c.paused_at FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id) AS paused_at
FROM campaign_overview
WHERE account_id = $1 AND id = $2;

-- name: lock_draft
-- The draft row of the account's campaign, locked for a change; confirmed_at tells whether
-- it is still a draft.
SELECT id, spec, confirmed_at FROM campaign_drafts
WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL
FOR UPDATE;

-- name: update
UPDATE campaign_drafts SET name = $3, description = $4, sending_mode = $5, spec = $6,
                           scheduled_at = $7, ready_to_send = $8,
                           goal_recipients = NULL, goal_cost = NULL, goal_calculated_at = NULL,
                           updated_at = now()
WHERE account_id = $1 AND id = $2 AND confirmed_at IS NULL
RETURNING id;

-- name: delete
DELETE FROM campaign_drafts WHERE account_id = $1 AND id = $2 AND confirmed_at IS NULL
RETURNING id;

-- name: list
-- $2 statuses, $3 sending modes, $4 draft, $5 programmed (confirmed for later), $6 ready to
-- send, $7 ILIKE pattern over name and description, [$8, $9) the date window over created
-- or scheduled time, ($10, $11) keyset position, $12 ascending, $13 limit.
SELECT *,
       (SELECT c.cancelled FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id) AS cancelled,
       (SELECT c.paused_at FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id) AS paused_at
FROM campaign_overview
WHERE account_id = $1
  AND ($2::text[] IS NULL OR status = ANY ($2::text[]))
  AND ($3::text[] IS NULL OR sending_mode = ANY ($3::text[]))
  AND ($4::bool IS NULL OR (status = 'draft') = $4)
  AND ($5::bool IS NULL
       OR (status = 'scheduled' AND coalesce(scheduled_at > now(), false)) = $5)
  AND ($6::bool IS NULL OR ready_to_send = $6)
  AND ($7::text IS NULL OR name ILIKE $7 OR description ILIKE $7)
  AND (($8::timestamptz IS NULL AND $9::timestamptz IS NULL)
       OR (created_at >= coalesce($8, '-infinity') AND created_at < coalesce($9, 'infinity'))
       OR (scheduled_at >= coalesce($8, '-infinity')
           AND scheduled_at < coalesce($9, 'infinity')))
  AND ($10::timestamptz IS NULL
       OR CASE WHEN $12 THEN (created_at, id) > ($10, $11::text)
               ELSE (created_at, id) < ($10, $11::text) END)
ORDER BY CASE WHEN $12 THEN created_at END ASC, CASE WHEN $12 THEN id END ASC,
         created_at DESC, id DESC
LIMIT $13;

-- name: save_goal
UPDATE campaign_drafts SET goal_recipients = $3, goal_cost = $4, goal_calculated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING goal_calculated_at;

-- name: goal
-- Recipients the scheduler would create: contacts from every source once and one per
-- {address} (as expand_recipients), then raw destinations that no audience contact has. {segment} is a compiled segment condition
-- (or FALSE); its parameters follow $7. $6 is the channel opt-outs are counted for, $7 a
-- campaign whose failed recipients are part of the audience.
WITH failed AS (
    SELECT r.contact_id, r.phone
    FROM recipients r JOIN campaigns p ON p.id = r.campaign_id
    WHERE r.campaign_id = $7 AND p.account_id = $1 AND r.status = 'failed'
), ids AS (
    SELECT id FROM contacts WHERE account_id = $1 AND id = ANY ($2::uuid[])
    UNION
    SELECT m.contact_id FROM list_members m JOIN lists l ON l.id = m.list_id
    WHERE l.account_id = $1 AND m.list_id = ANY ($3::uuid[])
    UNION
    SELECT id FROM contacts WHERE account_id = $1 AND cardinality($4::text[]) > 0
                              AND tags && $4::text[]
    UNION
    SELECT contact_id FROM failed WHERE contact_id IS NOT NULL
    UNION
    SELECT c.id FROM contacts c WHERE c.account_id = $1 AND ({segment})
), audience AS (
    SELECT DISTINCT ON (coalesce({address}, c.id::text)) c.id, c.phone
    FROM ids JOIN contacts c ON c.id = ids.id AND c.account_id = $1
    ORDER BY coalesce({address}, c.id::text), c.id
), raw AS (
    SELECT d FROM unnest($5::text[]) AS d
    UNION
    SELECT phone FROM failed WHERE contact_id IS NULL AND phone IS NOT NULL
)
SELECT (SELECT count(*) FROM audience)
       + (SELECT count(*) FROM raw
          WHERE NOT EXISTS (SELECT 1 FROM audience a WHERE a.phone = raw.d)) AS recipients,
       (SELECT count(*) FROM audience a JOIN contact_preferences p ON p.contact_id = a.id
        WHERE p.channel = $6 AND NOT p.opted_in) AS opted_out;

-- name: lists_owned
SELECT id FROM lists WHERE account_id = $1 AND id = ANY ($2::uuid[]);

-- name: segment_rules
SELECT rules FROM segments WHERE account_id = $1 AND id = $2;

-- name: mark_confirmed
UPDATE campaign_drafts SET confirmed_at = now(), event = $3, updated_at = now()
WHERE account_id = $1 AND id = $2 AND confirmed_at IS NULL
RETURNING confirmed_at;


-- name: cancel
-- Cancels a confirmed campaign of the account whether or not the scheduler has received
-- it: a row inserted here first makes the scheduler's own insert of that campaign a no-op.
-- $3: the statuses it may be cancelled from (only 'scheduled', to delete one that has not
-- started: the scheduler leaves 'scheduled' in the transaction that expands).
INSERT INTO campaigns AS c (id, account_id, name, status, sending_mode, event, scheduled_at,
                            batch_size, batch_delay_ms, fallback_window_s)
SELECT d.id, d.account_id, d.name, 'cancelled', d.sending_mode, d.event, d.scheduled_at,
       coalesce((d.event ->> 'batch_size')::integer, 100000),
       coalesce((d.event ->> 'batch_delay_ms')::integer, 0),
       coalesce((d.event ->> 'fallback_window_s')::integer, 900)
FROM campaign_drafts d
WHERE d.account_id = $1 AND d.id = $2 AND d.confirmed_at IS NOT NULL AND d.deleted_at IS NULL
ON CONFLICT (id) DO UPDATE SET status = 'cancelled', pause_reason = NULL
WHERE c.account_id = $1 AND c.status = ANY ($3::text[])
RETURNING c.id;

-- name: recipients
-- One page of a campaign's recipients with their latest attempt; call only for a
-- campaign known to be the caller's.
SELECT r.id, r.contact_id, r.phone, r.email, r.status, r.channel, r.error_code,
       r.error_description, r.updated_at,
       a.attempt_no, a.provider_message_id, a.created_at AS sent_at
FROM recipients r
LEFT JOIN LATERAL (
    SELECT attempt_no, provider_message_id, created_at FROM attempts
    WHERE campaign_id = r.campaign_id AND recipient_id = r.id
    ORDER BY attempt_no DESC LIMIT 1
) a ON true
WHERE r.campaign_id = $1
  AND ($2::text IS NULL OR r.status = $2)
  AND r.id > $3
ORDER BY r.id
LIMIT $4;

-- name: sent_event
-- The campaign.confirmed event a campaign of the account was sent with.
SELECT event FROM campaigns WHERE account_id = $1 AND id = $2;

-- name: variant_counters
-- A/B test results: each variant's recipients by outcome, recounted from the recipient rows
-- (exact by construction; one pass over the campaign's rows).
SELECT variant, count(*) AS recipients,
       count(*) FILTER (WHERE accepted) AS sent,
       count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered,
       count(*) FILTER (WHERE status = 'read') AS read,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status NOT IN ('delivered', 'read', 'failed', 'skipped',
                                             'cancelled')) AS pending
FROM recipients WHERE campaign_id = $1 AND variant IS NOT NULL
GROUP BY variant ORDER BY variant;

-- name: reschedule
-- A confirmed campaign that has not started takes its changed event: the pipeline row is
-- rewritten only while it is still scheduled and unexpanded, or created now (so that the
-- scheduler's own insert of the earlier event, still on its way, does nothing).
INSERT INTO campaigns AS c (id, account_id, name, status, sending_mode, event, scheduled_at,
                            batch_size, batch_delay_ms, fallback_window_s)
VALUES ($2, $1, $3, 'scheduled', $4, $5::jsonb, $6, $7, $8, $9)
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, sending_mode = EXCLUDED.sending_mode, event = EXCLUDED.event,
    scheduled_at = EXCLUDED.scheduled_at, batch_size = EXCLUDED.batch_size,
    batch_delay_ms = EXCLUDED.batch_delay_ms, fallback_window_s = EXCLUDED.fallback_window_s
WHERE c.account_id = $1 AND c.status = 'scheduled' AND c.expanded_at IS NULL
RETURNING c.id;

-- name: update_confirmed
UPDATE campaign_drafts SET name = $3, description = $4, sending_mode = $5, spec = $6,
                           scheduled_at = $7, ready_to_send = $8, event = $9,
                           goal_recipients = NULL, goal_cost = NULL, goal_calculated_at = NULL,
                           updated_at = now()
WHERE account_id = $1 AND id = $2 AND confirmed_at IS NOT NULL AND deleted_at IS NULL
RETURNING id;

-- name: mark_deleted
UPDATE campaign_drafts SET deleted_at = now(), updated_at = now()
WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING id;

-- name: database_now
-- The one clock schedules are checked against: the scheduler starts campaigns by now() too.
SELECT now();
