//! Which stored nodes a proof needs, and how to assemble the proof from them.
//!
//! Proof generation is split in two so that a store can fetch every node of a
//! proof in one read: [`inclusion_proof_nodes`] / [`consistency_proof_nodes`]
//! name the complete-subtree nodes to fetch, and [`ProofNodes::assemble`]
//! turns their hashes into the RFC 9162 proof. Only the one proof hash that
//! covers the tree's ragged right edge is computed, by folding the few
//! complete subtrees under it; nothing else is rehashed.

use std::ops::Range;

use crate::{node_hash, Error, Hash, NodeId};

/// The nodes a proof is built from, in the order of the proof.
///
/// Each proof hash is either one stored node or, for the ragged right edge of
/// the tree, the fold of several consecutive stored nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofNodes {
    ids: Vec<NodeId>,
    /// For each proof hash, the slice of `ids` it is built from.
    parts: Vec<Range<usize>>,
}

impl ProofNodes {
    fn new() -> Self {
        ProofNodes {
            ids: Vec::new(),
            parts: Vec::new(),
        }
    }

    /// Adds one proof hash: `MTH(D[begin:end])`, where `begin` is aligned so
    /// that the range is a complete subtree or the right edge of the tree.
    fn push_range(&mut self, begin: u64, end: u64) {
        let first = self.ids.len();
        let mut at = begin;
        while at < end {
            // The largest complete subtree that starts at `at` and fits.
            let align = if at == 0 { 63 } else { at.trailing_zeros() };
            let fit = 63 - (end - at).leading_zeros();
            let level = align.min(fit);
            self.ids.push(NodeId::new(level as u8, at >> level));
            at += 1u64 << level;
        }
        self.parts.push(first..self.ids.len());
    }

    /// Returns the ids of the stored nodes to fetch, in the order
    /// [`assemble`](Self::assemble) expects their hashes.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// Returns the number of hashes in the finished proof.
    pub fn proof_len(&self) -> usize {
        self.parts.len()
    }

    /// Builds the proof from the hashes of [`ids`](Self::ids), given in the
    /// same order.
    ///
    /// # Errors
    /// [`Error::NodeCount`] when `hashes` and `ids` differ in length.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, Error> {
        if hashes.len() != self.ids.len() {
            return Err(Error::NodeCount {
                expected: self.ids.len(),
                got: hashes.len(),
            });
        }
        Ok(self
            .parts
            .iter()
            .map(|part| fold_right_edge(&hashes[part.clone()]))
            .collect())
    }

    /// Builds the proof by asking `part_hash` for each proof hash, given the
    /// ids of the stored nodes it covers: one id for a complete subtree,
    /// several for the ragged right edge, whose hash is
    /// [`fold_right_edge`] of theirs. Proofs against one tree size share
    /// their ragged parts, so a caller building many can fold each once.
    ///
    /// # Errors
    /// The first error `part_hash` returns.
    pub fn assemble_with<E>(
        &self,
        mut part_hash: impl FnMut(&[NodeId]) -> Result<Hash, E>,
    ) -> Result<Vec<Hash>, E> {
        self.parts
            .iter()
            .map(|part| part_hash(&self.ids[part.clone()]))
            .collect()
    }
}

/// The hash of a ragged right edge from the hashes of its complete subtrees,
/// left to right: `node_hash(h0, node_hash(h1, ... h_last))`. One hash is
/// returned as it is.
///
/// # Panics
/// When `hashes` is empty: an edge has at least one subtree.
pub fn fold_right_edge(hashes: &[Hash]) -> Hash {
    let (last, rest) = hashes.split_last().expect("an edge has a subtree");
    rest.iter()
        .rev()
        .fold(*last, |acc, left| node_hash(left, &acc))
}

/// A read-only source of stored node hashes, such as a store or an in-memory
/// tree.
pub trait NodeSource {
    /// The source's own error.
    type Error;

    /// Returns the hashes of `ids`, in the same order.
    ///
    /// # Errors
    /// Whatever the source fails with, including a node it does not hold.
    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// Names the nodes of the inclusion proof `PATH(m, D[n])` of leaf `m` in a
/// tree of `n` leaves (RFC 9162 §2.1.3.1), from the leaf's sibling upward.
///
/// # Errors
/// [`Error::IndexOutOfRange`] when `m >= n`.
pub fn inclusion_proof_nodes(m: u64, n: u64) -> Result<ProofNodes, Error> {
    if m >= n {
        return Err(Error::IndexOutOfRange {
            index: m,
            tree_size: n,
        });
    }
    let mut nodes = ProofNodes::new();
    let last = n - 1;
    let mut level = 0u32;
    // Walk up while the node holding `m` at this level is not yet the root.
    while level < 64 && (last >> level) > 0 {
        let sibling = (m >> level) ^ 1;
        let begin = sibling << level;
        if begin < n {
            let end = begin.saturating_add(1u64 << level).min(n);
            nodes.push_range(begin, end);
        }
        // A sibling that starts past the end does not exist: the RFC's tree
        // promotes the node unchanged to the next level.
        level += 1;
    }
    Ok(nodes)
}

/// Names the nodes of the consistency proof `PROOF(m, D[n])` between the
/// trees of `m` and `n` leaves (RFC 9162 §2.1.4.1).
///
/// The proof is empty when `m = 0` or `m = n`.
///
/// # Errors
/// [`Error::SizeOrder`] when `m > n`.
pub fn consistency_proof_nodes(m: u64, n: u64) -> Result<ProofNodes, Error> {
    if m > n {
        return Err(Error::SizeOrder {
            first: m,
            second: n,
        });
    }
    // SUBPROOF(m, D[n], b) appends each MTH after its recursive part, so the
    // ranges are collected top down and reversed.
    let mut ranges = Vec::new();
    if m > 0 {
        let (mut offset, mut size, mut first, mut whole) = (0u64, n, m, true);
        loop {
            if first == size {
                if !whole {
                    ranges.push((offset, offset + size));
                }
                break;
            }
            let k = largest_power_of_two_below(size);
            if first <= k {
                ranges.push((offset + k, offset + size));
                size = k;
            } else {
                ranges.push((offset, offset + k));
                offset += k;
                first -= k;
                size -= k;
                whole = false;
            }
        }
    }
    let mut nodes = ProofNodes::new();
    for (begin, end) in ranges.into_iter().rev() {
        nodes.push_range(begin, end);
    }
    Ok(nodes)
}

/// Returns the inclusion proof of leaf `m` in the tree of `n` leaves, reading
/// the nodes it needs from `source` in one call.
///
/// # Errors
/// `ProofError::Request` for `m >= n`, `ProofError::Source` when the source fails.
pub fn inclusion_proof<S: NodeSource>(
    source: &S,
    m: u64,
    n: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let nodes = inclusion_proof_nodes(m, n).map_err(ProofError::Request)?;
    fetch_and_assemble(source, &nodes)
}

/// Returns the consistency proof between the trees of `m` and `n` leaves,
/// reading the nodes it needs from `source` in one call.
///
/// # Errors
/// `ProofError::Request` for `m > n`, `ProofError::Source` when the source fails.
pub fn consistency_proof<S: NodeSource>(
    source: &S,
    m: u64,
    n: u64,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let nodes = consistency_proof_nodes(m, n).map_err(ProofError::Request)?;
    fetch_and_assemble(source, &nodes)
}

fn fetch_and_assemble<S: NodeSource>(
    source: &S,
    nodes: &ProofNodes,
) -> Result<Vec<Hash>, ProofError<S::Error>> {
    let hashes = source
        .node_hashes(nodes.ids())
        .map_err(ProofError::Source)?;
    nodes.assemble(&hashes).map_err(ProofError::Request)
}

/// A proof could not be produced: either the request was invalid or the node
/// source failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ProofError<E> {
    /// The request itself is invalid (index out of range, `m > n`) or the
    /// source returned the wrong number of hashes.
    Request(Error),
    /// The node source failed.
    Source(E),
}

/// Returns the largest power of two strictly below `n` (`n >= 2`): the `k` of
/// RFC 9162 §2.1.
pub(crate) fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_is_largest_power_of_two_below() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(3), 2);
        assert_eq!(largest_power_of_two_below(4), 2);
        assert_eq!(largest_power_of_two_below(5), 4);
        assert_eq!(largest_power_of_two_below(u64::MAX), 1 << 63);
    }

    #[test]
    fn inclusion_nodes_for_seven_leaves() {
        // PATH(6, D[7]) = [MTH(D[4:6]), MTH(D[0:4])].
        let p = inclusion_proof_nodes(6, 7).unwrap();
        assert_eq!(p.ids(), &[NodeId::new(1, 2), NodeId::new(2, 0)]);
        // PATH(1, D[7]) = [leaf 0, MTH(D[2:4]), MTH(D[4:7])], the last one ragged.
        let p = inclusion_proof_nodes(1, 7).unwrap();
        assert_eq!(
            p.ids(),
            &[
                NodeId::new(0, 0),
                NodeId::new(1, 1),
                NodeId::new(1, 2),
                NodeId::new(0, 6)
            ]
        );
        assert_eq!(p.proof_len(), 3);
        assert!(inclusion_proof_nodes(7, 7).is_err());
        assert_eq!(inclusion_proof_nodes(0, 1).unwrap().proof_len(), 0);
    }

    #[test]
    fn assemble_with_names_each_part_and_agrees_with_assemble() {
        // PATH(1, D[7]): leaf 0, MTH(D[2:4]), then the ragged MTH(D[4:7]).
        let p = inclusion_proof_nodes(1, 7).unwrap();
        let hash_of = |id: &NodeId| Hash([id.level * 16 + id.index as u8; 32]);
        let mut parts = Vec::new();
        let proof = p
            .assemble_with(|ids| {
                parts.push(ids.to_vec());
                let hashes: Vec<Hash> = ids.iter().map(hash_of).collect();
                Ok::<_, ()>(fold_right_edge(&hashes))
            })
            .unwrap();
        assert_eq!(
            parts,
            [
                vec![NodeId::new(0, 0)],
                vec![NodeId::new(1, 1)],
                vec![NodeId::new(1, 2), NodeId::new(0, 6)]
            ]
        );
        let hashes: Vec<Hash> = p.ids().iter().map(hash_of).collect();
        assert_eq!(proof, p.assemble(&hashes).unwrap());
        assert_eq!(
            proof[2],
            node_hash(&hash_of(&NodeId::new(1, 2)), &hash_of(&NodeId::new(0, 6)))
        );
    }

    #[test]
    fn huge_trees_do_not_overflow() {
        // The last leaf of the largest tree is even: it has no sibling at level 0.
        let p = inclusion_proof_nodes(u64::MAX - 1, u64::MAX).unwrap();
        assert_eq!(p.proof_len(), 63);
        let p = inclusion_proof_nodes(0, u64::MAX).unwrap();
        assert_eq!(p.proof_len(), 64);
        let p = consistency_proof_nodes(u64::MAX - 1, u64::MAX).unwrap();
        assert!(p.proof_len() > 0);
        assert!(consistency_proof_nodes(3, 2).is_err());
    }
}
