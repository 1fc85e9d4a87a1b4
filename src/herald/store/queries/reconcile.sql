-- name: touch_batch
-- A worker's checkpoint: the batch is alive, so the reconciler leaves it alone.
UPDATE batches SET progress_at = now() WHERE campaign_id = $1 AND batch_no = $2;

-- name: stale_batches
-- Batches published but neither done nor moving for $1 seconds, of campaigns that still
-- send (or mark their unsent recipients cancelled): their message was lost (a broker that
-- came back empty, retention, an offset reset). Unpublished again, so the scheduler
-- publishes them anew; a batch that is in fact still running finds nothing left to send.
UPDATE batches b SET published_at = NULL, progress_at = NULL
FROM campaigns c
WHERE c.id = b.campaign_id AND c.status IN ('sending', 'cancelled')
  AND b.done_at IS NULL AND b.published_at IS NOT NULL
  AND greatest(b.published_at, coalesce(b.progress_at, b.published_at))
      < now() - make_interval(secs => $1)
RETURNING b.campaign_id, b.batch_no;

-- name: stranded_batches
-- A campaign all of whose batches are done ($1 seconds ago and more) but some of whose
-- recipients are still queued: the worker's status events were lost after it finished
-- (Kafka kept nothing). Those batches run again; the worker finds the attempt rows and
-- publishes the recorded outcomes again, or sends what was never sent. Recipients held for
-- quiet hours or waiting for their next channel are not stranded: other paths own them.
UPDATE batches b SET published_at = NULL, done_at = NULL, progress_at = NULL
FROM campaigns c
WHERE c.id = b.campaign_id AND c.status IN ('sending', 'cancelled')
  AND c.final < c.total_recipients
  AND b.done_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM batches o WHERE o.campaign_id = c.id AND o.done_at IS NULL)
  AND EXISTS (
      SELECT 1 FROM recipients r
      WHERE r.campaign_id = b.campaign_id AND r.id BETWEEN b.first_id AND b.last_id
        AND r.status = 'queued' AND r.hold_until IS NULL AND r.next_attempt IS NULL)
RETURNING b.campaign_id, b.batch_no;

-- name: stale_fallbacks
-- Fallback work published $1 seconds ago and still not taken: published again by the status
-- role's sweep. Taken means the worker wrote the attempt the work asked for (next_attempt,
-- or a later one); a recipient that is final needs none. Work that was taken is never put
-- back, so a slow worker with a backlog is not flooded with copies of what it already has.
UPDATE recipients r SET fallback_published_at = NULL
WHERE r.next_attempt IS NOT NULL AND r.fallback_published_at IS NOT NULL
  AND r.fallback_published_at < now() - make_interval(secs => $1)
  AND r.status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled')
  AND NOT EXISTS (SELECT 1 FROM attempts a
                  WHERE a.campaign_id = r.campaign_id AND a.recipient_id = r.id
                    AND a.attempt_no >= r.next_attempt)
RETURNING r.campaign_id, r.id;

-- name: unadmitted
-- Campaigns confirmed through the API $1 seconds ago whose campaign.confirmed never reached
-- the scheduler: admitted from the event the draft keeps.
SELECT d.account_id, d.id, d.event FROM campaign_drafts d
WHERE d.confirmed_at < now() - make_interval(secs => $1)
  AND d.deleted_at IS NULL AND d.event IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = d.id AND c.account_id = d.account_id)
ORDER BY d.confirmed_at
LIMIT $2;
