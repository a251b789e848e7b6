-- merklog: triggers that keep the log append-only, each failing with its own
-- SQLSTATE (class ML, not used by PostgreSQL):
--   ML001  UPDATE, DELETE or TRUNCATE on a log table
--   ML002  a leaf inserted anywhere but at the next index
--   ML003  a tree head that is smaller than the latest, changes the root at
--          the same size, or claims more leaves than are stored
-- merklog-storage's src/error.rs maps them to StorageError.

-- Rejects every UPDATE and DELETE (row level) and TRUNCATE (statement level).
-- TG_ARGV names the key columns, to say which row was targeted.
CREATE FUNCTION merklog_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    target text := '';
    col text;
BEGIN
    IF TG_LEVEL = 'ROW' THEN
        FOREACH col IN ARRAY TG_ARGV LOOP
            target := target || format(' %s=%s', col, to_jsonb(OLD) ->> col);
        END LOOP;
        target := ' (row' || target || ')';
    END IF;
    RAISE EXCEPTION USING
        ERRCODE = 'ML001',
        MESSAGE = format('merklog: %s on %s%s rejected: the log is append-only',
                         TG_OP, TG_TABLE_NAME, target);
END;
$$;

CREATE TRIGGER leaves_no_update BEFORE UPDATE ON leaves
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('idx');
CREATE TRIGGER leaves_no_delete BEFORE DELETE ON leaves
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('idx');
CREATE TRIGGER leaves_no_truncate BEFORE TRUNCATE ON leaves
    FOR EACH STATEMENT EXECUTE FUNCTION merklog_reject_change();
CREATE TRIGGER tree_heads_no_update BEFORE UPDATE ON tree_heads
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('tree_size', 'timestamp_ms');
CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON tree_heads
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('tree_size', 'timestamp_ms');
CREATE TRIGGER tree_heads_no_truncate BEFORE TRUNCATE ON tree_heads
    FOR EACH STATEMENT EXECUTE FUNCTION merklog_reject_change();

-- Leaves only at the next index. Checked once per statement over the
-- transition table, so a 1,000-row INSERT pays for one check: the new rows
-- must be contiguous (the primary key already makes them distinct) and start
-- right after the largest index stored before them. A concurrent uncommitted
-- append is invisible here, so of two racing appenders the one that would
-- leave a gap fails.
CREATE FUNCTION merklog_leaves_in_order() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    lo bigint;
    hi bigint;
    prev bigint;
BEGIN
    SELECT count(*), min(idx), max(idx) INTO n, lo, hi FROM new_rows;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(max(idx), -1) INTO prev FROM leaves WHERE idx < lo;
    IF lo <> prev + 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML002',
            MESSAGE = format('merklog: leaves [%s, %s] inserted but the next index is %s: leaves must be appended at the next index',
                             lo, hi, prev + 1);
    END IF;
    IF hi - lo + 1 <> n THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML002',
            MESSAGE = format('merklog: %s leaves inserted with indices from %s to %s: leaves must be contiguous',
                             n, lo, hi);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER leaves_in_order AFTER INSERT ON leaves
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION merklog_leaves_in_order();

-- Tree heads only grow, keep their root, and cover stored leaves only.
CREATE FUNCTION merklog_tree_head_in_order() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    latest record;
    leaf_count bigint;
BEGIN
    SELECT tree_size, root_hash INTO latest
        FROM tree_heads ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1;
    IF FOUND AND NEW.tree_size < latest.tree_size THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML003',
            MESSAGE = format('merklog: tree head of size %s rejected: the latest tree head has size %s',
                             NEW.tree_size, latest.tree_size);
    END IF;
    IF FOUND AND NEW.tree_size = latest.tree_size AND NEW.root_hash <> latest.root_hash THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML003',
            MESSAGE = format('merklog: tree head of size %s rejected: root %s differs from the stored root %s at that size',
                             NEW.tree_size, encode(NEW.root_hash, 'hex'), encode(latest.root_hash, 'hex'));
    END IF;
    SELECT coalesce(max(idx) + 1, 0) INTO leaf_count FROM leaves;
    IF NEW.tree_size > leaf_count THEN
        RAISE EXCEPTION USING
            ERRCODE = 'ML003',
            MESSAGE = format('merklog: tree head of size %s rejected: only %s leaves are stored',
                             NEW.tree_size, leaf_count);
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER tree_heads_in_order BEFORE INSERT ON tree_heads
    FOR EACH ROW EXECUTE FUNCTION merklog_tree_head_in_order();
