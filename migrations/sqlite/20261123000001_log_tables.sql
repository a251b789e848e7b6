-- merklog: the log's tables, SQLite dialect (docs/STORAGE.md explains the
-- layout; migrations/postgres has the same tables).
--
-- One row per leaf. Besides the leaf itself the row of leaf `idx` holds the
-- hashes of the complete subtrees whose last leaf it is: node (level l >= 1,
-- index i) lives in row ((i + 1) << l) - 1, at byte offset (l - 1) * 32 of
-- `nodes`. Leaf idx completes exactly trailing_ones(idx) such nodes, which is
-- what the CHECK says: the lowest set bit of idx + 1 is 2^(number of nodes).

CREATE TABLE leaves (
    idx           INTEGER PRIMARY KEY CHECK (idx >= 0),
    leaf_hash     BLOB    NOT NULL UNIQUE CHECK (length(leaf_hash) = 32),
    entry         BLOB    NOT NULL,
    integrated_ms INTEGER NOT NULL CHECK (integrated_ms >= 0),
    nodes         BLOB    NOT NULL,
    CONSTRAINT leaves_nodes_shape CHECK (
        length(nodes) % 32 = 0
        AND ((idx + 1) & -(idx + 1)) = (1 << (length(nodes) / 32))
    )
) STRICT;

-- Every signed tree head ever published (RFC 6962 section 3.5).
CREATE TABLE tree_heads (
    tree_size    INTEGER NOT NULL CHECK (tree_size >= 0),
    timestamp_ms INTEGER NOT NULL CHECK (timestamp_ms >= 0),
    root_hash    BLOB    NOT NULL CHECK (length(root_hash) = 32),
    signature    BLOB    NOT NULL CHECK (length(signature) > 0),
    PRIMARY KEY (tree_size, timestamp_ms)
) STRICT, WITHOUT ROWID;
