-- Issue 17: recipients partitioned by campaign (LIST on campaign_id), so an ended campaign's
-- rows leave the live table as one unit (detached into the `archive` schema after the
-- retention, store/recipients_storage.py) instead of being deleted row by row.
--
-- - A campaign of at least HERALD_RECIPIENTS_PARTITION_FROM recipients gets its own partition;
--   smaller ones share the DEFAULT partition. A partition per campaign would give the fold's
--   and the sweeps' queries (which name many campaigns, or none) thousands of partitions to
--   plan and lock; big campaigns are few.
-- - Expansion loads a standalone table (the campaign's future partition, with its indexes and
--   a CHECK matching the partition bound, so ATTACH need not scan it), then attaches it: the
--   parent is locked SHARE UPDATE EXCLUSIVE only, other campaigns keep reading and writing.
--   ATTACH reads the DEFAULT partition once (PostgreSQL proves none of its rows belong to the
--   new bound) under an exclusive lock on it: retention keeps it small. A small campaign's
--   rows move from that table into the DEFAULT partition and the table is dropped.
-- - The table that was `recipients` becomes the DEFAULT partition as it is: no row is copied
--   and its indexes are attached to the parent's (they match).
-- - attempts' foreign key to recipients goes: ATTACH and DETACH would check it against every
--   attempt under an exclusive lock on recipients (and DETACH would refuse while the campaign's
--   attempts exist). What it guarded holds anyway: workers write attempts only for recipient
--   rows they read, and recipient rows leave only with their campaign's archive.
-- - Partitioned tables take no storage parameters: each partition is made with fillfactor 50
--   (0009's reason); the DEFAULT partition keeps it.

ALTER TABLE attempts DROP CONSTRAINT attempts_campaign_id_recipient_id_fkey;

ALTER TABLE recipients RENAME TO recipients_default;
ALTER INDEX recipients_pkey RENAME TO recipients_default_pkey;
ALTER INDEX recipients_contact_idx RENAME TO recipients_default_contact_idx;
ALTER INDEX recipients_fallback_due_idx RENAME TO recipients_default_fallback_due_idx;
ALTER INDEX recipients_fallback_taken_idx RENAME TO recipients_default_fallback_taken_idx;

CREATE TABLE recipients (LIKE recipients_default INCLUDING DEFAULTS)
    PARTITION BY LIST (campaign_id);
ALTER TABLE recipients ADD CONSTRAINT recipients_pkey PRIMARY KEY (campaign_id, id);
CREATE INDEX recipients_contact_idx ON recipients (contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX recipients_fallback_due_idx ON recipients (campaign_id, id)
    WHERE next_attempt IS NOT NULL AND fallback_published_at IS NULL;
CREATE INDEX recipients_fallback_taken_idx ON recipients (fallback_published_at)
    WHERE next_attempt IS NOT NULL AND fallback_published_at IS NOT NULL;
ALTER TABLE recipients ATTACH PARTITION recipients_default DEFAULT;

-- When a campaign's recipient rows were archived (NULL: they are in recipients).
ALTER TABLE campaigns ADD COLUMN recipients_archived_at timestamptz;
CREATE INDEX campaigns_archivable_idx ON campaigns (completed_at)
    WHERE recipients_archived_at IS NULL AND expanded_at IS NOT NULL;

-- Archived recipient rows, one table per campaign, named like its partition was.
CREATE SCHEMA archive;

-- A campaign's own table: its partition, the table expansion loads, its archive. From the
-- md5 of the id, so any campaign id (any text, any length) gives a valid, unique name.
CREATE FUNCTION herald_recipients_table(campaign_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT 'recipients_' || md5(campaign_id)
$$;

-- The standalone table a campaign's expansion loads: recipients' columns, defaults and
-- indexes (appended to in id order as rows come, cheaper than building them after), and the
-- CHECK that lets ATTACH skip scanning it.
CREATE FUNCTION herald_recipients_stage(campaign_id text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := herald_recipients_table(campaign_id);
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE recipients INCLUDING DEFAULTS INCLUDING INDEXES) '
                   'WITH (fillfactor = 50)', name);
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (campaign_id = %L)',
                   name, name || '_bound', campaign_id);
    RETURN name;
END
$$;

-- The loaded table becomes the campaign's partition (big), or its rows go to the DEFAULT
-- partition and it is dropped (small).
CREATE FUNCTION herald_recipients_place(campaign_id text, own_partition boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    name text := herald_recipients_table(campaign_id);
BEGIN
    IF own_partition THEN
        EXECUTE format('ALTER TABLE recipients ATTACH PARTITION %I FOR VALUES IN (%L)',
                       name, campaign_id);
    ELSE
        EXECUTE format('INSERT INTO recipients SELECT * FROM %I', name);
        EXECUTE format('DROP TABLE %I', name);
    END IF;
END
$$;

-- An ended campaign's rows into archive.<its table>: its partition detached and moved there
-- (a catalogue change), or its rows copied out of the DEFAULT partition and deleted there.
-- Returns the archive table's name.
CREATE FUNCTION herald_recipients_archive(campaign_id text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := herald_recipients_table(campaign_id);
BEGIN
    IF EXISTS (SELECT 1 FROM pg_inherits i
               WHERE i.inhparent = 'recipients'::regclass
                 AND i.inhrelid = to_regclass(format('public.%I', name))) THEN
        EXECUTE format('ALTER TABLE recipients DETACH PARTITION %I', name);
        EXECUTE format('ALTER TABLE %I SET SCHEMA archive', name);
    ELSE
        EXECUTE format('CREATE TABLE archive.%I (LIKE recipients INCLUDING DEFAULTS)', name);
        EXECUTE format('INSERT INTO archive.%I SELECT * FROM recipients WHERE campaign_id = %L',
                       name, campaign_id);
        EXECUTE format('DELETE FROM recipients WHERE campaign_id = %L', campaign_id);
    END IF;
    RETURN 'archive.' || name;
END
$$;
