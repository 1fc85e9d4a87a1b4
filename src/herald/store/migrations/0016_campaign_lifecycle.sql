-- The campaign lifecycle (domain/campaign.py): the status column holds only its values, a
-- campaign that is started but not yet expanded is found by the scheduler, a resume keeps
-- the batch pacing, and a cancel republishes what is due at once.
ALTER TABLE campaigns ADD CONSTRAINT campaigns_status_check
    CHECK (status IN ('scheduled', 'sending', 'paused', 'completed', 'cancelled', 'failed'));

-- "Send now" and the API's confirm start a campaign (sending) before the scheduler expands it.
CREATE INDEX campaigns_unexpanded_idx ON campaigns (created_at)
    WHERE expanded_at IS NULL AND status IN ('scheduled', 'sending');

-- Whoever changes a campaign's status, the batches follow:
-- - resume republishes the unfinished batches, the first now and each next one
--   batch_delay_ms later (never earlier than it was due), so pacing survives a pause;
-- - cancel republishes the unfinished batches that are due, and fallback work, so workers
--   mark what they hold cancelled (store/campaigns.cancel_unsent marks the batches not yet
--   due at once).
CREATE OR REPLACE FUNCTION herald_campaign_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'paused' AND OLD.status IS DISTINCT FROM 'paused' THEN
        NEW.paused_at := now();
    END IF;
    IF OLD.status = 'paused' AND NEW.status = 'sending' THEN
        NEW.paused_at := NULL;
        UPDATE batches b
        SET published_at = NULL,
            not_before = greatest(b.not_before,
                                  now() + (k.rank - 1) * NEW.batch_delay_ms::bigint
                                          * interval '1 millisecond')
        FROM (SELECT batch_no, row_number() OVER (ORDER BY batch_no) AS rank
              FROM batches WHERE campaign_id = NEW.id AND done_at IS NULL) AS k
        WHERE b.campaign_id = NEW.id AND b.batch_no = k.batch_no;
        UPDATE recipients SET fallback_published_at = NULL
        WHERE campaign_id = NEW.id AND next_attempt IS NOT NULL
          AND status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled');
    END IF;
    IF NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled' THEN
        NEW.paused_at := NULL;
        UPDATE batches SET published_at = NULL
        WHERE campaign_id = NEW.id AND done_at IS NULL AND not_before <= now();
        UPDATE recipients SET fallback_published_at = NULL
        WHERE campaign_id = NEW.id AND next_attempt IS NOT NULL
          AND status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled');
    END IF;
    RETURN NEW;
END;
$$;
