-- Account settings through the API: a key may be an admin key (it may change the account's
-- rate and quiet hours). `herald keys create` makes admin keys; keys made through the API are
-- not, unless an admin key asks. Keys made before this migration stay plain: an operator
-- makes an admin key with the CLI.
ALTER TABLE api_keys ADD COLUMN admin boolean NOT NULL DEFAULT false;

-- What the API accepts, kept by the table too: a positive rate; quiet hours both or neither.
ALTER TABLE accounts ADD CONSTRAINT accounts_rate_positive
    CHECK (rate_per_s IS NULL OR rate_per_s > 0) NOT VALID;
ALTER TABLE accounts ADD CONSTRAINT accounts_quiet_hours
    CHECK ((quiet_start_hour IS NULL) = (quiet_end_hour IS NULL)
           AND quiet_start_hour BETWEEN 0 AND 23 AND quiet_end_hour BETWEEN 0 AND 23) NOT VALID;
