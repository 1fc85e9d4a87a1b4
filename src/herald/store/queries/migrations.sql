-- name: create_table
CREATE TABLE IF NOT EXISTS herald_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied
SELECT version FROM herald_migrations ORDER BY version;

-- name: record
INSERT INTO herald_migrations (version, name) VALUES ($1, $2);

-- name: lock
SELECT pg_advisory_lock($1);

-- name: unlock
SELECT pg_advisory_unlock($1);
