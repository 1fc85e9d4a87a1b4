-- The window sweeper revokes RBM messages outside any transaction (an HTTP call must never
-- hold rows the status fold locks). It leases the attempts it is about to revoke, so two
-- sweepers never revoke one message at once, and records a won revoke before publishing
-- the failure: RBM answers a repeated revoke 404, the same as "delivered first", so the
-- record is what tells a later round that the failure is still owed.
ALTER TABLE attempts ADD COLUMN window_leased_until timestamptz;
ALTER TABLE attempts ADD COLUMN revoked_at timestamptz;
