//! What is appended and what is read back, and the shape checks every backend
//! runs before it writes anything.

use std::collections::HashSet;

use merklog_event::SealedEvent;
use merklog_merkle::{leaf_hash, merkle_tree_hash, CompactRange, Hash, NodeId};
use merklog_sth::{SignedTreeHead, TreeHead};

use crate::events::EventRow;
use crate::{Result, StorageError};

/// One leaf to append: the entry's bytes and its leaf hash
/// `SHA-256(0x00 || entry)` (RFC 9162 §2.1.1), and for an event leaf the
/// searchable `events` row. The fields are private so that the hash and the
/// row always belong to the entry: they are computed once, where the leaf is
/// made, and never rechecked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLeaf {
    leaf_hash: Hash,
    entry: Vec<u8>,
    event: Option<Box<EventRow>>,
}

impl NewLeaf {
    /// Returns the leaf for `entry`, hashing it. The store keeps no event
    /// row for it, whatever its bytes (the service refuses opaque entries
    /// that look like event leaves before they get here).
    pub fn new(entry: Vec<u8>) -> Self {
        NewLeaf {
            leaf_hash: leaf_hash(&entry),
            entry,
            event: None,
        }
    }

    /// Returns the leaf of `sealed` (its entry,
    /// [`SealedEvent::entry`]), carrying the `events` row that
    /// [`LogStore::append_batch`](crate::LogStore::append_batch) writes
    /// beside it.
    pub fn event(sealed: &SealedEvent) -> Self {
        let entry = sealed.entry();
        NewLeaf {
            leaf_hash: leaf_hash(&entry),
            entry,
            event: Some(Box::new(EventRow::of(&sealed.event))),
        }
    }

    /// The event id of an event leaf; `None` for an opaque leaf.
    pub fn event_id(&self) -> Option<&str> {
        self.event.as_deref().map(|row| row.event_id.as_str())
    }

    /// The leaf hash of [`entry`](Self::entry).
    pub fn leaf_hash(&self) -> Hash {
        self.leaf_hash
    }

    /// The entry's bytes.
    pub fn entry(&self) -> &[u8] {
        &self.entry
    }
}

/// Leaves `[first_index, first_index + leaves.len())`, the interior nodes they
/// complete and the signed tree head that covers them: what
/// [`LogStore::append_batch`](crate::LogStore::append_batch) writes in one
/// transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The index of the first leaf: the number of leaves already stored.
    pub first_index: u64,
    pub leaves: Vec<NewLeaf>,
    /// Every node of level ≥ 1 that these leaves complete, as
    /// [`CompactRange::append`] reports them (level-0 nodes are the leaf
    /// hashes and are not repeated here). Order does not matter.
    pub nodes: Vec<(NodeId, Hash)>,
    /// The head of the tree of `first_index + leaves.len()` leaves.
    pub tree_head: SignedTreeHead,
    /// When the leaves were integrated, in milliseconds since the Unix epoch.
    pub integrated_ms: u64,
}

impl Batch {
    /// Appends `entries` to `range` (which must hold the stored tree) and
    /// returns the batch that persists them, with the head that `sign`
    /// produces for the new root at `timestamp_ms`.
    ///
    /// `range` is advanced even if the batch is never stored: on a failed
    /// append the caller must restore it from the store.
    pub fn grow(
        range: &mut CompactRange,
        entries: Vec<Vec<u8>>,
        integrated_ms: u64,
        timestamp_ms: u64,
        sign: impl FnOnce(TreeHead) -> SignedTreeHead,
    ) -> Batch {
        let leaves = entries.into_iter().map(NewLeaf::new).collect();
        Self::grow_leaves(range, leaves, integrated_ms, timestamp_ms, sign)
    }

    /// Like [`Batch::grow`], for leaves already made (event leaves from
    /// [`NewLeaf::event`], opaque ones from [`NewLeaf::new`]).
    pub fn grow_leaves(
        range: &mut CompactRange,
        leaves: Vec<NewLeaf>,
        integrated_ms: u64,
        timestamp_ms: u64,
        sign: impl FnOnce(TreeHead) -> SignedTreeHead,
    ) -> Batch {
        let first_index = range.size();
        let mut nodes = Vec::new();
        for leaf in &leaves {
            range.append(leaf.leaf_hash(), |id, hash| {
                if id.level > 0 {
                    nodes.push((id, hash));
                }
            });
        }
        let tree_head = sign(TreeHead {
            tree_size: range.size(),
            timestamp_ms,
            root_hash: range.root(),
        });
        Batch {
            first_index,
            leaves,
            nodes,
            tree_head,
            integrated_ms,
        }
    }
}

/// A stored leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub leaf_hash: Hash,
    pub entry: Vec<u8>,
    pub integrated_ms: u64,
}

/// A stored leaf's hash and the hashes of the subtrees it completes, levels
/// 1, 2, … upward: what `verify-store` rechecks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafNodes {
    pub index: u64,
    pub leaf_hash: Hash,
    /// `nodes[k]` is node `(k + 1, index >> (k + 1))`; there are
    /// `index.trailing_ones()` of them.
    pub nodes: Vec<Hash>,
}

/// One row of the `leaves` table, ready to insert.
pub(crate) struct LeafRow<'a> {
    pub idx: i64,
    pub leaf_hash: &'a Hash,
    pub entry: &'a [u8],
    /// The level ≥ 1 nodes this leaf completes, concatenated bottom up.
    pub nodes: Vec<u8>,
    /// The `events` row of an event leaf.
    pub event: Option<&'a EventRow>,
}

/// The largest index or size the schema can hold (`BIGINT`).
pub(crate) const MAX_STORED: u64 = i64::MAX as u64;

/// Converts an index or size to the database's `BIGINT`.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| StorageError::InvalidBatch {
        reason: format!("{what} {value} exceeds the largest storable value {MAX_STORED}"),
    })
}

/// Converts a stored `BIGINT` back, refusing negative values.
pub(crate) fn from_i64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StorageError::Corrupt {
        what: format!("{what} is negative: {value}"),
    })
}

/// Reads a stored 32-byte hash.
pub(crate) fn hash_from_db(bytes: &[u8], what: &str) -> Result<Hash> {
    Hash::from_slice(bytes).map_err(|_| StorageError::Corrupt {
        what: format!("{what} has {} bytes, 32 expected", bytes.len()),
    })
}

/// Splits a stored `nodes` column of leaf `index` into hashes, checking it
/// holds exactly `index.trailing_ones()` of them.
pub(crate) fn nodes_from_db(index: u64, bytes: &[u8]) -> Result<Vec<Hash>> {
    let expected = index.trailing_ones() as usize;
    split_hashes(bytes, expected).ok_or_else(|| StorageError::Corrupt {
        what: format!(
            "nodes of leaf {index} have {} bytes, {} expected",
            bytes.len(),
            expected * Hash::LEN
        ),
    })
}

/// Splits `bytes` into exactly `count` hashes; `None` for another length.
fn split_hashes(bytes: &[u8], count: usize) -> Option<Vec<Hash>> {
    (bytes.len() == count * Hash::LEN).then(|| {
        bytes
            .chunks_exact(Hash::LEN)
            .map(|c| Hash(c.try_into().expect("chunks are 32 bytes")))
            .collect()
    })
}

/// Clamps a requested `[start, end)` to what the schema can hold.
pub(crate) fn clamp_range(start: u64, end: u64) -> (i64, i64) {
    let clamp = |v: u64| v.min(MAX_STORED) as i64;
    (clamp(start), clamp(end))
}

/// Reads one `(idx, leaf_hash, nodes)` row of the `leaves` table.
pub(crate) fn leaf_nodes_from_row(
    (idx, hash, nodes): (i64, Vec<u8>, Vec<u8>),
) -> Result<LeafNodes> {
    let index = from_i64(idx, "idx")?;
    Ok(LeafNodes {
        index,
        leaf_hash: hash_from_db(&hash, "leaf_hash")?,
        nodes: nodes_from_db(index, &nodes)?,
    })
}

/// Returns the row (`last_leaf`) and byte offset in its `nodes` column where
/// node `id` is stored, or `None` for a node beyond what the schema can hold.
/// Level 0 nodes are the row's `leaf_hash` and have no offset.
pub(crate) fn node_location(id: NodeId) -> Option<(u64, Option<usize>)> {
    if id.level > 63 {
        return None;
    }
    let last = id
        .index
        .checked_add(1)
        .and_then(|i| i.checked_mul(1u64 << id.level))
        .map(|end| end - 1)
        .filter(|&last| last <= MAX_STORED)?;
    let offset = (id.level > 0).then(|| (id.level as usize - 1) * Hash::LEN);
    Some((last, offset))
}

/// The height of a leaf tile (PostgreSQL's `leaf_tiles`): it holds the
/// hashes of [`TILE_LEAVES`] = 2^TILE_HEIGHT leaves.
pub(crate) const TILE_HEIGHT: u8 = 4;

/// The leaves of one leaf tile.
pub const TILE_LEAVES: u64 = 1 << TILE_HEIGHT;

/// The tile whose leaves hold `id`, if `id` is below [`TILE_HEIGHT`] and
/// within the storable indexes.
pub(crate) fn tile_of(id: NodeId) -> Option<i64> {
    if id.level >= TILE_HEIGHT {
        return None;
    }
    let first = id.index.checked_mul(1 << id.level)?;
    i64::try_from(first >> TILE_HEIGHT).ok()
}

/// Splits tile `tile`'s stored bytes into its [`TILE_LEAVES`] leaf hashes.
pub(crate) fn tile_hashes(tile: u64, bytes: &[u8]) -> Result<Vec<Hash>> {
    split_hashes(bytes, TILE_LEAVES as usize).ok_or_else(|| StorageError::Corrupt {
        what: format!(
            "the tile of leaves [{}, {}) has {} bytes, not {}",
            tile * TILE_LEAVES,
            (tile + 1) * TILE_LEAVES,
            bytes.len(),
            TILE_LEAVES as usize * Hash::LEN
        ),
    })
}

/// Computes the hash of `id` (below [`TILE_HEIGHT`]) from `tile`, the leaf
/// hashes of the complete block that holds it.
pub(crate) fn node_from_tile(id: NodeId, tile: &[Hash]) -> Result<Hash> {
    let Some(block) = tile_of(id).map(|t| t as u64) else {
        return Err(StorageError::NodeMissing { id });
    };
    let first = ((id.index << id.level) - block * TILE_LEAVES) as usize;
    Ok(merkle_tree_hash(&tile[first..first + (1 << id.level)]))
}

/// Picks the hash of `id` out of its row's `leaf_hash` and `nodes`.
pub(crate) fn node_from_row(id: NodeId, leaf_hash: &[u8], nodes: &[u8]) -> Result<Hash> {
    match node_location(id) {
        Some((_, None)) => hash_from_db(leaf_hash, "leaf_hash"),
        Some((last, Some(offset))) => nodes
            .get(offset..offset + Hash::LEN)
            .map(|b| Hash(b.try_into().expect("slice is 32 bytes")))
            .ok_or_else(|| StorageError::Corrupt {
                what: format!(
                    "nodes of leaf {last} have {} bytes, too short for level {}",
                    nodes.len(),
                    id.level
                ),
            }),
        None => Err(StorageError::NodeMissing { id }),
    }
}

/// Checks `batch`'s shape and lays it out as rows: one per leaf, each with
/// the nodes it completes in level order.
///
/// # Errors
/// [`StorageError::InvalidBatch`] when the head's size is not
/// `first_index + leaves.len()`, a node does not belong to a leaf of the batch, is given twice or is missing, an
/// index does not fit the schema, or two event leaves have the same event id.
pub(crate) fn rows(batch: &Batch) -> Result<Vec<LeafRow<'_>>> {
    let invalid = |reason: String| StorageError::InvalidBatch { reason };
    let count = batch.leaves.len() as u64;
    let end = batch
        .first_index
        .checked_add(count)
        .filter(|&end| end <= MAX_STORED)
        .ok_or_else(|| invalid(format!("leaves end past {MAX_STORED}")))?;
    if batch.tree_head.head.tree_size != end {
        return Err(invalid(format!(
            "tree head size {} is not first_index {} + {} leaves",
            batch.tree_head.head.tree_size, batch.first_index, count
        )));
    }
    to_i64(batch.integrated_ms, "integrated_ms")?;
    to_i64(batch.tree_head.head.timestamp_ms, "timestamp_ms")?;

    let mut rows = Vec::with_capacity(batch.leaves.len());
    let mut event_ids = HashSet::new();
    for (offset, leaf) in batch.leaves.iter().enumerate() {
        let index = batch.first_index + offset as u64;
        if let Some(id) = leaf.event_id() {
            if !event_ids.insert(id) {
                return Err(invalid(format!(
                    "event_id {id:?} is given twice (the second at leaf {index})"
                )));
            }
        }
        rows.push(LeafRow {
            idx: to_i64(index, "leaf index")?,
            leaf_hash: &leaf.leaf_hash,
            entry: &leaf.entry,
            nodes: vec![0; index.trailing_ones() as usize * Hash::LEN],
            event: leaf.event.as_deref(),
        });
    }

    let mut filled: Vec<u64> = vec![0; rows.len()];
    for (id, hash) in &batch.nodes {
        let located = node_location(*id)
            .filter(|_| id.level > 0)
            .filter(|(last, _)| (batch.first_index..end).contains(last));
        let Some((last, Some(offset))) = located else {
            return Err(invalid(format!(
                "node (level {}, index {}) is not completed by leaves [{}, {end})",
                id.level, id.index, batch.first_index
            )));
        };
        let row = (last - batch.first_index) as usize;
        let bit = 1u64 << (id.level - 1);
        if filled[row] & bit != 0 {
            return Err(invalid(format!(
                "node (level {}, index {}) is given twice",
                id.level, id.index
            )));
        }
        filled[row] |= bit;
        rows[row].nodes[offset..offset + Hash::LEN].copy_from_slice(hash.as_bytes());
    }
    for (row, bits) in rows.iter().zip(&filled) {
        let expected = row.nodes.len() / Hash::LEN;
        if bits.count_ones() as usize != expected {
            return Err(invalid(format!(
                "leaf {} completes {expected} nodes but the batch gives {}",
                row.idx,
                bits.count_ones()
            )));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_sth::SignedTreeHead;

    fn unsigned(head: TreeHead) -> SignedTreeHead {
        SignedTreeHead {
            head,
            signature: vec![1],
        }
    }

    fn batch(range: &mut CompactRange, n: usize) -> Batch {
        let entries = (0..n)
            .map(|i| format!("entry {}", range.size() + i as u64).into_bytes())
            .collect();
        Batch::grow(range, entries, 5, 6, unsigned)
    }

    #[test]
    fn rows_place_every_node_in_the_leaf_that_completes_it() {
        let mut range = CompactRange::new();
        let b = batch(&mut range, 8);
        let rows = rows(&b).unwrap();
        let counts: Vec<usize> = rows.iter().map(|r| r.nodes.len() / 32).collect();
        assert_eq!(counts, vec![0, 1, 0, 2, 0, 1, 0, 3]);
        // Leaf 7 completes (1,3), (2,1) and (3,0): the last is the root.
        assert_eq!(&rows[7].nodes[64..96], range.root().as_bytes());
        let b2 = batch(&mut range, 3);
        let rows = super::rows(&b2).unwrap();
        assert_eq!(rows[0].idx, 8);
        assert_eq!(rows[1].nodes.len(), 32);
    }

    #[test]
    fn malformed_batches_are_rejected() {
        let mut range = CompactRange::new();
        let good = batch(&mut range, 4);
        let check = |b: &Batch| matches!(rows(b), Err(StorageError::InvalidBatch { .. }));

        let mut b = good.clone();
        b.tree_head.head.tree_size = 5;
        assert!(check(&b), "wrong head size");
        let mut b = good.clone();
        b.nodes.pop();
        assert!(check(&b), "missing node");
        let mut b = good.clone();
        b.nodes.push(b.nodes[0]);
        assert!(check(&b), "node twice");
        let mut b = good.clone();
        b.nodes.push((NodeId::new(1, 7), Hash::default()));
        assert!(check(&b), "foreign node");
        let mut b = good.clone();
        b.nodes.push((NodeId::new(0, 1), Hash::default()));
        assert!(check(&b), "level 0 node");
        let mut b = good.clone();
        b.first_index = u64::MAX - 1;
        assert!(check(&b), "index overflow");
        assert!(rows(&good).is_ok());
    }

    #[test]
    fn node_locations() {
        assert_eq!(node_location(NodeId::new(0, 5)), Some((5, None)));
        assert_eq!(node_location(NodeId::new(3, 2)), Some((23, Some(64))));
        assert_eq!(node_location(NodeId::new(1, u64::MAX)), None);
        assert_eq!(
            node_location(NodeId::new(63, 0)),
            Some((MAX_STORED, Some(62 * 32)))
        );
        assert_eq!(node_location(NodeId::new(63, 1)), None);
        assert_eq!(node_location(NodeId::new(64, 0)), None);
        assert!(nodes_from_db(7, &[0; 96]).is_ok());
        assert!(nodes_from_db(7, &[0; 64]).is_err());
    }
}
