-- name: ensure
INSERT INTO accounts (id, name, rate_per_s) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, rate_per_s = EXCLUDED.rate_per_s;

-- name: settings
-- An account's own rate (null: the deployment default), quiet hours and confirm workflow;
-- no row: unknown.
SELECT rate_per_s, quiet_start_hour, quiet_end_hour, confirm_requires_goal
FROM accounts WHERE id = $1;

-- name: update_settings
-- $2 rate per second (null: the deployment default), $3 and $4 quiet hours (both or neither),
-- $5 seed 002's confirm workflow.
UPDATE accounts SET rate_per_s = $2, quiet_start_hour = $3, quiet_end_hour = $4,
                    confirm_requires_goal = $5
WHERE id = $1
RETURNING rate_per_s, quiet_start_hour, quiet_end_hour, confirm_requires_goal;

-- name: confirm_requires_goal
-- Whether confirm requires seed 002's workflow (ready, costed, price unchanged); no row: false.
SELECT coalesce((SELECT confirm_requires_goal FROM accounts WHERE id = $1), false);
