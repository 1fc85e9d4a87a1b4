-- name: insert_pending
-- Written before the provider call. Rows that already exist come back absent.
INSERT INTO attempts (campaign_id, recipient_id, attempt_no, channel, provider)
SELECT $1, r, a, $4, $5 FROM unnest($2::int[], $3::smallint[]) AS t (r, a)
ON CONFLICT DO NOTHING
RETURNING recipient_id;

-- name: follow_chain
-- Open recipients whose next attempt (on channel $3) starts now: the row names it. Locked in
-- id order first, as the status fold locks recipients, so the two never wait in a cycle.
WITH locked AS (
    SELECT r.id FROM recipients r
    WHERE r.campaign_id = $1 AND r.id = ANY ($2::int[])
      AND r.channel IS DISTINCT FROM $3
      AND r.status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled')
    ORDER BY r.id
    FOR NO KEY UPDATE OF r
)
UPDATE recipients r SET channel = $3, updated_at = now()
FROM locked WHERE r.campaign_id = $1 AND r.id = locked.id;

-- name: existing
SELECT recipient_id, attempt_no, outcome, provider_message_id, error_code, error_description,
       sends
FROM attempts
WHERE campaign_id = $1 AND recipient_id = ANY ($2::int[]) AND channel = $3;

-- name: claim_resend
-- The one repeat an ambiguous send may get (the provider took no idempotency key).
UPDATE attempts SET sends = sends + 1, updated_at = now()
WHERE campaign_id = $1 AND recipient_id = ANY ($2::int[]) AND channel = $3
  AND outcome IN ('pending', 'ambiguous') AND sends < 2
RETURNING recipient_id;

-- name: forget_unsent
-- Attempts written for sends a pause stopped before they started: no provider saw them.
DELETE FROM attempts
WHERE campaign_id = $1 AND recipient_id = ANY ($2::int[]) AND channel = $3
  AND outcome = 'pending' AND sends = 1;

-- name: record_results
-- Rows are locked in key order first, as the status fold locks them: two writers of the same
-- attempts never wait on each other in a cycle.
WITH s AS (
    SELECT * FROM unnest($2::int[], $3::smallint[], $4::text[], $5::text[], $6::text[],
                         $7::text[], $8::text[])
        AS s (recipient_id, attempt_no, provider, outcome, provider_message_id, error_code,
              error_description)
), locked AS (
    SELECT a.recipient_id, a.attempt_no FROM attempts a
    JOIN s ON a.campaign_id = $1 AND a.recipient_id = s.recipient_id
          AND a.attempt_no = s.attempt_no
    ORDER BY a.recipient_id, a.attempt_no
    FOR UPDATE OF a
)
UPDATE attempts a
SET outcome = s.outcome, provider = s.provider,
    provider_message_id = coalesce(a.provider_message_id, s.provider_message_id),
    error_code = coalesce(s.error_code, a.error_code),
    error_description = coalesce(s.error_description, a.error_description),
    updated_at = now()
FROM s JOIN locked USING (recipient_id, attempt_no)
WHERE a.campaign_id = $1 AND a.recipient_id = s.recipient_id AND a.attempt_no = s.attempt_no;

-- name: lock_states
-- $1: campaign ids, $2: attempt numbers, $3: the recipient ids of each (campaign, attempt) as
-- an integer array literal (store.queries.int_array); groups in (campaign, attempt)
-- order. One index scan per group, recipients in id order: record_results locks one attempt
-- number at a time in recipient order, so the two never wait on each other in a cycle.
-- Columns are read by position: the first is the group's position in $1.. (from 1), the last
-- says whether the row has its provider message id.
SELECT g.n, a.recipient_id, a.status, a.accepted, a.channel, a.error_code,
       a.error_description, a.created_at, a.provider_message_id IS NOT NULL
FROM unnest($1::text[], $2::smallint[], $3::text[]) WITH ORDINALITY
     AS g (campaign_id, attempt_no, ids, n)
CROSS JOIN LATERAL (
    SELECT a.recipient_id, a.status, a.accepted, a.channel, a.error_code, a.error_description,
           a.created_at, a.provider_message_id
    FROM attempts a
    WHERE a.campaign_id = g.campaign_id AND a.recipient_id = ANY (g.ids::int[])
      AND a.attempt_no = g.attempt_no
    ORDER BY a.recipient_id
    FOR UPDATE OF a
) AS a;

-- name: write_states
-- The fold's new states, one group per (campaign, attempt, state): $1 campaign ids, $2 attempt
-- numbers, $3 each group's recipient ids (an integer array literal), $4.. the state. Neither
-- status nor accepted is in an index, so the update stays on its page (HOT, migration 0022)
-- unless the attempt stops waiting for its fallback window (window_open, the sweeper's index).
UPDATE attempts a
SET status = g.status, accepted = g.accepted, error_code = g.error_code,
    error_description = g.error_description, updated_at = now(),
    window_open = a.window_open AND g.status IN ('queued', 'sent')
FROM unnest($1::text[], $2::smallint[], $3::text[], $4::text[], $5::bool[], $6::text[],
            $7::text[])
     AS g (campaign_id, attempt_no, ids, status, accepted, error_code, error_description)
WHERE a.campaign_id = g.campaign_id AND a.recipient_id = ANY (g.ids::int[])
  AND a.attempt_no = g.attempt_no;

-- name: write_states_with_message_id
-- The same for attempts whose row has no provider message id yet (the callback came before
-- the worker recorded the send's answer), one row each: $1: JSON array of [campaign_id,
-- recipient_id, attempt_no, status, accepted, provider_message_id, error_code,
-- error_description].
UPDATE attempts a
SET status = s.status, accepted = s.accepted,
    provider_message_id = coalesce(a.provider_message_id, s.provider_message_id),
    error_code = s.error_code, error_description = s.error_description, updated_at = now(),
    window_open = a.window_open AND s.status IN ('queued', 'sent')
FROM (SELECT x ->> 0 AS campaign_id, (x ->> 1)::int AS recipient_id,
             (x ->> 2)::smallint AS attempt_no, x ->> 3 AS status, (x ->> 4)::bool AS accepted,
             x ->> 5 AS provider_message_id, x ->> 6 AS error_code,
             x ->> 7 AS error_description
      FROM jsonb_array_elements($1::text::jsonb) AS x) AS s
WHERE a.campaign_id = s.campaign_id AND a.recipient_id = s.recipient_id
  AND a.attempt_no = s.attempt_no;

-- name: resolve
-- Attempts named only by the provider's message id (providers that do not echo ours).
SELECT provider_message_id, campaign_id, recipient_id, attempt_no, channel
FROM attempts WHERE provider_message_id = ANY ($1::text[]);

-- name: expired_windows
-- Accepted attempts of open recipients with no delivery inside their step's window (the
-- channel's after_s in the campaign's fallback policy, else the campaign's
-- fallback_window_s): the chain goes on, or on its last channel the recipient fails (no
-- report came). A step whose success is accepted or sent ends the chain there: chain_length
-- comes back as its own attempt number, so its expiry closes the recipient (failed, a late
-- delivery still wins) instead of trying the next channel; skipping it would leave the
-- recipient `sent` and its campaign open forever. domain/fallback.decide is this rule.
-- In every live status: a paused campaign's hand-overs wait for resume, a cancelled one's
-- end cancelled, and neither leaves recipients `sent` forever. Claimed so one sweeper
-- handles each; an attempt leased for a revoke in flight is left to its sweeper until the
-- lease lapses.
SELECT a.campaign_id, a.recipient_id, a.attempt_no, a.channel, a.provider, r.phone,
       CASE WHEN c.fallback_policy -> a.channel ->> 'success' IN ('accepted', 'sent')
            THEN a.attempt_no
            ELSE cardinality(string_to_array(c.sending_mode, '_'))
       END AS chain_length,
       a.revoked_at IS NOT NULL AS revoked
FROM attempts a
JOIN campaigns c ON c.id = a.campaign_id
JOIN recipients r ON r.campaign_id = a.campaign_id AND r.id = a.recipient_id
WHERE a.window_open AND a.status = 'sent' AND a.window_expired_at IS NULL
  AND (a.window_leased_until IS NULL OR a.window_leased_until < now())
  AND c.status IN ('sending', 'paused', 'cancelled')
  AND a.created_at < now() - make_interval(
      secs => coalesce((c.fallback_policy -> a.channel ->> 'after_s')::int,
                       c.fallback_window_s))
  AND r.status NOT IN ('delivered', 'read', 'failed', 'skipped', 'cancelled')
ORDER BY a.created_at
LIMIT $1
FOR UPDATE OF a SKIP LOCKED;

-- name: mark_window_expired
-- The attempt stops waiting: out of the sweeper's index (window_open, migration 0022).
UPDATE attempts a SET window_expired_at = now(), window_open = false
FROM unnest($1::text[], $2::int[], $3::smallint[]) AS k (campaign_id, recipient_id, attempt_no)
WHERE a.campaign_id = k.campaign_id AND a.recipient_id = k.recipient_id
  AND a.attempt_no = k.attempt_no;

-- name: lease_windows
-- Attempts whose revoke goes out after this transaction commits: no other sweeper claims them
-- for $4 seconds. The lease (one value for the transaction) names this sweeper's claim.
UPDATE attempts a SET window_leased_until = now() + make_interval(secs => $4)
FROM unnest($1::text[], $2::int[], $3::smallint[]) AS k (campaign_id, recipient_id, attempt_no)
WHERE a.campaign_id = k.campaign_id AND a.recipient_id = k.recipient_id
  AND a.attempt_no = k.attempt_no
RETURNING a.window_leased_until;

-- name: record_revoked
-- Written as soon as the provider withdrew the message, before the failure is published.
UPDATE attempts SET revoked_at = coalesce(revoked_at, now())
WHERE campaign_id = $1 AND recipient_id = $2 AND attempt_no = $3;

-- name: reclaim_windows
-- The leased attempts still waiting once their revokes are done, locked again: a delivery
-- folded meanwhile (no longer sent) or another sweeper's claim (the lease lapsed) drops out.
SELECT a.campaign_id, a.recipient_id, a.attempt_no, a.revoked_at IS NOT NULL AS revoked
FROM attempts a
JOIN unnest($1::text[], $2::int[], $3::smallint[]) AS k (campaign_id, recipient_id, attempt_no)
  ON a.campaign_id = k.campaign_id AND a.recipient_id = k.recipient_id
 AND a.attempt_no = k.attempt_no
WHERE a.status = 'sent' AND a.window_expired_at IS NULL AND a.window_leased_until = $4
ORDER BY a.campaign_id, a.recipient_id, a.attempt_no
FOR UPDATE OF a SKIP LOCKED;


-- name: archive
-- An archived campaign's attempt rows into the archive schema (0025); the table's name.
SELECT herald_attempts_archive($1);
