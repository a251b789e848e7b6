-- merklog: least privilege. Two cluster-wide NOLOGIN roles that login roles
-- are granted (docs/STORAGE.md, "Roles"):
--   merklog_writer  the service: SELECT and INSERT on the log, nothing else
--   merklog_reader  auditors' direct queries: SELECT only
-- Neither owns anything, so neither can ALTER, DROP, disable a trigger or
-- TRUNCATE (which needs its own privilege, not granted).
--
-- Roles are global to the cluster while this migration runs once per
-- database, possibly in parallel (one database per test): creating a role
-- that another session just created fails with duplicate_object, or with
-- unique_violation while the other transaction is in flight, and both mean
-- the role exists.
DO $$
BEGIN
    CREATE ROLE merklog_writer NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END;
$$;

DO $$
BEGIN
    CREATE ROLE merklog_reader NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END;
$$;

-- Whatever PUBLIC may have been given elsewhere is not for the log.
REVOKE ALL ON leaves, tree_heads FROM PUBLIC;

DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO merklog_writer, merklog_reader', current_schema());
END;
$$;
GRANT SELECT, INSERT ON leaves, tree_heads TO merklog_writer;
GRANT SELECT ON leaves, tree_heads TO merklog_reader;
-- The service checks at start-up that the schema is current.
GRANT SELECT ON _sqlx_migrations TO merklog_writer, merklog_reader;
