-- The control-plane API: keys, contact preferences, segments, templates, campaign drafts and
-- the outbox that carries campaign.confirmed to Kafka.

-- API keys belong to accounts; only the SHA-256 of a key is stored.
CREATE TABLE api_keys (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            text NOT NULL DEFAULT '',
    key_hash        bytea NOT NULL UNIQUE,          -- sha256(key)
    prefix          text NOT NULL,                  -- first characters, to tell keys apart
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);
CREATE INDEX api_keys_account_idx ON api_keys (account_id);

-- Contacts: the Orbit fields herald lacked, and an index for full-text search.
ALTER TABLE contacts ADD COLUMN country_code text;

-- The words a contact is found by: names, the email whole and in parts, the phone with and
-- without punctuation. IMMUTABLE so an expression index can use it.
CREATE FUNCTION herald_contact_document(
    first_name text, last_name text, phone text, email text
) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT to_tsvector(
    'simple'::regconfig,
    coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' ||
    coalesce(email, '') || ' ' || translate(coalesce(email, ''), '@.+_-', '     ') || ' ' ||
    regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')
)
$$;

CREATE INDEX contacts_search_idx ON contacts
    USING gin (herald_contact_document(first_name, last_name, phone, email));
CREATE INDEX contacts_account_created_idx ON contacts (account_id, created_at DESC, id DESC);
CREATE INDEX contacts_account_stage_idx ON contacts (account_id, lifecycle_stage);

-- Per-channel consent. No row means no recorded choice (sending is allowed).
CREATE TABLE contact_preferences (
    contact_id      uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel         text NOT NULL,
    opted_in        boolean NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, channel)
);
CREATE INDEX contact_preferences_optout_idx ON contact_preferences (channel, contact_id)
    WHERE NOT opted_in;

-- Lists: a description, and the reverse index that contact deletes cascade through.
ALTER TABLE lists ADD COLUMN description text NOT NULL DEFAULT '';
ALTER TABLE lists ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX lists_account_idx ON lists (account_id, created_at DESC, id DESC);
CREATE INDEX list_members_contact_idx ON list_members (contact_id);

-- The contact activity timeline reads a contact's recipient rows.
CREATE INDEX recipients_contact_idx ON recipients (contact_id) WHERE contact_id IS NOT NULL;

-- Dynamic segments: rules compiled to parameterised SQL when read (domain/segments.py).
CREATE TABLE segments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            text NOT NULL,
    description     text NOT NULL DEFAULT '',
    rules           jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX segments_account_idx ON segments (account_id, created_at DESC, id DESC);

-- Segment rules compare custom attributes as numbers or dates; a value that is neither
-- must not fail the whole query, so these casts answer NULL instead of raising.
CREATE FUNCTION herald_try_numeric(value text) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::numeric;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

CREATE FUNCTION herald_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- Message templates per channel. WhatsApp templates wait for approval; others need none.
CREATE TABLE templates (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                text NOT NULL,
    channel             text NOT NULL,
    language            text NOT NULL DEFAULT 'en',
    category            text,
    sender              text,
    subject             text,
    body                text,
    components          jsonb,
    approval_status     text NOT NULL,   -- approved, pending, rejected
    rejection_reason    text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX templates_account_idx ON templates (account_id, created_at DESC, id DESC);

-- Campaigns as the API holds them until and after confirmation. The pipeline's own record
-- (campaigns) appears when the scheduler consumes campaign.confirmed.
CREATE TABLE campaign_drafts (
    id                  text PRIMARY KEY,
    account_id          text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                text NOT NULL,
    description         text NOT NULL DEFAULT '',
    sending_mode        text NOT NULL,
    spec                jsonb NOT NULL,   -- content, audience and options as last written
    scheduled_at        timestamptz,
    ready_to_send       boolean NOT NULL DEFAULT false,
    goal_recipients     integer,
    goal_cost           numeric(18, 6),
    goal_calculated_at  timestamptz,
    confirmed_at        timestamptz,
    event               jsonb,            -- campaign.confirmed as written to the outbox
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaign_drafts_account_idx ON campaign_drafts (account_id, created_at DESC, id DESC);

-- Every campaign an account can see: API drafts (with the pipeline's progress once
-- confirmed) and campaigns other upstream APIs confirmed straight onto Kafka.
CREATE VIEW campaign_overview AS
SELECT d.id, d.account_id, d.name, d.description, d.sending_mode,
       CASE WHEN c.id IS NOT NULL THEN c.status
            WHEN d.confirmed_at IS NULL THEN 'draft'
            ELSE 'scheduled' END AS status,
       d.spec, d.scheduled_at, d.ready_to_send, d.goal_recipients, d.goal_cost,
       d.goal_calculated_at, d.confirmed_at, d.created_at, d.updated_at,
       c.total_recipients, c.sent, c.delivered, c.read, c.failed, c.skipped, c.final,
       c.pause_reason, c.batch_size, c.batch_delay_ms, c.fallback_window_s,
       c.started_at, c.completed_at
FROM campaign_drafts d LEFT JOIN campaigns c ON c.id = d.id
UNION ALL
SELECT c.id, c.account_id, c.name, '' AS description, c.sending_mode, c.status,
       NULL::jsonb AS spec, c.scheduled_at, true AS ready_to_send, NULL::integer,
       NULL::numeric, NULL::timestamptz, c.created_at AS confirmed_at, c.created_at,
       c.created_at AS updated_at,
       c.total_recipients, c.sent, c.delivered, c.read, c.failed, c.skipped, c.final,
       c.pause_reason, c.batch_size, c.batch_delay_ms, c.fallback_window_s,
       c.started_at, c.completed_at
FROM campaigns c
WHERE NOT EXISTS (SELECT 1 FROM campaign_drafts d WHERE d.id = c.id);

-- Transactional outbox: written with the change it announces, published by the relay.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    topic           text NOT NULL,      -- logical topic name, without the deployment prefix
    key             text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    published_at    timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (id) WHERE published_at IS NULL;
