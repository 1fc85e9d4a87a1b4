-- name: park
INSERT INTO parked_status_events (provider_message_id, event)
SELECT * FROM unnest($1::text[], $2::jsonb[]);

-- name: claim
-- Parked events to try again; the caller deletes the ones it resolves or gives up on.
SELECT id, provider_message_id, event, parked_at < now() - make_interval(secs => $2) AS expired
FROM parked_status_events
ORDER BY id
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: delete
DELETE FROM parked_status_events WHERE id = ANY ($1::bigint[]);
