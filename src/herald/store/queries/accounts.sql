-- name: ensure
INSERT INTO accounts (id, name, rate_per_s) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, rate_per_s = EXCLUDED.rate_per_s;

-- name: rate
SELECT rate_per_s FROM accounts WHERE id = $1;

-- name: quiet_hours
SELECT quiet_start_hour, quiet_end_hour FROM accounts WHERE id = $1;
