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
-- it is still a draft. Readiness and the last goal are for seed 002's confirm workflow.
SELECT id, spec, confirmed_at, ready_to_send, goal_recipients, goal_cost, goal_calculated_at
FROM campaign_drafts
WHERE account_id = $1 AND id = $2 AND deleted_at IS NULL
FOR UPDATE;

-- name: update
-- $9: keep the calculated goal (a change that cannot move the price: ready_to_send alone).
UPDATE campaign_drafts SET name = $3, description = $4, sending_mode = $5, spec = $6,
                           scheduled_at = $7, ready_to_send = $8,
                           goal_recipients = CASE WHEN $9 THEN goal_recipients END,
                           goal_cost = CASE WHEN $9 THEN goal_cost END,
                           goal_calculated_at = CASE WHEN $9 THEN goal_calculated_at END,
                           updated_at = now()
WHERE account_id = $1 AND id = $2 AND confirmed_at IS NULL
RETURNING id;

-- name: delete
DELETE FROM campaign_drafts WHERE account_id = $1 AND id = $2 AND confirmed_at IS NULL
RETURNING id;

-- name: filters
-- The account's campaigns ($1) that a list's filters keep, over campaign_overview: $2
-- statuses, $3 sending modes, $4 draft, $5 programmed (confirmed for later), $6 ready to
-- send, $7 ILIKE pattern over name and description, [$8, $9) the date window over created
-- or scheduled time. The one condition `list` and `count` are built on.
account_id = $1
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

-- name: list
-- One page: ($10, $11) keyset position, $12 ascending, $13 limit.
SELECT *,
       (SELECT c.cancelled FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id) AS cancelled,
       (SELECT c.paused_at FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id) AS paused_at
FROM campaign_overview
WHERE {filters}
  AND ($10::timestamptz IS NULL
       OR CASE WHEN $12 THEN (created_at, id) > ($10, $11::text)
               ELSE (created_at, id) < ($10, $11::text) END)
ORDER BY CASE WHEN $12 THEN created_at END ASC, CASE WHEN $12 THEN id END ASC,
         created_at DESC, id DESC
LIMIT $13;

-- name: count
-- How many campaigns the filters keep, counted up to $10 (meta.total).
SELECT count(*) FROM (SELECT 1 FROM campaign_overview WHERE {filters} LIMIT $10) AS bounded;

-- name: save_goal
UPDATE campaign_drafts SET goal_recipients = $3, goal_cost = $4, goal_calculated_at = now()
WHERE account_id = $1 AND id = $2
RETURNING goal_calculated_at;

-- name: goal
-- What expansion would create: the campaign's audience (the `audience` block of
-- campaigns.sql that expansion inserts from, store/campaigns.audience_query), each row with
-- the channels of $7 (the chain's sendable channels, in order) it can be sent on, as
-- domain/compose walks them: an address there (a phone for SMS, WhatsApp and RCS, an email,
-- a Viber user id) and no opt-out of it. A row with none is skipped at send. Per channel of
-- $7: how many rows start there (`first`) and how many can reach it (`reachable`). The
-- segment's parameters follow $7.
WITH a AS ({audience}),
reach AS (
    SELECT ARRAY(
               SELECT t.ch FROM unnest($7::text[]) WITH ORDINALITY AS t (ch, pos)
               WHERE CASE t.ch
                         WHEN 'email' THEN coalesce(a.email LIKE '%@%', false)
                         WHEN 'viber' THEN EXISTS (
                             SELECT 1 FROM contact_identities i
                             WHERE i.contact_id = a.contact_id AND i.channel = 'viber')
                         ELSE coalesce(a.phone ~ '^\+[0-9]{7,15}$', false) END
                 AND NOT EXISTS (
                     SELECT 1 FROM contact_preferences p
                     WHERE p.contact_id = a.contact_id AND p.channel = t.ch AND NOT p.opted_in)
               ORDER BY t.pos) AS channels,
           EXISTS (SELECT 1 FROM contact_preferences p
                   WHERE p.contact_id = a.contact_id AND p.channel = ($7::text[])[1]
                     AND NOT p.opted_in) AS opted_out_first
    FROM a
), per AS (
    SELECT t.pos,
           count(r.channels) FILTER (WHERE r.channels[1] = t.ch) AS first,
           count(r.channels) FILTER (WHERE t.ch = ANY (r.channels)) AS reachable
    FROM unnest($7::text[]) WITH ORDINALITY AS t (ch, pos) LEFT JOIN reach r ON true
    GROUP BY t.pos
)
SELECT (SELECT count(*) FROM reach) AS audience,
       (SELECT count(*) FROM reach WHERE cardinality(channels) > 0) AS recipients,
       (SELECT count(*) FROM reach WHERE opted_out_first) AS opted_out,
       (SELECT array_agg(first ORDER BY pos) FROM per) AS first,
       (SELECT array_agg(reachable ORDER BY pos) FROM per) AS reachable;

-- name: lists_owned
SELECT id FROM lists WHERE account_id = $1 AND id = ANY ($2::uuid[]);

-- name: provider_accounts_owned
-- Of the ids $2, the account's own enabled provider accounts, with their channel.
SELECT id::text AS id, channel FROM provider_accounts
WHERE account_id = $1 AND enabled AND id = ANY ($2::uuid[]);

-- name: segment_rules
SELECT rules FROM segments WHERE account_id = $1 AND id = $2;

-- name: mark_confirmed
UPDATE campaign_drafts SET confirmed_at = now(), event = $3, updated_at = now()
WHERE account_id = $1 AND id = $2 AND confirmed_at IS NULL
RETURNING confirmed_at;


-- name: sent_event
-- The campaign.confirmed event a campaign of the account was sent with.
SELECT event FROM campaigns WHERE account_id = $1 AND id = $2;

-- name: variant_counters
-- A/B test results: each variant's recipients by outcome, the counters expansion set and the
-- status fold keeps exact (0020); a few rows however big the campaign.
SELECT variant, recipients, sent, delivered, read, failed, skipped, cancelled,
       recipients - final AS pending
FROM campaign_variant_counters WHERE campaign_id = $1
ORDER BY variant;

-- name: variant_recount
-- The same, recounted from the recipient rows (one pass over the campaign's rows): what the
-- kept counters must equal.
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
