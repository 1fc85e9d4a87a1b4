-- The role Grafana's PostgreSQL data source logs in as. Creating a role needs a superuser or
-- a role with CREATEROLE, which herald's owner role is not given; run this once per
-- PostgreSQL cluster as such a role, then set its password:
--   psql "$ADMIN_DATABASE_URL" -f grafana/postgres-readonly-role.sql
--   psql "$ADMIN_DATABASE_URL" -c '\password herald_grafana'
-- Then, as herald's owner, grafana/postgres-readonly.sql grants what it may read.
-- Running it again is harmless.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'herald_grafana') THEN
        CREATE ROLE herald_grafana LOGIN;
    END IF;
END
$$;

-- Even a query typed into Grafana's editor cannot write, or run long on the primary.
ALTER ROLE herald_grafana SET default_transaction_read_only = on;
ALTER ROLE herald_grafana SET statement_timeout = '10s';
ALTER ROLE herald_grafana CONNECTION LIMIT 8;
