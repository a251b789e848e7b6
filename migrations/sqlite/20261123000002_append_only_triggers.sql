-- merklog: triggers that keep the log append-only, SQLite dialect. SQLite has
-- no SQLSTATE, so each message starts with a stable prefix carrying the same
-- code as the PostgreSQL triggers, which merklog-storage's src/error.rs maps:
--   merklog ML001:  UPDATE or DELETE on a log table (SQLite has no TRUNCATE;
--                   DELETE without WHERE runs these row triggers too)
--   merklog ML002:  a leaf inserted anywhere but at the next index
--   merklog ML003:  a tree head that is smaller than the latest, changes the
--                   root at the same size, or claims more leaves than stored

CREATE TRIGGER leaves_no_update BEFORE UPDATE ON leaves
BEGIN
    SELECT RAISE(ABORT, 'merklog ML001: UPDATE on leaves rejected: the log is append-only');
END;

CREATE TRIGGER leaves_no_delete BEFORE DELETE ON leaves
BEGIN
    SELECT RAISE(ABORT, 'merklog ML001: DELETE on leaves rejected: the log is append-only');
END;

CREATE TRIGGER tree_heads_no_update BEFORE UPDATE ON tree_heads
BEGIN
    SELECT RAISE(ABORT, 'merklog ML001: UPDATE on tree_heads rejected: the log is append-only');
END;

CREATE TRIGGER tree_heads_no_delete BEFORE DELETE ON tree_heads
BEGIN
    SELECT RAISE(ABORT, 'merklog ML001: DELETE on tree_heads rejected: the log is append-only');
END;

-- Covers gaps, reordering and a second leaf at an index alike: the new index
-- must be one past the largest stored (an O(1) look-up on the rowid).
CREATE TRIGGER leaves_in_order BEFORE INSERT ON leaves
WHEN NEW.idx IS NOT (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML002: a leaf must be inserted at the next index');
END;

CREATE TRIGGER tree_heads_no_regression BEFORE INSERT ON tree_heads
WHEN NEW.tree_size < (SELECT max(tree_size) FROM tree_heads)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML003: tree head rejected: smaller than the latest tree head');
END;

CREATE TRIGGER tree_heads_same_root BEFORE INSERT ON tree_heads
WHEN EXISTS (SELECT 1 FROM tree_heads
             WHERE tree_size = NEW.tree_size AND root_hash IS NOT NEW.root_hash)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML003: tree head rejected: another root is stored at the same size');
END;

CREATE TRIGGER tree_heads_within_leaves BEFORE INSERT ON tree_heads
WHEN NEW.tree_size > (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML003: tree head rejected: more leaves than are stored');
END;
