-- A batch_size range is cut into one batch per sub-key of the account (domain/work.py), all
-- due together, so a resume keeps them together: it paces the unfinished batches by the
-- batch_size range they belong to, not one by one. The batches of one range share a rank
-- (and so a due time); each next range comes batch_delay_ms after the one before, never
-- earlier than it was due.
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
        FROM (SELECT batch_no,
                     dense_rank() OVER (ORDER BY (first_id - 1) / NEW.batch_size) AS rank
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
