-- name: ping
-- A readiness check: the server answers, through the pool.
SELECT 1;
