-- merklog: the log's tables (docs/STORAGE.md explains the layout).
--
-- One row per leaf. Besides the leaf itself the row of leaf `idx` holds the
-- hashes of the complete subtrees whose last leaf it is: node (level l >= 1,
-- index i) lives in row ((i + 1) << l) - 1, at byte offset (l - 1) * 32 of
-- `nodes`. Leaf idx completes exactly trailing_ones(idx) such nodes, which is
-- what the CHECK says: the lowest set bit of idx + 1 is 2^(number of nodes).

CREATE TABLE leaves (
    idx           BIGINT PRIMARY KEY CHECK (idx >= 0),
    leaf_hash     BYTEA  NOT NULL UNIQUE CHECK (length(leaf_hash) = 32),
    entry         BYTEA  NOT NULL,
    integrated_ms BIGINT NOT NULL CHECK (integrated_ms >= 0),
    nodes         BYTEA  NOT NULL,
    CONSTRAINT leaves_nodes_shape CHECK (
        length(nodes) % 32 = 0
        AND ((idx + 1) & -(idx + 1)) = (1::BIGINT << (length(nodes) / 32))
    )
);

-- Every signed tree head ever published (RFC 6962 section 3.5).
CREATE TABLE tree_heads (
    tree_size    BIGINT NOT NULL CHECK (tree_size >= 0),
    timestamp_ms BIGINT NOT NULL CHECK (timestamp_ms >= 0),
    root_hash    BYTEA  NOT NULL CHECK (length(root_hash) = 32),
    signature    BYTEA  NOT NULL CHECK (length(signature) > 0),
    PRIMARY KEY (tree_size, timestamp_ms)
);
