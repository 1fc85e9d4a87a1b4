-- Seed 002's confirm workflow, when an account asks for it (docs/api.md "Confirm
-- workflow"): confirm then requires ready_to_send, a calculated goal, and that goal's price
-- unchanged at confirm. Off for every account until set.
ALTER TABLE accounts ADD COLUMN confirm_requires_goal boolean NOT NULL DEFAULT false;
