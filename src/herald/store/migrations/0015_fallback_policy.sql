-- Per-channel fallback steps (campaign.confirmed `fallback`, domain/fallback.py), keyed by
-- channel for the window sweeper: {"whatsapp": {"after_s": 30, "success": "delivered"}}.
-- A column generated from the event, so every path that writes a campaign row (the
-- scheduler's insert, the API's reschedule and cancel) keeps it true without repeating the
-- rule, and expired_windows never reads the whole event (it may hold 100,000 destinations).
-- The event was validated before any insert: channels of the chain, one step each.
CREATE FUNCTION fallback_policy_of(steps jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(s ->> 'channel', s - 'channel'), '{}'::jsonb)
    FROM jsonb_array_elements(
        CASE WHEN jsonb_typeof(steps) = 'array' THEN steps ELSE '[]'::jsonb END) AS s
    WHERE jsonb_typeof(s) = 'object' AND s ? 'channel'
$$;

ALTER TABLE campaigns ADD COLUMN fallback_policy jsonb NOT NULL
    GENERATED ALWAYS AS (fallback_policy_of(event -> 'fallback')) STORED;
