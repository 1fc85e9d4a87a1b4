-- Issue 16 (docs/api.md): recipient timestamps, and contact search by national number.

-- Seed 004's recipient fields: when a recipient was delivered and read (set by the status
-- fold's one UPDATE, the first time the folded status reaches them) and when its row was
-- made (expansion). No defaults are written into existing rows: adding nullable columns
-- rewrites nothing, and rows expanded before this migration answer their campaign's
-- start time as created_at (the recipients query).
ALTER TABLE recipients ADD COLUMN delivered_at timestamptz;
ALTER TABLE recipients ADD COLUMN read_at timestamptz;
ALTER TABLE recipients ADD COLUMN created_at timestamptz;
ALTER TABLE recipients ALTER COLUMN created_at SET DEFAULT now();

-- Contact search by national number (issue 16): the phone's digits are indexed whole and
-- also without a country code of 1, 2 or 3 digits (E.164 codes are 1 to 3 digits), so
-- `4152495200` finds +14152495200 and `7700900123` (after the API drops a trunk 0) finds
-- +447700900123. Three more lexemes a contact; the GIN index is rebuilt for them.
CREATE OR REPLACE FUNCTION herald_contact_document(
    first_name text, last_name text, phone text, email text
) RETURNS tsvector
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT to_tsvector(
    'simple'::regconfig,
    coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' ||
    coalesce(email, '') || ' ' || translate(coalesce(email, ''), '@.+_-', '     ') || ' ' ||
    d || ' ' || substr(d, 2) || ' ' || substr(d, 3) || ' ' || substr(d, 4)
)
FROM (SELECT regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') AS d) AS digits
$$;
REINDEX INDEX contacts_search_idx;
