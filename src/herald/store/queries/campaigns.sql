-- name: insert
-- Deduplicates campaign.confirmed by campaign id: a replay inserts nothing. $10: scheduled,
-- or sending for a campaign the API started at once (started_at set, expansion to come).
INSERT INTO campaigns (id, account_id, name, status, sending_mode, event, scheduled_at,
                       batch_size, batch_delay_ms, fallback_window_s, started_at)
VALUES ($1, $2, $3, $10, $4, $5::jsonb, $6, $7, $8, $9,
        CASE WHEN $10 = 'sending' THEN now() END)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: get
SELECT * FROM campaigns WHERE id = $1;

-- name: account_known
SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1);

-- name: create_account
INSERT INTO accounts (id, name) VALUES ($1, $1) ON CONFLICT (id) DO NOTHING;

-- name: id_owner
-- The account that holds a campaign id already, as a campaign or as a draft.
SELECT account_id FROM campaigns WHERE id = $1
UNION ALL
SELECT account_id FROM campaign_drafts WHERE id = $1
LIMIT 1;

-- name: claim_due
-- One scheduler claims a campaign to expand; others skip it instead of waiting on the lock:
-- one started already ($2: sending, by the API) or one whose time came ($1: scheduled). A
-- paused one that was never expanded waits for its resume.
SELECT id, account_id, event, status FROM campaigns
WHERE expanded_at IS NULL
  AND (status = ANY ($2::text[])
       OR (status = ANY ($1::text[]) AND (scheduled_at IS NULL OR scheduled_at <= now())))
ORDER BY scheduled_at NULLS FIRST, created_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: audience
-- A campaign's audience, numbered: the one text the expansion and the goal estimate are built
-- on (store/campaigns.audience_query), so the two cannot drift. $1 account, $2 contact ids,
-- $3 list ids, $4 tags, $5 raw destinations (canonical, domain/phone.canonical), $6 a campaign
-- of the account whose failed recipients come again (retry-failed); {segment_condition} is the
-- segment's rules compiled to SQL over `contacts c` (domain/segments.py: placeholders only,
-- never values), its parameters numbered after the caller's own.
-- Contacts from every source once, and one per address ({address}: the phone, or the
-- lower-cased email for an email-only chain; contacts without one are each kept); raw
-- destinations once each and not again if a contact in the audience has that phone. `n` is
-- dense from 1 in a stable order.
WITH failed AS (
    SELECT r.id, r.contact_id, r.phone
    FROM recipients r JOIN campaigns p ON p.id = r.campaign_id
    WHERE r.campaign_id = $6 AND p.account_id = $1 AND r.status = 'failed'
), sourced AS (
    -- Each source's contacts with the fields the audience keeps, read once: a contact in
    -- two sources comes twice, and DISTINCT ON below (on its address, or its id) keeps one.
    -- No set of ids is hashed and joined back to contacts, which for millions of recipients
    -- cost a second pass over contacts and two tables in memory.
    SELECT id, phone, email FROM contacts WHERE account_id = $1 AND id = ANY ($2::uuid[])
    UNION ALL
    SELECT c.id, c.phone, c.email
    FROM list_members m JOIN lists l ON l.id = m.list_id
    JOIN contacts c ON c.id = m.contact_id AND c.account_id = $1
    WHERE l.account_id = $1 AND m.list_id = ANY ($3::uuid[])
    UNION ALL
    SELECT id, phone, email FROM contacts
    WHERE account_id = $1 AND cardinality($4::text[]) > 0 AND tags && $4::text[]
    UNION ALL
    SELECT c.id, c.phone, c.email FROM failed f JOIN contacts c ON c.id = f.contact_id
    WHERE c.account_id = $1
    UNION ALL
    SELECT c.id, c.phone, c.email FROM contacts c
    WHERE c.account_id = $1 AND ({segment_condition})
), audience AS (
    SELECT DISTINCT ON (coalesce({address}, c.id::text)) c.id AS contact_id, c.phone, c.email
    FROM sourced AS c
    ORDER BY coalesce({address}, c.id::text), c.id
), raw AS (
    SELECT DISTINCT ON (d) d AS phone, ord
    FROM (
        SELECT d, ord FROM unnest($5::text[]) WITH ORDINALITY AS t (d, ord)
        UNION ALL
        SELECT phone, cardinality($5::text[]) + id FROM failed
        WHERE contact_id IS NULL AND phone IS NOT NULL
    ) AS t (d, ord)
    ORDER BY d, ord
), combined AS (
    SELECT contact_id, phone, email, 0 AS source, NULL::bigint AS ord FROM audience
    UNION ALL
    SELECT NULL::uuid, raw.phone, NULL::text, 1, raw.ord
    FROM raw LEFT JOIN audience a ON a.phone = raw.phone
    WHERE a.phone IS NULL
)
SELECT row_number() OVER (ORDER BY source, contact_id, ord) AS n, contact_id, phone, email
FROM combined

-- name: expand_recipients
-- The audience (the `audience` block) as the campaign's recipient rows, into {table} (the
-- campaign's own table, store/recipient_tables.stage): $7 the campaign, $8 where each
-- A/B variant's share of the slots 0..99 starts (NULL: no test); a recipient's variant is the
-- one whose share holds its slot id * 37 % 100 (domain/events.variant_of).
INSERT INTO {table} (campaign_id, id, contact_id, phone, email, variant)
SELECT $7, n, contact_id, phone, email,
       CASE WHEN $8::int[] IS NOT NULL THEN width_bucket(n * 37 % 100, $8::int[]) - 1 END
FROM ({audience}) AS numbered;

-- name: expansion_memory
-- Sorting and hashing a million-recipient audience in memory instead of spilling to disk.
SET LOCAL work_mem = '256MB';

-- name: insert_batches
-- $1 campaign, $2 batch size, $3 recipients, $4 delay between batches in ms, $5 parts: each
-- batch_size range g is cut into $5 consecutive batches of (nearly) equal size, numbered
-- (g - 1) * $5 + part + 1, all due together, so its recipients go out over $5 sub-keys at
-- once (domain/work.batch_share); a range with fewer recipients than parts leaves gaps in
-- the numbering where a part would be empty.
INSERT INTO batches (campaign_id, batch_no, first_id, last_id, not_before)
SELECT $1, (g - 1) * $5::integer + part + 1,
       r.first_id + r.size * part / $5::integer,
       r.first_id + r.size * (part + 1) / $5::integer - 1,
       now() + ((g - 1) * $4::bigint) * interval '1 millisecond'
FROM generate_series(1, ($3::integer + $2::integer - 1) / $2::integer) AS g
CROSS JOIN LATERAL (SELECT (g - 1)::bigint * $2::integer + 1 AS first_id,
                           least(g::bigint * $2::integer, $3::integer)
                           - (g - 1)::bigint * $2::integer AS size) AS r
CROSS JOIN generate_series(0, $5::integer - 1) AS part
-- Integer division throughout (bigint, so size * part cannot overflow).
WHERE r.size * (part + 1) / $5::integer > r.size * part / $5::integer;

-- name: mark_expanded
UPDATE campaigns
SET total_recipients = $2, expanded_at = now(), started_at = coalesce(started_at, now())
WHERE id = $1;

-- name: due_batches
SELECT b.campaign_id, c.account_id, b.batch_no, b.first_id, b.last_id
FROM batches b JOIN campaigns c ON c.id = b.campaign_id
WHERE b.published_at IS NULL AND b.not_before <= now()
  AND c.status IN ('sending', 'cancelled')
ORDER BY b.not_before, b.campaign_id, b.batch_no
LIMIT $1
FOR UPDATE OF b SKIP LOCKED;

-- name: mark_published
UPDATE batches SET published_at = now()
WHERE campaign_id = $1 AND batch_no = ANY ($2::integer[]);

-- name: mark_batch_done
UPDATE batches SET done_at = now() WHERE campaign_id = $1 AND batch_no = $2 AND done_at IS NULL;

-- name: apply_counters
-- Exact counter deltas from the status fold, one row per campaign.
UPDATE campaigns c
SET sent = c.sent + d.sent, delivered = c.delivered + d.delivered, read = c.read + d.read,
    failed = c.failed + d.failed, skipped = c.skipped + d.skipped,
    cancelled = c.cancelled + d.cancelled, final = c.final + d.final
FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::int[],
            $8::int[])
     AS d (id, sent, delivered, read, failed, skipped, cancelled, final)
WHERE c.id = d.id;

-- name: apply_channel_counters
INSERT INTO campaign_channel_counters AS cc (campaign_id, channel, sent, delivered, read, failed)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[])
ON CONFLICT (campaign_id, channel) DO UPDATE
SET sent = cc.sent + EXCLUDED.sent, delivered = cc.delivered + EXCLUDED.delivered,
    read = cc.read + EXCLUDED.read, failed = cc.failed + EXCLUDED.failed;

-- name: apply_variant_counters
-- Exact counter deltas per A/B variant from the status fold, after apply_counters (the
-- campaign row is locked first, as cancel_unsent locks it, so the two cannot deadlock).
INSERT INTO campaign_variant_counters AS v (campaign_id, variant, sent, delivered, read, failed,
                                            skipped, cancelled, final)
SELECT * FROM unnest($1::text[], $2::smallint[], $3::int[], $4::int[], $5::int[], $6::int[],
                     $7::int[], $8::int[], $9::int[])
ON CONFLICT (campaign_id, variant) DO UPDATE
SET sent = v.sent + EXCLUDED.sent, delivered = v.delivered + EXCLUDED.delivered,
    read = v.read + EXCLUDED.read, failed = v.failed + EXCLUDED.failed,
    skipped = v.skipped + EXCLUDED.skipped, cancelled = v.cancelled + EXCLUDED.cancelled,
    final = v.final + EXCLUDED.final;

-- name: insert_variant_counters
-- At expansion: each variant's recipients ($2 variant indexes, $3 their sizes).
INSERT INTO campaign_variant_counters (campaign_id, variant, recipients)
SELECT $1, * FROM unnest($2::smallint[], $3::int[]);

-- name: finishing
-- Campaigns of $1 in a status they can end from ($2) whose recipients are all final, locked
-- for their ending (domain/campaign.ending decides completed or failed).
SELECT id, total_recipients, final, sent, failed FROM campaigns
WHERE id = ANY ($1::text[]) AND status = ANY ($2::text[]) AND expanded_at IS NOT NULL
  AND final >= total_recipients
ORDER BY id
FOR UPDATE;

-- name: channel_counters
SELECT channel, sent, delivered, read, failed FROM campaign_channel_counters
WHERE campaign_id = $1 ORDER BY channel;

-- name: recount
-- Counters recomputed from recipient rows: what the folded counters must equal.
SELECT count(*) FILTER (WHERE accepted) AS sent,
       count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered,
       count(*) FILTER (WHERE status = 'read') AS read,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       count(*) FILTER (WHERE status IN ('delivered', 'read', 'failed', 'skipped', 'cancelled'))
           AS final,
       count(*) AS total
FROM recipients WHERE campaign_id = $1;

-- name: mark_recipients_archived
-- In the transaction that moved the campaign's recipient rows into the archive schema.
UPDATE campaigns SET recipients_archived_at = now() WHERE id = $1;

-- name: status_of
SELECT status FROM campaigns WHERE id = $1;

-- name: transition
-- The one writer of a campaign's status (store/campaigns.transition): $1 campaigns, $2 the
-- account they must belong to (NULL for the pipeline's own commands), $3 the status the
-- command leads to and $4 the statuses it is allowed from (both from domain/campaign's
-- table), $5 a pause's reason. The trigger (0016) moves batches and fallback work along.
UPDATE campaigns c
SET status = $3,
    pause_reason = CASE WHEN $3 = 'paused' THEN $5 END,
    started_at = CASE WHEN $3 = 'sending' THEN coalesce(c.started_at, now())
                      ELSE c.started_at END,
    completed_at = CASE WHEN $3 IN ('completed', 'cancelled', 'failed') THEN now()
                        ELSE c.completed_at END
WHERE c.id = ANY ($1::text[]) AND ($2::text IS NULL OR c.account_id = $2)
  AND c.status = ANY ($4::text[])
RETURNING c.id;

-- name: insert_cancelled
-- A confirmed campaign of the account cancelled before the scheduler received it: its
-- pipeline row is created here, already cancelled, so the scheduler's own insert of that
-- campaign is a no-op. Nothing when the row exists (store/campaigns.transition moves it).
INSERT INTO campaigns (id, account_id, name, status, sending_mode, event, scheduled_at,
                       batch_size, batch_delay_ms, fallback_window_s, completed_at)
SELECT d.id, d.account_id, d.name, 'cancelled', d.sending_mode, d.event, d.scheduled_at,
       coalesce((d.event ->> 'batch_size')::integer, 100000),
       coalesce((d.event ->> 'batch_delay_ms')::integer, 0),
       coalesce((d.event ->> 'fallback_window_s')::integer, 900), now()
FROM campaign_drafts d
WHERE d.account_id = $1 AND d.id = $2 AND d.confirmed_at IS NOT NULL AND d.deleted_at IS NULL
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: rewrite_scheduled
-- A confirmed campaign that has not started takes its changed event: the pipeline row is
-- rewritten only while it is still scheduled and unexpanded, or created now (so that the
-- scheduler's own insert of the earlier event, still on its way, does nothing). $10: the
-- statuses a reschedule is allowed from (domain/campaign).
INSERT INTO campaigns AS c (id, account_id, name, status, sending_mode, event, scheduled_at,
                            batch_size, batch_delay_ms, fallback_window_s)
VALUES ($2, $1, $3, 'scheduled', $4, $5::jsonb, $6, $7, $8, $9)
ON CONFLICT (id) DO UPDATE
SET name = EXCLUDED.name, sending_mode = EXCLUDED.sending_mode, event = EXCLUDED.event,
    scheduled_at = EXCLUDED.scheduled_at, batch_size = EXCLUDED.batch_size,
    batch_delay_ms = EXCLUDED.batch_delay_ms, fallback_window_s = EXCLUDED.fallback_window_s
WHERE c.account_id = $1 AND c.status = ANY ($10::text[]) AND c.expanded_at IS NULL
RETURNING c.id;

-- name: cancel_unsent
-- A cancelled campaign's recipients that no worker holds, marked cancelled at once with their
-- counters: queued and never tried, in batches not yet due (pacing), which become due now.
-- The batches that were due or in a worker's hands are republished by the trigger, and the
-- worker marks what it reaches. Recipients first, then the campaign row: the fold's lock order.
WITH later AS (
    SELECT batch_no, first_id, last_id FROM batches
    WHERE campaign_id = $1 AND done_at IS NULL AND not_before > now()
    FOR UPDATE
), gone AS (
    UPDATE recipients r
    SET status = 'cancelled', error_code = 'campaign_cancelled',
        error_description = 'the campaign was cancelled before this recipient was sent',
        updated_at = now()
    FROM later
    WHERE r.campaign_id = $1 AND r.id BETWEEN later.first_id AND later.last_id
      AND r.status = 'queued'
      AND NOT EXISTS (SELECT 1 FROM attempts a
                      WHERE a.campaign_id = $1 AND a.recipient_id = r.id)
    RETURNING r.id, r.variant
), due_now AS (
    -- Made due, so a worker closes them (and cancels anything left queued in them).
    UPDATE batches b SET not_before = now(), published_at = NULL
    FROM later WHERE b.campaign_id = $1 AND b.batch_no = later.batch_no
    RETURNING b.batch_no
), campaign AS (
    UPDATE campaigns
    SET cancelled = cancelled + (SELECT count(*) FROM gone),
        final = final + (SELECT count(*) FROM gone)
    WHERE id = $1 AND status = 'cancelled'
    RETURNING (SELECT count(*) FROM gone) AS cancelled, (SELECT count(*) FROM due_now) AS batches
), by_variant AS (
    -- Joined to the campaign's update, so these rows are locked after the campaign row, in
    -- the fold's order (apply_counters, then apply_variant_counters).
    UPDATE campaign_variant_counters v
    SET cancelled = v.cancelled + g.n, final = v.final + g.n
    FROM campaign,
         (SELECT variant, count(*) AS n FROM gone WHERE variant IS NOT NULL
          GROUP BY variant) AS g
    WHERE v.campaign_id = $1 AND v.variant = g.variant
)
SELECT cancelled, batches FROM campaign;

-- name: count_by_status
SELECT status, count(*) AS campaigns FROM campaigns GROUP BY status;

-- name: sending_modes
-- Each campaign's chain, and the channels whose fallback step ends the chain once the
-- provider took the message (success accepted or sent).
SELECT id, sending_mode,
       ARRAY(SELECT key FROM jsonb_each(fallback_policy)
             WHERE value ->> 'success' IN ('accepted', 'sent')) AS stop_on_acceptance
FROM campaigns WHERE id = ANY ($1::text[]);

-- name: sending_progress
-- Every sending campaign: a number that moves whenever one of its counters does, and how long
-- it may sit still on its own (its fallback window plus its batch delay), for the stall gauge.
SELECT id,
       (sent + delivered + read + failed + skipped + cancelled + final)::bigint AS counters,
       (fallback_window_s + batch_delay_ms / 1000.0)::float8 AS quiet_s
FROM campaigns WHERE status = 'sending';
