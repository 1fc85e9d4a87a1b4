-- Pause, resume and cancel. Cancelled recipients are a final state with their own counter;
-- resuming republishes the batches a pause left unfinished.
ALTER TABLE campaigns ADD COLUMN cancelled integer NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN paused_at timestamptz;

-- Quiet hours per account, in the recipient's local time (from the phone number's country).
ALTER TABLE accounts ADD COLUMN quiet_start_hour smallint;
ALTER TABLE accounts ADD COLUMN quiet_end_hour smallint;
-- Recipients held until a time (quiet hours); published again as work when it comes.
ALTER TABLE recipients ADD COLUMN hold_until timestamptz;

-- Whoever changes a campaign's status (the API, an operator's SQL, the error budget), the
-- batches follow: resume republishes unfinished batches; cancel publishes the rest too, so
-- workers mark their queued recipients cancelled through the status consumer.
CREATE FUNCTION herald_campaign_status_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status = 'paused' AND OLD.status IS DISTINCT FROM 'paused' THEN
        NEW.paused_at := now();
    END IF;
    IF (OLD.status = 'paused' AND NEW.status = 'sending')
       OR (NEW.status = 'cancelled' AND OLD.status IS DISTINCT FROM 'cancelled') THEN
        NEW.paused_at := NULL;
        UPDATE batches SET published_at = NULL
        WHERE campaign_id = NEW.id AND done_at IS NULL;
        UPDATE recipients SET fallback_published_at = NULL
        WHERE campaign_id = NEW.id AND next_attempt IS NOT NULL
          AND status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled');
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER campaigns_status_changed
    BEFORE UPDATE OF status ON campaigns
    FOR EACH ROW EXECUTE FUNCTION herald_campaign_status_changed();
