-- An ended campaign's attempt rows leave the live attempts table with its recipient rows
-- (0021): attempts are the largest table (a row per send), and retention that kept them
-- would leave it growing with every campaign. They move into archive.attempts_<md5 of the
-- campaign id> in the archive's transaction, copied and deleted (attempts is not
-- partitioned: its rows are written at send time, long before a campaign is known to be
-- big enough for a table of its own). Returns the archive table's name.
CREATE FUNCTION herald_attempts_archive(campaign_id text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'attempts_' || md5(campaign_id);
BEGIN
    EXECUTE format('CREATE TABLE archive.%I (LIKE attempts INCLUDING DEFAULTS)', name);
    EXECUTE format('INSERT INTO archive.%I SELECT * FROM attempts WHERE campaign_id = %L',
                   name, campaign_id);
    EXECUTE format('DELETE FROM attempts WHERE campaign_id = %L', campaign_id);
    RETURN 'archive.' || name;
END
$$;

-- Campaigns archived before this migration take their attempts along now.
SELECT herald_attempts_archive(id) FROM campaigns WHERE recipients_archived_at IS NOT NULL;
