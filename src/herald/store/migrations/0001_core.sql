-- Accounts, contacts and the audience sources a campaign can name.
CREATE TABLE accounts (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    rate_per_s      double precision,            -- null: the deployment default
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contacts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    phone           text,
    email           text,
    first_name      text,
    last_name       text,
    lifecycle_stage text,
    attributes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    tags            text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_account_idx ON contacts (account_id, id);
CREATE INDEX contacts_tags_idx ON contacts USING gin (tags);

CREATE TABLE lists (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE list_members (
    list_id         uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    contact_id      uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_id, contact_id)
);

-- Campaigns as herald received them, with exact counters folded by the status consumer.
CREATE TABLE campaigns (
    id                  text PRIMARY KEY,
    account_id          text NOT NULL,
    name                text NOT NULL DEFAULT '',
    status              text NOT NULL,   -- scheduled, sending, paused, completed, cancelled
    sending_mode        text NOT NULL,
    event               jsonb NOT NULL,  -- the campaign.confirmed event, as received
    scheduled_at        timestamptz,
    batch_size          integer NOT NULL,
    batch_delay_ms      integer NOT NULL DEFAULT 0,
    fallback_window_s   integer NOT NULL,
    total_recipients    integer NOT NULL DEFAULT 0,
    expanded_at         timestamptz,
    sent                integer NOT NULL DEFAULT 0,
    delivered           integer NOT NULL DEFAULT 0,
    read                integer NOT NULL DEFAULT 0,
    failed              integer NOT NULL DEFAULT 0,
    skipped             integer NOT NULL DEFAULT 0,
    final               integer NOT NULL DEFAULT 0,
    pause_reason        text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    completed_at        timestamptz
);
CREATE INDEX campaigns_due_idx ON campaigns (scheduled_at) WHERE status = 'scheduled';
CREATE INDEX campaigns_account_idx ON campaigns (account_id, created_at);

CREATE TABLE campaign_channel_counters (
    campaign_id     text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    channel         text NOT NULL,
    sent            integer NOT NULL DEFAULT 0,
    delivered       integer NOT NULL DEFAULT 0,
    read            integer NOT NULL DEFAULT 0,
    failed          integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, channel)
);

-- One row per recipient of a campaign; id is dense from 1 so batches are id ranges.
-- Contact fields are read at send time through contact_id, which keeps expansion lean.
CREATE TABLE recipients (
    campaign_id         text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    id                  integer NOT NULL,
    contact_id          uuid,
    phone               text,
    email               text,
    status              text NOT NULL DEFAULT 'queued',
    accepted            boolean NOT NULL DEFAULT false,
    channel             text,
    error_code          text,
    error_description   text,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, id)
);

-- Dispatch batches: id ranges of a campaign's recipients, published on dispatch-batches.
CREATE TABLE batches (
    campaign_id     text NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    batch_no        integer NOT NULL,
    first_id        integer NOT NULL,
    last_id         integer NOT NULL,
    not_before      timestamptz NOT NULL,
    published_at    timestamptz,
    done_at         timestamptz,
    PRIMARY KEY (campaign_id, batch_no)
);

-- Every send attempt, written before the provider call: the record that stops a second send.
CREATE TABLE attempts (
    campaign_id             text NOT NULL,
    recipient_id            integer NOT NULL,
    attempt_no              smallint NOT NULL,
    channel                 text NOT NULL,
    provider                text NOT NULL,
    -- What the send itself returned, written by the worker: pending until the provider
    -- answers, then accepted, rejected or ambiguous (the answer was lost).
    outcome                 text NOT NULL DEFAULT 'pending',
    -- The folded delivery state, written only by the status consumer.
    status                  text NOT NULL DEFAULT 'queued',
    accepted                boolean NOT NULL DEFAULT false,
    provider_message_id     text,
    error_code              text,
    error_description       text,
    sends                   smallint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign_id, recipient_id, attempt_no),
    UNIQUE (campaign_id, recipient_id, channel),
    FOREIGN KEY (campaign_id, recipient_id) REFERENCES recipients (campaign_id, id) ON DELETE CASCADE
);
CREATE INDEX attempts_provider_message_idx ON attempts (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
