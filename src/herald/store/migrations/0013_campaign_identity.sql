-- Campaign identity is (account, id): a draft shows only its own account's pipeline row, and
-- a pipeline row without a draft of its account is listed as that account's campaign.
CREATE OR REPLACE VIEW campaign_overview AS
SELECT d.id, d.account_id, d.name, d.description, d.sending_mode,
       CASE WHEN c.id IS NOT NULL THEN c.status
            WHEN d.confirmed_at IS NULL THEN 'draft'
            ELSE 'scheduled' END AS status,
       d.spec, d.scheduled_at, d.ready_to_send, d.goal_recipients, d.goal_cost,
       d.goal_calculated_at, d.confirmed_at, d.created_at, d.updated_at,
       c.total_recipients, c.sent, c.delivered, c.read, c.failed, c.skipped, c.final,
       c.pause_reason, c.batch_size, c.batch_delay_ms, c.fallback_window_s,
       c.started_at, c.completed_at
FROM campaign_drafts d LEFT JOIN campaigns c ON c.id = d.id AND c.account_id = d.account_id
WHERE d.deleted_at IS NULL
UNION ALL
SELECT c.id, c.account_id, c.name, '' AS description, c.sending_mode, c.status,
       NULL::jsonb AS spec, c.scheduled_at, true AS ready_to_send, NULL::integer,
       NULL::numeric, NULL::timestamptz, c.created_at AS confirmed_at, c.created_at,
       c.created_at AS updated_at,
       c.total_recipients, c.sent, c.delivered, c.read, c.failed, c.skipped, c.final,
       c.pause_reason, c.batch_size, c.batch_delay_ms, c.fallback_window_s,
       c.started_at, c.completed_at
FROM campaigns c
WHERE NOT EXISTS (
    SELECT 1 FROM campaign_drafts d WHERE d.id = c.id AND d.account_id = c.account_id
);
