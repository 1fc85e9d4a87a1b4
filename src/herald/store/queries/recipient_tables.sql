-- name: stage
-- The standalone table a campaign's expansion loads (0021): its name.
SELECT herald_recipients_stage($1);

-- name: place
-- The loaded table becomes the campaign's own partition ($2 true) or moves into the DEFAULT
-- partition (0021).
SELECT herald_recipients_place($1, $2);

-- name: archivable
-- An expanded campaign that ended ($2: the ended statuses) before $1 and still has its
-- recipient rows, locked so one archiver takes it; the oldest first.
SELECT id FROM campaigns
WHERE recipients_archived_at IS NULL AND expanded_at IS NOT NULL
  AND completed_at < $1 AND status = ANY ($2::text[])
ORDER BY completed_at
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: archive_lock_timeout
-- Detaching a partition locks recipients exclusively (a DEFAULT partition rules out DETACH
-- CONCURRENTLY); waiting behind a long reader would queue every fold behind it, so a round
-- gives up and the next one tries again.
SET LOCAL lock_timeout = '2s';

-- name: archive
-- The campaign's rows into archive.<its table> (0021); the table's name.
SELECT herald_recipients_archive($1);

-- name: archived_at
SELECT recipients_archived_at FROM campaigns WHERE id = $1;

-- name: own_partition
-- Whether the campaign's rows have their own partition of recipients.
SELECT EXISTS (
    SELECT 1 FROM pg_inherits i
    WHERE i.inhparent = 'recipients'::regclass
      AND i.inhrelid = to_regclass(format('public.%I', herald_recipients_table($1)))
);
