-- A/B test results as exact counters per (campaign, variant), like campaigns' own: set at
-- expansion (recipients per variant) and moved by the status fold and by cancel_unsent in the
-- transaction that moves the campaign's, so the report reads a few rows instead of counting
-- every recipient row of the campaign. pending = recipients - final.
CREATE TABLE campaign_variant_counters (
    campaign_id     text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    variant         smallint NOT NULL,
    recipients      integer NOT NULL DEFAULT 0,
    sent            integer NOT NULL DEFAULT 0,
    delivered       integer NOT NULL DEFAULT 0,
    read            integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    skipped         integer NOT NULL DEFAULT 0,
    cancelled       integer NOT NULL DEFAULT 0,
    final           integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, variant)
);

-- Campaigns expanded before this migration: counted once, from their rows.
INSERT INTO campaign_variant_counters (campaign_id, variant, recipients, sent, delivered, read,
                                       failed, skipped, cancelled, final)
SELECT campaign_id, variant, count(*), count(*) FILTER (WHERE accepted),
       count(*) FILTER (WHERE status IN ('delivered', 'read')),
       count(*) FILTER (WHERE status = 'read'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'skipped'), count(*) FILTER (WHERE status = 'cancelled'),
       count(*) FILTER (WHERE status IN ('delivered', 'read', 'failed', 'skipped', 'cancelled'))
FROM recipients
WHERE variant IS NOT NULL
GROUP BY campaign_id, variant;
