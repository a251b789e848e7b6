-- merklog: integration times that the signed heads bound (docs/FORMATS.md,
-- "Export bundle").
--
-- For leaf i let P be the latest signed head with tree_size <= i (the head
-- before its batch) and C the earliest with tree_size > i (the first that
-- covers it). The log promises
--     P.timestamp_ms <= integrated_ms(i) <= C.timestamp_ms,
-- heads whose timestamps do not decrease in (tree_size, timestamp_ms) order,
-- integration times that do not decrease with the index, and one
-- integration time for all the leaves one head adds (a batch). A client can
-- then check every entry's time against signed heads, and prove that a time
-- window holds every entry integrated in it.
--
-- The triggers below keep that true as the log grows, failing with SQLSTATE
-- ML004 (merklog-storage's src/error.rs maps it to StorageError::TimeOrder):
--   a leaf   integrated before the previous leaf, or before the latest head;
--   a head   dated before the latest head, before the last leaf it covers,
--            after the first leaf it does not cover, or adding leaves
--            integrated at different times.
-- Each check is a primary-key look-up (or a backward step on the primary key
-- of tree_heads), never a scan: they run on every append. Together they
-- imply the rule for every leaf, whichever of P and C is stored first.
--
-- Like migration 7, the functions pin their search path and name every
-- table, operator and function with its schema.
DO $migration$
DECLARE
    s text := pg_catalog.quote_ident(pg_catalog.current_schema());
BEGIN
    EXECUTE pg_catalog.replace($fn$
CREATE FUNCTION {schema}.merklog_leaves_in_time() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    lo bigint;
    lo_ms bigint;
    hi_ms bigint;
    prev_ms bigint;
    head record;
    bad record;
BEGIN
    SELECT pg_catalog.min(idx), pg_catalog.min(integrated_ms), pg_catalog.max(integrated_ms)
        INTO lo, lo_ms, hi_ms FROM new_rows;
    IF lo IS NULL THEN
        RETURN NULL;
    END IF;
    -- The appender gives a whole batch one time; only rows of several
    -- times need the ordered pass.
    IF lo_ms OPERATOR(pg_catalog.<>) hi_ms THEN
        SELECT t.idx, t.integrated_ms, t.prev_ms INTO bad FROM (
            SELECT idx, integrated_ms,
                   pg_catalog.lag(integrated_ms) OVER (ORDER BY idx) AS prev_ms
            FROM new_rows
        ) AS t
        WHERE t.integrated_ms OPERATOR(pg_catalog.<) t.prev_ms
        ORDER BY t.idx LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION USING
                ERRCODE = 'ML004',
                MESSAGE = pg_catalog.format('merklog: leaf %s integrated at %s ms rejected: the leaf before it was integrated later, at %s ms: integration times must not go back',
                                            bad.idx, bad.integrated_ms, bad.prev_ms);
        END IF;
    END IF;
    SELECT integrated_ms INTO prev_ms FROM {schema}.leaves
        WHERE idx OPERATOR(pg_catalog.=) (lo OPERATOR(pg_catalog.-) 1);
    IF FOUND AND lo_ms OPERATOR(pg_catalog.<) prev_ms THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML004',
            MESSAGE = pg_catalog.format('merklog: leaf %s integrated at %s ms rejected: leaf %s was integrated later, at %s ms: integration times must not go back',
                                        lo, lo_ms, lo OPERATOR(pg_catalog.-) 1, prev_ms);
    END IF;
    SELECT tree_size, timestamp_ms INTO head FROM {schema}.tree_heads
        ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1;
    IF FOUND AND lo_ms OPERATOR(pg_catalog.<) head.timestamp_ms THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML004',
            MESSAGE = pg_catalog.format('merklog: leaf %s integrated at %s ms rejected: the latest tree head (size %s) is dated later, %s ms: a leaf must not be integrated before the head it follows',
                                        lo, lo_ms, head.tree_size, head.timestamp_ms);
    END IF;
    RETURN NULL;
END;
$$
$fn$, '{schema}', s);

    EXECUTE pg_catalog.replace($fn$
CREATE FUNCTION {schema}.merklog_tree_head_in_time() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, {schema}, pg_temp AS $$
DECLARE
    latest record;
    first_new bigint := 0;
    first_ms bigint;
    last_ms bigint;
    next_ms bigint;
BEGIN
    SELECT tree_size, timestamp_ms INTO latest FROM {schema}.tree_heads
        ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1;
    IF FOUND THEN
        first_new := latest.tree_size;
        IF NEW.timestamp_ms OPERATOR(pg_catalog.<) latest.timestamp_ms THEN
            RAISE EXCEPTION USING
                ERRCODE = 'ML004',
                MESSAGE = pg_catalog.format('merklog: tree head of size %s dated %s ms rejected: the latest tree head (size %s) is dated later, %s ms: heads must not go back in time',
                                            NEW.tree_size, NEW.timestamp_ms, latest.tree_size, latest.timestamp_ms);
        END IF;
    END IF;
    IF NEW.tree_size OPERATOR(pg_catalog.>) 0 THEN
        SELECT integrated_ms INTO last_ms FROM {schema}.leaves
            WHERE idx OPERATOR(pg_catalog.=) (NEW.tree_size OPERATOR(pg_catalog.-) 1);
        IF FOUND AND NEW.timestamp_ms OPERATOR(pg_catalog.<) last_ms THEN
            RAISE EXCEPTION USING
                ERRCODE = 'ML004',
                MESSAGE = pg_catalog.format('merklog: tree head of size %s dated %s ms rejected: leaf %s, which it covers, was integrated later, at %s ms',
                                            NEW.tree_size, NEW.timestamp_ms, NEW.tree_size OPERATOR(pg_catalog.-) 1, last_ms);
        END IF;
    END IF;
    SELECT integrated_ms INTO next_ms FROM {schema}.leaves
        WHERE idx OPERATOR(pg_catalog.=) NEW.tree_size;
    IF FOUND AND NEW.timestamp_ms OPERATOR(pg_catalog.>) next_ms THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML004',
            MESSAGE = pg_catalog.format('merklog: tree head of size %s dated %s ms rejected: leaf %s, which it does not cover, was integrated earlier, at %s ms',
                                        NEW.tree_size, NEW.timestamp_ms, NEW.tree_size, next_ms);
    END IF;
    IF NEW.tree_size OPERATOR(pg_catalog.>) first_new AND last_ms IS NOT NULL THEN
        SELECT integrated_ms INTO first_ms FROM {schema}.leaves
            WHERE idx OPERATOR(pg_catalog.=) first_new;
        IF FOUND AND first_ms OPERATOR(pg_catalog.<>) last_ms THEN
            RAISE EXCEPTION USING
                ERRCODE = 'ML004',
                MESSAGE = pg_catalog.format('merklog: tree head of size %s rejected: the leaves it adds, %s to %s, were integrated at different times (%s and %s ms): the leaves one head adds share one integration time',
                                            NEW.tree_size, first_new, NEW.tree_size OPERATOR(pg_catalog.-) 1, first_ms, last_ms);
        END IF;
    END IF;
    RETURN NEW;
END;
$$
$fn$, '{schema}', s);

    EXECUTE pg_catalog.replace($sql$
REVOKE ALL ON FUNCTION {schema}.merklog_leaves_in_time(), {schema}.merklog_tree_head_in_time() FROM PUBLIC;
CREATE TRIGGER leaves_times AFTER INSERT ON {schema}.leaves
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.merklog_leaves_in_time();
CREATE TRIGGER tree_heads_times BEFORE INSERT ON {schema}.tree_heads
    FOR EACH ROW EXECUTE FUNCTION {schema}.merklog_tree_head_in_time();
-- Heads by time (LogStore::tree_head_before and the ends of an export
-- window): with timestamps that do not decrease as the size grows, the
-- order (timestamp_ms, tree_size) is the order (tree_size, timestamp_ms).
CREATE INDEX tree_heads_by_time ON {schema}.tree_heads (timestamp_ms, tree_size)
$sql$, '{schema}', s);
END;
$migration$;
