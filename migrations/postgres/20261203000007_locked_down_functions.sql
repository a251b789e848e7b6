-- merklog: the trigger functions resolve no name through the caller's search
-- path, the function that writes leaf tiles runs as a role that can do
-- nothing else, and nobody but the owner creates objects the functions could
-- find (docs/STORAGE.md, "Roles (PostgreSQL)").
--
-- Before this migration the functions used the search path of whoever fired
-- them, where pg_temp comes first for tables and `public` supplies
-- operators: a role allowed to INSERT (merklog_writer) shadowed `leaves` or
-- `tree_heads` with temporary tables and passed the ML002/ML003 checks, and
-- merklog_add_leaf_tiles, SECURITY DEFINER and owned by the migration's user
-- (often a superuser), ran a temporary view's function, or an operator
-- planted in `public`, with that user's rights.
--
-- Now every function:
--   * runs with search_path = pg_catalog, <the log's schema>, pg_temp, so
--     pg_temp is searched last for tables (never for functions and
--     operators) and `public` is not searched unless it is the log's schema;
--   * names every table with its schema, and every operator and function
--     with pg_catalog (OPERATOR(pg_catalog.=) ...), so that even a role that
--     may CREATE in the log's schema cannot slip in a better-matching
--     overload. OPERATOR(...) binds all alike, left to right, hence the
--     parentheses. `new_rows`, the transition table, is looked up before any
--     schema and cannot be shadowed.
--
-- The log's schema is where the earlier migrations created the tables (the
-- current schema, `public` unless the owner's search path says otherwise),
-- so the functions are created by dynamic SQL with its name filled in for
-- {schema}.
DO $migration$
DECLARE
    s text := pg_catalog.quote_ident(pg_catalog.current_schema());
    db text := pg_catalog.quote_ident(pg_catalog.current_database());
    -- Whether PUBLIC may create in the schema `public`, if it exists.
    public_open constant text := $sql$
        SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n
                       WHERE n.nspname OPERATOR(pg_catalog.=) 'public'
                         AND pg_catalog.has_schema_privilege('public', n.oid, 'CREATE'))
    $sql$;
    public_writable boolean;
BEGIN
    EXECUTE pg_catalog.replace($fn$
CREATE OR REPLACE FUNCTION {schema}.merklog_reject_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    target text := '';
    col text;
BEGIN
    IF TG_LEVEL OPERATOR(pg_catalog.=) 'ROW' THEN
        FOREACH col IN ARRAY TG_ARGV LOOP
            target := target OPERATOR(pg_catalog.||)
                pg_catalog.format(' %s=%s', col, pg_catalog.to_jsonb(OLD) OPERATOR(pg_catalog.->>) col);
        END LOOP;
        target := (' (row' OPERATOR(pg_catalog.||) target) OPERATOR(pg_catalog.||) ')';
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'ML001',
        MESSAGE = pg_catalog.format('merklog: %s on %s%s rejected: the log is append-only',
                                    TG_OP, TG_TABLE_NAME, target);
END;
$$
$fn$, '{schema}', s);

    EXECUTE pg_catalog.replace($fn$
CREATE OR REPLACE FUNCTION {schema}.merklog_leaves_in_order() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    n bigint;
    lo bigint;
    hi bigint;
    prev bigint;
BEGIN
    SELECT pg_catalog.count(*), pg_catalog.min(idx), pg_catalog.max(idx) INTO n, lo, hi FROM new_rows;
    IF n OPERATOR(pg_catalog.=) 0 THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(pg_catalog.max(idx), -1) INTO prev
        FROM {schema}.leaves WHERE idx OPERATOR(pg_catalog.<) lo;
    IF lo OPERATOR(pg_catalog.<>) (prev OPERATOR(pg_catalog.+) 1) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML002',
            MESSAGE = pg_catalog.format('merklog: leaves [%s, %s] inserted but the next index is %s: leaves must be appended at the next index',
                                        lo, hi, prev OPERATOR(pg_catalog.+) 1);
    END IF;
    IF ((hi OPERATOR(pg_catalog.-) lo) OPERATOR(pg_catalog.+) 1) OPERATOR(pg_catalog.<>) n THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML002',
            MESSAGE = pg_catalog.format('merklog: %s leaves inserted with indices from %s to %s: leaves must be contiguous',
                                        n, lo, hi);
    END IF;
    RETURN NULL;
END;
$$
$fn$, '{schema}', s);

    EXECUTE pg_catalog.replace($fn$
CREATE OR REPLACE FUNCTION {schema}.merklog_tree_head_in_order() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    latest record;
    leaf_count bigint;
BEGIN
    SELECT tree_size, root_hash INTO latest
        FROM {schema}.tree_heads ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1;
    IF FOUND AND (NEW.tree_size OPERATOR(pg_catalog.<) latest.tree_size) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML003',
            MESSAGE = pg_catalog.format('merklog: tree head of size %s rejected: the latest tree head has size %s',
                                        NEW.tree_size, latest.tree_size);
    END IF;
    IF FOUND AND (NEW.tree_size OPERATOR(pg_catalog.=) latest.tree_size)
             AND (NEW.root_hash OPERATOR(pg_catalog.<>) latest.root_hash) THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML003',
            MESSAGE = pg_catalog.format('merklog: tree head of size %s rejected: root %s differs from the stored root %s at that size',
                                        NEW.tree_size, pg_catalog.encode(NEW.root_hash, 'hex'),
                                        pg_catalog.encode(latest.root_hash, 'hex'));
    END IF;
    SELECT coalesce(pg_catalog.max(idx) OPERATOR(pg_catalog.+) 1, 0) INTO leaf_count FROM {schema}.leaves;
    IF NEW.tree_size OPERATOR(pg_catalog.>) leaf_count THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML003',
            MESSAGE = pg_catalog.format('merklog: tree head of size %s rejected: only %s leaves are stored',
                                        NEW.tree_size, leaf_count);
    END IF;
    RETURN NEW;
END;
$$
$fn$, '{schema}', s);

    -- Still SECURITY DEFINER (the appending roles have no INSERT on
    -- leaf_tiles, so they cannot forge a tile), but owned by merklog_tiler
    -- below instead of the migration's user.
    EXECUTE pg_catalog.replace($fn$
CREATE OR REPLACE FUNCTION {schema}.merklog_add_leaf_tiles() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    lo bigint;
    hi bigint;
BEGIN
    SELECT pg_catalog.min(idx), pg_catalog.max(idx) INTO lo, hi FROM new_rows;
    IF hi IS NULL
       OR ((hi OPERATOR(pg_catalog.%) 16) OPERATOR(pg_catalog.<) 15
           AND (hi OPERATOR(pg_catalog./) 16) OPERATOR(pg_catalog.=) (lo OPERATOR(pg_catalog./) 16)) THEN
        RETURN NULL;
    END IF;
    -- The new leaves from the transition table (in memory), and from the
    -- table only those of the first block stored before them.
    INSERT INTO {schema}.leaf_tiles (tile, hashes)
        SELECT idx OPERATOR(pg_catalog./) 16, pg_catalog.string_agg(leaf_hash, ''::bytea ORDER BY idx)
        FROM (
            SELECT idx, leaf_hash FROM new_rows
            UNION ALL
            SELECT idx, leaf_hash FROM {schema}.leaves
            WHERE idx OPERATOR(pg_catalog.>=) ((lo OPERATOR(pg_catalog./) 16) OPERATOR(pg_catalog.*) 16)
              AND idx OPERATOR(pg_catalog.<) lo
        ) AS block
        GROUP BY idx OPERATOR(pg_catalog./) 16
        HAVING pg_catalog.count(*) OPERATOR(pg_catalog.=) 16;
    RETURN NULL;
END;
$$
$fn$, '{schema}', s);

    -- Trigger functions fire without an EXECUTE check; nobody needs to call
    -- them otherwise.
    EXECUTE pg_catalog.replace($sql$
REVOKE ALL ON FUNCTION {schema}.merklog_reject_change(), {schema}.merklog_leaves_in_order(),
    {schema}.merklog_tree_head_in_order(), {schema}.merklog_add_leaf_tiles() FROM PUBLIC
$sql$, '{schema}', s);

    -- merklog_tiler: the owner of merklog_add_leaf_tiles, a NOLOGIN role
    -- that may read the leaves' indices and hashes and add tiles, nothing
    -- more. Cluster-wide like the roles of migration 3, created only when
    -- missing so that a run without CREATEROLE works once it exists; two
    -- databases migrated at once race as migration 3 explains.
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'merklog_tiler') THEN
        BEGIN
            CREATE ROLE merklog_tiler NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    -- A role of that name made by someone else must not carry more than
    -- this migration gives it.
    IF EXISTS (
        SELECT FROM pg_catalog.pg_roles r
        WHERE r.rolname OPERATOR(pg_catalog.=) 'merklog_tiler'
          AND (r.rolsuper OR r.rolcanlogin OR r.rolcreaterole OR r.rolcreatedb
               OR r.rolreplication OR r.rolbypassrls
               OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                          WHERE m.member OPERATOR(pg_catalog.=) r.oid))
    ) THEN
        RAISE EXCEPTION 'merklog: the role merklog_tiler must be NOLOGIN, without SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS and a member of no role; fix it with ALTER ROLE / REVOKE, then run the migration again';
    END IF;

    EXECUTE pg_catalog.replace($sql$
GRANT USAGE ON SCHEMA {schema} TO merklog_tiler;
GRANT SELECT (idx, leaf_hash) ON {schema}.leaves TO merklog_tiler;
GRANT INSERT (tile, hashes) ON {schema}.leaf_tiles TO merklog_tiler
$sql$, '{schema}', s);

    -- Handing a function to another owner takes membership in that role
    -- (a superuser has it; a CREATEROLE owner grants it to itself, and
    -- keeps it, so later migrations may replace the function), and the new
    -- owner needs CREATE on the schema at that moment only.
    IF NOT pg_catalog.pg_has_role(current_user, 'merklog_tiler', 'MEMBER') THEN
        EXECUTE pg_catalog.format('GRANT merklog_tiler TO %I', current_user);
    END IF;
    EXECUTE pg_catalog.replace($sql$
GRANT CREATE ON SCHEMA {schema} TO merklog_tiler;
ALTER FUNCTION {schema}.merklog_add_leaf_tiles() OWNER TO merklog_tiler;
REVOKE CREATE ON SCHEMA {schema} FROM merklog_tiler
$sql$, '{schema}', s);

    -- Nothing that a login could create may be found by the functions or by
    -- the service's own queries: no CREATE for PUBLIC in the log's schema or
    -- in `public` (PostgreSQL 14 and older granted it, and an upgrade keeps
    -- it), no temporary objects for PUBLIC in this database. The service
    -- needs neither. These need the owner of the database (and of
    -- `public`): a migration run by anyone else stops here.
    IF pg_catalog.has_schema_privilege('public', pg_catalog.current_schema(), 'CREATE') THEN
        EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA %s FROM PUBLIC', s);
    END IF;
    EXECUTE public_open INTO public_writable;
    IF public_writable THEN
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    END IF;
    IF pg_catalog.has_database_privilege('public', pg_catalog.current_database(), 'TEMPORARY') THEN
        EXECUTE pg_catalog.format('REVOKE TEMPORARY ON DATABASE %s FROM PUBLIC', db);
    END IF;
    EXECUTE public_open INTO public_writable;
    IF public_writable OR pg_catalog.has_schema_privilege('public', pg_catalog.current_schema(), 'CREATE') THEN
        RAISE EXCEPTION 'merklog: PUBLIC may still CREATE in schema % or public, and this user cannot revoke it; run REVOKE CREATE ON SCHEMA ... FROM PUBLIC as the schema''s owner, then the migration again', s;
    END IF;
    IF pg_catalog.has_database_privilege('public', pg_catalog.current_database(), 'TEMPORARY') THEN
        RAISE EXCEPTION 'merklog: PUBLIC may still create temporary tables in database %, and this user cannot revoke it; run REVOKE TEMPORARY ON DATABASE % FROM PUBLIC as its owner, then the migration again', db, db;
    END IF;

    -- So that the set-up of docs/STORAGE.md can take CONNECT away from
    -- PUBLIC (any login could otherwise take the leader lock) without
    -- locking out the merklog roles.
    EXECUTE pg_catalog.format('GRANT CONNECT ON DATABASE %s TO merklog_writer, merklog_reader', db);
END;
$migration$;
