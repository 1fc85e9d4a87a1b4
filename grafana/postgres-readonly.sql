-- The role Grafana's PostgreSQL data source logs in as: SELECT on the columns the dashboards
-- read, nothing else. Contact data (phone, e-mail, the campaign event with its audience) is
-- not granted. Run once per herald database, as its owner, after `herald migrate`:
--   psql "$DATABASE_URL" -f grafana/postgres-readonly.sql
--   psql "$DATABASE_URL" -c "ALTER ROLE herald_grafana PASSWORD '...'"
-- Running it again is harmless; it also drops grants that are no longer listed here.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'herald_grafana') THEN
        CREATE ROLE herald_grafana LOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO herald_grafana', current_database());
END
$$;

-- Even a query typed into Grafana's editor cannot write, or run long on the primary.
ALTER ROLE herald_grafana SET default_transaction_read_only = on;
ALTER ROLE herald_grafana SET statement_timeout = '10s';
ALTER ROLE herald_grafana CONNECTION LIMIT 8;

REVOKE ALL ON ALL TABLES IN SCHEMA public FROM herald_grafana;
GRANT USAGE ON SCHEMA public TO herald_grafana;

GRANT SELECT (id, account_id, name, status, sending_mode, scheduled_at, total_recipients,
              sent, delivered, read, failed, skipped, cancelled, final, pause_reason,
              created_at, started_at, paused_at, completed_at)
    ON campaigns TO herald_grafana;
GRANT SELECT ON campaign_channel_counters TO herald_grafana;
GRANT SELECT (campaign_id, id, status, accepted, channel, error_code, updated_at)
    ON recipients TO herald_grafana;
