-- The status fold rewrites an attempt row on each callback (sent, delivered, read). None of
-- those updates was HOT: attempts_waiting_idx was partial on `status`, so any status change
-- meant a new entry in every attempts index, about half of the fold's database time. The
-- window sweeper's index now hangs on `window_open` instead, which changes only when the
-- attempt stops waiting for its fallback window (a final status, or the window expired); and
-- half of each new page is left free so the fold's new row versions stay on their page.
--
-- window_open: true from insert while the attempt may still wait for its window; NULL or false
-- once it cannot (rows older than this migration that were done already stay NULL: no rewrite
-- of the whole table).
ALTER TABLE attempts ADD COLUMN window_open boolean;
UPDATE attempts SET window_open = true
WHERE status IN ('queued', 'sent') AND window_expired_at IS NULL;
ALTER TABLE attempts ALTER COLUMN window_open SET DEFAULT true;
CREATE INDEX attempts_window_open_idx ON attempts (created_at) WHERE window_open;
DROP INDEX attempts_waiting_idx;
ALTER TABLE attempts SET (fillfactor = 50);
