-- merklog: leaf hashes sixteen at a time, for proofs (docs/STORAGE.md,
-- "Leaf tiles").
--
-- An inclusion proof needs, below the levels the service caches, the leaf and
-- the sibling subtrees inside its 16-leaf block: up to five rows of `leaves`,
-- each a separate index look-up and often a separate page. Row `tile` of
-- `leaf_tiles` holds the leaf hashes of leaves [16 * tile, 16 * tile + 16),
-- concatenated: one look-up, one small row, from which every node of levels
-- 0-3 in the block is computed. Only complete blocks have a tile.
--
-- The tiles are derived from `leaves` by the trigger below, in the same
-- transaction as the leaves that complete them; nobody else may write them
-- (the service's role can only read them), and like the log they only grow.

CREATE TABLE leaf_tiles (
    tile   BIGINT PRIMARY KEY CHECK (tile >= 0),
    hashes BYTEA  NOT NULL CHECK (length(hashes) = 16 * 32)
);

CREATE TRIGGER leaf_tiles_no_update BEFORE UPDATE ON leaf_tiles
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('tile');
CREATE TRIGGER leaf_tiles_no_delete BEFORE DELETE ON leaf_tiles
    FOR EACH ROW EXECUTE FUNCTION merklog_reject_change('tile');
CREATE TRIGGER leaf_tiles_no_truncate BEFORE TRUNCATE ON leaf_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION merklog_reject_change();

-- Adds the tiles that the inserted leaves complete. The first inserted leaf's
-- block was incomplete before (that leaf was missing), so every block from it
-- on is new; those not yet complete are left for a later insert.
-- SECURITY DEFINER: it inserts as the owner of the tables, so the roles that
-- append need no INSERT on leaf_tiles and cannot forge a tile.
CREATE FUNCTION merklog_add_leaf_tiles() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    lo bigint;
    hi bigint;
BEGIN
    SELECT min(idx), max(idx) INTO lo, hi FROM new_rows;
    IF hi IS NULL OR (hi % 16 < 15 AND hi / 16 = lo / 16) THEN
        RETURN NULL;
    END IF;
    -- The new leaves from the transition table (in memory), and from the
    -- table only those of the first block stored before them.
    INSERT INTO leaf_tiles (tile, hashes)
        SELECT idx / 16, string_agg(leaf_hash, ''::bytea ORDER BY idx)
        FROM (
            SELECT idx, leaf_hash FROM new_rows
            UNION ALL
            SELECT idx, leaf_hash FROM leaves WHERE idx >= lo / 16 * 16 AND idx < lo
        ) AS block
        GROUP BY idx / 16
        HAVING count(*) = 16;
    RETURN NULL;
END;
$$;

-- Named to run after leaves_in_order (triggers of one event run in name
-- order), so the order check has passed.
CREATE TRIGGER leaves_tiles AFTER INSERT ON leaves
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION merklog_add_leaf_tiles();

-- The tiles of the leaves stored before this migration.
INSERT INTO leaf_tiles (tile, hashes)
    SELECT idx / 16, string_agg(leaf_hash, ''::bytea ORDER BY idx)
    FROM leaves
    GROUP BY idx / 16
    HAVING count(*) = 16;

REVOKE ALL ON leaf_tiles FROM PUBLIC;
GRANT SELECT ON leaf_tiles TO merklog_writer, merklog_reader;
