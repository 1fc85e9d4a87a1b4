-- What Grafana's read-only role may read: SELECT on the columns the dashboards read, nothing
-- else. Contact data (phone, e-mail, the campaign event with its audience) is not granted.
-- The role itself is made by grafana/postgres-readonly-role.sql (a superuser or a role with
-- CREATEROLE runs it). Run this once per herald database, as its owner, after `herald migrate`:
--   psql "$DATABASE_URL" -f grafana/postgres-readonly.sql
-- Running it again is harmless; it also drops grants that are no longer listed here.

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO herald_grafana', current_database());
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM herald_grafana;
GRANT USAGE ON SCHEMA public TO herald_grafana;

GRANT SELECT (id, account_id, name, status, sending_mode, scheduled_at, total_recipients,
              sent, delivered, read, failed, skipped, cancelled, final, pause_reason,
              created_at, started_at, paused_at, completed_at)
    ON campaigns TO herald_grafana;
GRANT SELECT ON campaign_channel_counters TO herald_grafana;
GRANT SELECT (campaign_id, id, status, accepted, channel, error_code, updated_at)
    ON recipients TO herald_grafana;
