-- Provider accounts: which provider account sends an account's messages on a channel, in
-- priority order (lowest first), so a failing one is drained to the next. A row without an
-- account_id is a deployment-wide default. Credentials never live here: secret_ref names a
-- HERALD_SECRET_<NAME> variable (a Kubernetes Secret in production).
CREATE TABLE provider_accounts (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id      text REFERENCES accounts (id) ON DELETE CASCADE,
    channel         text NOT NULL,
    provider        text NOT NULL,   -- twilio, whatsapp, rbm, viber, smtp
    label           text NOT NULL,   -- shown on attempts and metrics, e.g. twilio-eu
    priority        smallint NOT NULL DEFAULT 100,
    base_url        text NOT NULL DEFAULT '',
    options         jsonb NOT NULL DEFAULT '{}'::jsonb,  -- non-secret: sids, sender ids, hosts
    secret_ref      text,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (channel IN ('sms', 'whatsapp', 'rcs', 'viber', 'email')),
    CHECK (provider IN ('twilio', 'whatsapp', 'rbm', 'viber', 'smtp'))
);
CREATE INDEX provider_accounts_lookup_idx ON provider_accounts (account_id, channel, priority)
    WHERE enabled;
