-- Channel fallback: what the status consumer decided to try next, the window sweeper's mark,
-- and callbacks parked until the send they report on is recorded.

-- Set in the fold transaction when an attempt failed in a way that allows the next channel;
-- the status role publishes it as fallback work and stamps fallback_published_at.
ALTER TABLE recipients ADD COLUMN next_attempt smallint;
ALTER TABLE recipients ADD COLUMN fallback_published_at timestamptz;
CREATE INDEX recipients_fallback_due_idx ON recipients (campaign_id, id)
    WHERE next_attempt IS NOT NULL AND fallback_published_at IS NULL;

-- The worker's own reading of each send answer, and when the fallback window of an
-- accepted attempt was declared over.
ALTER TABLE attempts ADD COLUMN window_expired_at timestamptz;
CREATE INDEX attempts_waiting_idx ON attempts (created_at)
    WHERE status = 'sent' AND window_expired_at IS NULL;

-- Callbacks that name only a provider message id not recorded yet (the callback raced the
-- send's bookkeeping). Retried until resolved or too old, then dead-lettered with the reason.
CREATE TABLE parked_status_events (
    id                      bigserial PRIMARY KEY,
    provider_message_id     text NOT NULL,
    event                   jsonb NOT NULL,
    parked_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_status_events_parked_idx ON parked_status_events (parked_at);
