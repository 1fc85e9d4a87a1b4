-- What the reconciler needs to find work Kafka lost: when a batch last made progress (a
-- worker stamps it per chunk), and fallback work published but never taken.
ALTER TABLE batches ADD COLUMN progress_at timestamptz;
CREATE INDEX batches_unfinished_idx ON batches (published_at)
    WHERE done_at IS NULL AND published_at IS NOT NULL;
CREATE INDEX recipients_fallback_taken_idx ON recipients (fallback_published_at)
    WHERE next_attempt IS NOT NULL AND fallback_published_at IS NOT NULL;
