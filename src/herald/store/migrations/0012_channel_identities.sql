-- Channel identities: a contact's address on a channel that does not address people by phone
-- or email (a Viber user id, learned from Viber's conversation_started/subscribed callbacks or
-- set through the contacts API). A table rather than a column on contacts: one row per
-- channel that needs it, a reverse lookup by address (an `unsubscribed` names only the user
-- id), and contacts rows (wide, searched) are not rewritten when a user subscribes.
CREATE TABLE contact_identities (
    account_id      text NOT NULL,
    contact_id      uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel         text NOT NULL,
    address         text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, channel),
    -- One contact per address in an account: a user who follows another contact's link moves.
    UNIQUE (account_id, channel, address)
);
-- `unsubscribed` removes a user id from every account it is linked in.
CREATE INDEX contact_identities_address_idx ON contact_identities (channel, address);
