//! An independent oracle: rs_merkle 1.5 with a hasher that applies the RFC
//! 9162 §2.1.1 domain-separation prefixes (`0x00` for leaves, `0x01` for
//! interior nodes).
//!
//! rs_merkle builds its tree level by level, pairing nodes `(2i, 2i + 1)` and
//! promoting an unpaired last node unchanged to the next level
//! (`Hasher::concat_and_hash(left, None)` returns `left`). RFC 9162 instead
//! splits `D[n]` at the largest power of two `k < n`. The two shapes are the
//! same tree: in both, the level-`l` nodes are the complete subtrees aligned at
//! multiples of `2^l`, plus at most one ragged node on the right edge, which
//! is the only node that can be unpaired and is carried up unchanged until it
//! meets its left neighbour. So the roots agree for every size, not only for
//! powers of two, and so do single-leaf inclusion proofs (rs_merkle skips the
//! missing sibling of a promoted node, as `PATH` does). The tests below check
//! that claim rather than assume it. The one difference is the empty tree:
//! rs_merkle has no root for it, RFC 9162 says `MTH({}) = SHA-256()`.

use merklog_merkle::*;
use proptest::prelude::*;
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};

/// SHA-256 with the RFC 9162 prefixes. rs_merkle hashes leaves itself only
/// through `hash`, which we never call on leaf data: leaves are given to it
/// already hashed with [`leaf_hash`].
#[derive(Clone)]
struct Rfc9162;

impl Hasher for Rfc9162 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0x01]);
        h.update(data);
        h.finalize().into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(right) => node_hash(&Hash(*left), &Hash(*right)).0,
            // An unpaired node is promoted unchanged, as rs_merkle's default does.
            None => *left,
        }
    }
}

fn leaves(n: u64, seed: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()))
        .collect()
}

fn rs_tree(leaves: &[Hash]) -> MerkleTree<Rfc9162> {
    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    MerkleTree::<Rfc9162>::from_leaves(&raw)
}

#[test]
fn our_hasher_is_the_rfc_node_hash() {
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let concat = [a.0, b.0].concat();
    assert_eq!(Rfc9162::hash(&concat), node_hash(&a, &b).0);
}

#[test]
fn roots_agree_for_every_size_up_to_300() {
    let all = leaves(300, 7);
    let mut range = CompactRange::new();
    let mut sizes = 0;
    for n in 1..=300usize {
        range.append(all[n - 1], |_, _| {});
        let ours = range.root();
        assert_eq!(merkle_tree_hash(&all[..n]), ours);
        let theirs = rs_tree(&all[..n])
            .root()
            .expect("a non-empty tree has a root");
        assert_eq!(Hash(theirs), ours, "MTH(D[{n}])");
        sizes += 1;
    }
    assert_eq!(sizes, 300);
    assert_eq!(
        rs_tree(&[]).root(),
        None,
        "rs_merkle has no root for the empty tree"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn roots_and_inclusion_proofs_agree(n in 1..=300u64, seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let leaves = leaves(n, seed);
        let tree = rs_tree(&leaves);
        let root = merkle_tree_hash(&leaves);
        prop_assert_eq!(tree.root().map(Hash), Some(root));

        let m = pick.index(n as usize);
        let theirs: Vec<Hash> = tree.proof(&[m]).proof_hashes().iter().copied().map(Hash).collect();
        let mut store = std::collections::HashMap::new();
        let mut range = CompactRange::new();
        for l in &leaves {
            range.append(*l, |id, h| {
                store.insert(id, h);
            });
        }
        let nodes = inclusion_proof_nodes(m as u64, n).unwrap();
        let hashes: Vec<Hash> = nodes.ids().iter().map(|id| store[id]).collect();
        let ours = nodes.assemble(&hashes).unwrap();
        prop_assert_eq!(&ours, &theirs, "PATH({}, D[{}])", m, n);
        prop_assert_eq!(verify_inclusion(m as u64, n, &leaves[m], &theirs, &root), Ok(()));
    }
}
