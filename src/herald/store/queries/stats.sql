-- name: summary
-- Recipient totals over the account's campaigns created in [$2, $3), of sending modes $4
-- (null: all): each recipient counts once, at its outcome (the campaigns' folded counters).
SELECT count(*) AS total_campaigns,
       count(*) FILTER (WHERE status IN ('scheduled', 'sending', 'paused')) AS active_campaigns,
       coalesce(sum(total_recipients), 0) AS total_recipients,
       coalesce(sum(sent), 0) AS total_messages_sent,
       coalesce(sum(delivered), 0) AS total_delivered,
       coalesce(sum(read), 0) AS total_read,
       coalesce(sum(failed), 0) AS total_failed,
       coalesce(sum(skipped), 0) AS total_skipped,
       coalesce(sum((SELECT c.cancelled FROM campaigns c WHERE c.id = campaign_overview.id
                                         AND c.account_id = campaign_overview.account_id)), 0)
           AS total_cancelled
FROM campaign_overview
WHERE account_id = $1
  AND ($2::timestamptz IS NULL OR created_at >= $2)
  AND ($3::timestamptz IS NULL OR created_at < $3)
  AND ($4::text[] IS NULL OR sending_mode = ANY ($4::text[]));

-- name: channels
-- Messages (send attempts) per channel over the same campaigns as `summary`: a recipient whose
-- SMS failed and whose WhatsApp fallback was delivered counts once on each channel.
SELECT cc.channel, sum(cc.sent) AS sent, sum(cc.delivered) AS delivered,
       sum(cc.read) AS read, sum(cc.failed) AS failed
FROM campaign_overview o
JOIN campaigns c ON c.id = o.id AND c.account_id = o.account_id
JOIN campaign_channel_counters cc ON cc.campaign_id = c.id
WHERE o.account_id = $1
  AND ($2::timestamptz IS NULL OR o.created_at >= $2)
  AND ($3::timestamptz IS NULL OR o.created_at < $3)
  AND ($4::text[] IS NULL OR o.sending_mode = ANY ($4::text[]))
GROUP BY cc.channel
ORDER BY cc.channel;

-- name: campaign_channels
SELECT channel, sent, delivered, read, failed FROM campaign_channel_counters
WHERE campaign_id = $1 ORDER BY channel;

-- name: buckets
-- Messages per time bucket ($2: hour, day, week or month, in UTC) within [$3, $4): each
-- attempt counts in the bucket of its send, with the outcome it has now; skips count when
-- they were decided. $5 campaign (null: all the account's), $6 channel, $7 modes,
-- $8 keyset bucket, $9 ascending, $10 limit.
WITH scope AS (
    SELECT id FROM campaigns
    WHERE account_id = $1
      AND ($5::text IS NULL OR id = $5)
      AND ($7::text[] IS NULL OR sending_mode = ANY ($7::text[]))
      AND (started_at IS NULL OR started_at < $4)
      AND (completed_at IS NULL OR completed_at >= $3)
), events AS (
    SELECT a.created_at AS at, 1 AS attempts, a.accepted::int AS sent,
           (a.status IN ('delivered', 'read'))::int AS delivered,
           (a.status = 'read')::int AS read, (a.status = 'failed')::int AS failed,
           0 AS skipped
    FROM scope JOIN attempts a ON a.campaign_id = scope.id
    WHERE a.created_at >= $3 AND a.created_at < $4 AND ($6::text IS NULL OR a.channel = $6)
    UNION ALL
    SELECT r.updated_at, 0, 0, 0, 0, 0, 1
    FROM scope JOIN recipients r ON r.campaign_id = scope.id
    WHERE r.status = 'skipped' AND r.updated_at >= $3 AND r.updated_at < $4
      AND $6::text IS NULL
)
SELECT date_trunc($2, at, 'UTC') AS bucket, sum(attempts)::bigint AS attempts,
       sum(sent)::bigint AS sent, sum(delivered)::bigint AS delivered,
       sum(read)::bigint AS read, sum(failed)::bigint AS failed,
       sum(skipped)::bigint AS skipped
FROM events
GROUP BY 1
HAVING $8::timestamptz IS NULL
    OR CASE WHEN $9 THEN date_trunc($2, at, 'UTC') > $8
            ELSE date_trunc($2, at, 'UTC') < $8 END
ORDER BY CASE WHEN $9 THEN date_trunc($2, at, 'UTC') END ASC,
         date_trunc($2, at, 'UTC') DESC
LIMIT $10;
