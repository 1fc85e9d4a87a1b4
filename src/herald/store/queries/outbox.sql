-- name: insert
INSERT INTO outbox (topic, key, payload) VALUES ($1, $2, $3) RETURNING id;

-- name: claim
-- Oldest unpublished rows, locked for this relay; other relays skip them.
SELECT id, topic, key, payload FROM outbox
WHERE published_at IS NULL
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: mark_published
UPDATE outbox SET published_at = now() WHERE id = ANY ($1::bigint[]);

-- name: purge
-- Published rows past retention; unpublished rows are never purged.
DELETE FROM outbox WHERE published_at < now() - $1::bigint * interval '1 second';

-- name: pending
SELECT count(*) FROM outbox WHERE published_at IS NULL;

-- name: backlog
-- Rows not yet published, and how long the oldest of them has waited (for the alert).
SELECT count(*) AS pending,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_s
FROM outbox WHERE published_at IS NULL;
