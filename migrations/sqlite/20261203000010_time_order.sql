-- merklog: integration times that the signed heads bound, SQLite dialect
-- (migrations/postgres/20261203000010_time_order.sql states the rule).
--   merklog ML004:  a leaf integrated before the previous leaf or the latest
--                   head; a head dated before the latest head, before the
--                   last leaf it covers or after the first it does not, or
--                   adding leaves integrated at different times
-- Every look-up is by primary key, or one step back on tree_heads' key.
--
-- SQLite does not promise an order among the triggers of one event, so each
-- trigger here first checks that the row passes the order checks of
-- migration 2 (ML002, ML003): a row that breaks both is reported as out of
-- order, as before this migration, on both backends.

CREATE TRIGGER leaves_time_after_previous BEFORE INSERT ON leaves
WHEN NEW.idx = (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
 AND NEW.integrated_ms < (SELECT integrated_ms FROM leaves WHERE idx = NEW.idx - 1)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML004: leaf rejected: the leaf before it was integrated later; integration times must not go back');
END;

CREATE TRIGGER leaves_time_after_head BEFORE INSERT ON leaves
WHEN NEW.idx = (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
 AND NEW.integrated_ms < (SELECT timestamp_ms FROM tree_heads
                          ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML004: leaf rejected: the latest tree head is dated later than its integration time');
END;

CREATE TRIGGER tree_heads_time_after_head BEFORE INSERT ON tree_heads
WHEN NEW.tree_size >= coalesce((SELECT max(tree_size) FROM tree_heads), 0)
 AND NEW.tree_size <= (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
 AND NOT EXISTS (SELECT 1 FROM tree_heads
                 WHERE tree_size = NEW.tree_size AND root_hash IS NOT NEW.root_hash)
 AND NEW.timestamp_ms < (SELECT timestamp_ms FROM tree_heads
                         ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML004: tree head rejected: dated before the latest tree head; heads must not go back in time');
END;

CREATE TRIGGER tree_heads_time_after_leaves BEFORE INSERT ON tree_heads
WHEN NEW.tree_size >= coalesce((SELECT max(tree_size) FROM tree_heads), 0)
 AND NEW.tree_size <= (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
 AND NOT EXISTS (SELECT 1 FROM tree_heads
                 WHERE tree_size = NEW.tree_size AND root_hash IS NOT NEW.root_hash)
 AND NEW.timestamp_ms < (SELECT integrated_ms FROM leaves WHERE idx = NEW.tree_size - 1)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML004: tree head rejected: the last leaf it covers was integrated later');
END;

CREATE TRIGGER tree_heads_time_before_next_leaf BEFORE INSERT ON tree_heads
WHEN NEW.tree_size >= coalesce((SELECT max(tree_size) FROM tree_heads), 0)
 AND NEW.tree_size <= (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
 AND NOT EXISTS (SELECT 1 FROM tree_heads
                 WHERE tree_size = NEW.tree_size AND root_hash IS NOT NEW.root_hash)
 AND NEW.timestamp_ms > (SELECT integrated_ms FROM leaves WHERE idx = NEW.tree_size)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML004: tree head rejected: the first leaf it does not cover was integrated earlier');
END;

CREATE TRIGGER tree_heads_one_time_per_batch BEFORE INSERT ON tree_heads
WHEN NEW.tree_size >= coalesce((SELECT max(tree_size) FROM tree_heads), 0)
 AND NEW.tree_size <= (SELECT coalesce(max(idx) + 1, 0) FROM leaves)
 AND NOT EXISTS (SELECT 1 FROM tree_heads
                 WHERE tree_size = NEW.tree_size AND root_hash IS NOT NEW.root_hash)
 AND (SELECT integrated_ms FROM leaves
      WHERE idx = coalesce((SELECT tree_size FROM tree_heads
                            ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1), 0))
     IS NOT (SELECT integrated_ms FROM leaves WHERE idx = NEW.tree_size - 1)
 AND NEW.tree_size > coalesce((SELECT tree_size FROM tree_heads
                               ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1), 0)
BEGIN
    SELECT RAISE(ABORT, 'merklog ML004: tree head rejected: the leaves it adds were integrated at different times; the leaves one head adds share one integration time');
END;

-- Heads by time: with timestamps that do not decrease as the size grows,
-- the order (timestamp_ms, tree_size) is the order (tree_size, timestamp_ms).
CREATE INDEX tree_heads_by_time ON tree_heads (timestamp_ms, tree_size);
