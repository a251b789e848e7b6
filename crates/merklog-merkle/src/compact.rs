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

    /// Restores the compact range of the tree of `n` leaves from its last
    /// leaf: `leaf_hash` is leaf `n - 1` and `proof` is its inclusion proof
    /// `PATH(n - 1, D[n])` (RFC 9162 §2.1.3.1).
    ///
    /// Why this works: the last leaf is the right end of every subtree on
    /// its path, so every sibling in its path is a *left* sibling (in the
    /// verification of RFC 9162 §2.1.3.2 `fn == sn` at every step). With
    /// `k` the number of trailing zero bits of `n`, the first `k` siblings
    /// are inside the smallest complete subtree of the range (the one of
    /// `2^k` leaves that ends at leaf `n - 1`), whose root is the leaf hash
    /// folded with them; each later sibling is the root of one larger
    /// complete subtree to its left, bottom up: exactly the other nodes of
    /// the range, smallest first. The range's root is then the root the
    /// proof leads to, so a caller that checks [`CompactRange::root`]
    /// against a signed root has checked the proof.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] when `n = 0` (the empty tree has no last
    /// leaf: its range is [`CompactRange::new`]); [`Error::ProofTooShort`]
    /// or [`Error::ProofTooLong`] when the proof does not have the length
    /// `PATH(n - 1, D[n])` has.
    pub fn from_last_leaf_proof(n: u64, leaf_hash: &Hash, proof: &[Hash]) -> Result<Self, Error> {
        if n == 0 {
            return Err(Error::IndexOutOfRange {
                index: 0,
                tree_size: 0,
            });
        }
        let k = n.trailing_zeros() as usize;
        let expected = k + n.count_ones() as usize - 1;
        match proof.len().cmp(&expected) {
            std::cmp::Ordering::Less => {
                return Err(Error::ProofTooShort {
                    expected,
                    got: proof.len(),
                })
            }
            std::cmp::Ordering::Greater => {
                return Err(Error::ProofTooLong {
                    expected,
                    got: proof.len(),
                })
            }
            std::cmp::Ordering::Equal => {}
        }
        let (inside, larger) = proof.split_at(k);
        let smallest = inside
            .iter()
            .fold(*leaf_hash, |right, left| node_hash(left, &right));
        let mut hashes: Vec<Hash> = larger.iter().rev().copied().collect();
        hashes.push(smallest);
        Self::from_parts(n, hashes)
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
    fn the_last_leaf_proof_gives_the_range() {
        use crate::{inclusion_proof, merkle_tree_hash, NodeId, NodeSource};
        struct Leaves(Vec<Hash>);
        impl NodeSource for Leaves {
            type Error = ();
            fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ()> {
                Ok(ids
                    .iter()
                    .map(|id| {
                        merkle_tree_hash(
                            &self.0[id.first_leaf() as usize..=id.last_leaf() as usize],
                        )
                    })
                    .collect())
            }
        }
        let leaves = Leaves((0..70u8).map(|i| leaf_hash(&[i])).collect());
        let mut range = CompactRange::new();
        for n in 1..=70u64 {
            range.append(leaves.0[n as usize - 1], |_, _| {});
            let proof = inclusion_proof(&leaves, n - 1, n).unwrap();
            let got =
                CompactRange::from_last_leaf_proof(n, &leaves.0[n as usize - 1], &proof).unwrap();
            assert_eq!(got, range, "size {n}");
            let mut long = proof.clone();
            long.push(Hash::default());
            assert!(matches!(
                CompactRange::from_last_leaf_proof(n, &leaves.0[0], &long),
                Err(Error::ProofTooLong { .. })
            ));
            if let Some((_, short)) = proof.split_last() {
                assert!(matches!(
                    CompactRange::from_last_leaf_proof(n, &leaves.0[0], short),
                    Err(Error::ProofTooShort { .. })
                ));
            }
        }
        assert!(CompactRange::from_last_leaf_proof(0, &Hash::default(), &[]).is_err());
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
