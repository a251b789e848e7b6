-- merklog: keep leaf hashes unique with a hash index instead of a B-tree.
-- Leaf hashes are uniformly random 32-byte keys that are only ever looked up
-- by equality: every insert into the B-tree descended it with byte-wise
-- comparisons to a random leaf page, the largest cost of an append batch on
-- PostgreSQL (docs/BENCHMARKS.md). A hash index cannot back UNIQUE, but an
-- exclusion constraint over it enforces the same rule (SQLSTATE 23P01 instead
-- of 23505), and serves the equality look-ups of duplicates and of proofs by
-- leaf hash.
ALTER TABLE leaves DROP CONSTRAINT leaves_leaf_hash_key;
ALTER TABLE leaves ADD CONSTRAINT leaves_leaf_hash_unique EXCLUDE USING hash (leaf_hash WITH =);
