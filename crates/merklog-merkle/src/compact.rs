use crate::{empty_root, node_hash, Error, Hash, NodeId};

/// The right edge of a tree of size `n`: the roots of the complete subtrees
/// that cover leaves `[0, n)`, one per set bit of `n`, largest (leftmost)
/// first.
///
/// It is all the state needed to append: each [`append`](Self::append) costs
/// O(1) amortised hashes (at most log2 n) and the structure holds at most 64
/// hashes, whatever the tree's size.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// Returns the compact range of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores the compact range of a tree of `size` leaves from the hashes
    /// of the nodes [`CompactRange::node_ids`] names for that size, in that
    /// order.
    ///
    /// # Errors
    /// [`Error::CompactRangeShape`] when the number of hashes is not the
    /// number of set bits in `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, Error> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(Error::CompactRangeShape {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(CompactRange { size, hashes })
    }

    /// Returns the ids of the nodes that make up the compact range of a tree
    /// of `size` leaves, largest (leftmost) first.
    pub fn node_ids(size: u64) -> Vec<NodeId> {
        let mut ids = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                ids.push(NodeId::new(level, start >> level));
                start += 1u64 << level;
            }
        }
        ids
    }

    /// Returns the number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Returns the hashes of the nodes named by [`CompactRange::node_ids`].
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Returns `MTH(D[n])`, the root of the tree; the empty tree's hash when
    /// `n = 0`.
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// Appends one leaf hash and reports, through `new_node`, every complete
    /// subtree this append finishes: first the leaf itself (level 0), then
    /// each parent it completes, bottom up. A store must persist exactly
    /// these to answer proofs later.
    ///
    /// # Panics
    /// Never in practice: only if the tree already holds `u64::MAX` leaves.
    pub fn append(&mut self, leaf_hash: Hash, mut new_node: impl FnMut(NodeId, Hash)) {
        // Checked first, so that a full range reports no node and stays whole.
        assert!(self.size < u64::MAX, "tree size overflows u64");
        let index = self.size;
        new_node(NodeId::leaf(index), leaf_hash);
        let mut hash = leaf_hash;
        // Each trailing one bit of the old size is a complete subtree of the
        // same height as `hash` waiting on its left: merge them.
        for level in 1..=index.trailing_ones() {
            let left = self.hashes.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            new_node(NodeId::new(level as u8, index >> level), hash);
        }
        self.hashes.push(hash);
        self.size = index + 1;
    }

    /// Appends every leaf hash in order, as [`append`](Self::append) does.
    pub fn extend(&mut self, leaf_hashes: &[Hash], mut new_node: impl FnMut(NodeId, Hash)) {
        for h in leaf_hashes {
            self.append(*h, &mut new_node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaf_hash;

    #[test]
    fn reports_leaf_then_completed_parents() {
        let mut range = CompactRange::new();
        let mut seen = Vec::new();
        for i in 0..4u8 {
            range.append(leaf_hash(&[i]), |id, _| seen.push(id));
        }
        assert_eq!(
            seen,
            vec![
                NodeId::new(0, 0),
                NodeId::new(0, 1),
                NodeId::new(1, 0),
                NodeId::new(0, 2),
                NodeId::new(0, 3),
                NodeId::new(1, 1),
                NodeId::new(2, 0),
            ]
        );
        assert_eq!(CompactRange::node_ids(4), vec![NodeId::new(2, 0)]);
        assert_eq!(
            CompactRange::node_ids(7),
            vec![NodeId::new(2, 0), NodeId::new(1, 2), NodeId::new(0, 6)]
        );
    }

    #[test]
    fn from_parts_checks_shape() {
        assert!(CompactRange::from_parts(7, vec![Hash::default(); 2]).is_err());
        let r = CompactRange::from_parts(0, vec![]).unwrap();
        assert_eq!(r.root(), crate::empty_root());
    }

    #[test]
    fn a_full_range_refuses_a_leaf_before_reporting_any_node() {
        let full = CompactRange::from_parts(u64::MAX, vec![Hash::default(); 64]).unwrap();
        let mut range = full.clone();
        let mut reported = 0;
        let appended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            range.append(leaf_hash(b"one too many"), |_, _| reported += 1);
        }));
        assert!(appended.is_err());
        assert_eq!(reported, 0);
        assert_eq!(range, full);
    }
}
