//! Property tests against the naive reference of RFC 9162 §2.1
//! (`tests/reference`): proofs are generated from two node sources (the
//! reference itself, and an in-memory store fed only by the nodes
//! [`CompactRange::append`] reports), compared with the reference's
//! `PATH`/`PROOF`, verified, and then mutated in every way a forger or a
//! corrupted store could; every mutation must be rejected, with an error that
//! tells malformed input apart from a root mismatch.

mod reference;

use std::collections::HashMap;

use merklog_merkle::*;
use proptest::prelude::*;
use reference::Reference;

/// An in-memory store that holds exactly the nodes `CompactRange::append`
/// reported, as a storage backend would.
#[derive(Default)]
struct MemStore {
    nodes: HashMap<NodeId, Hash>,
    range: CompactRange,
}

impl MemStore {
    fn with_leaves(leaves: &[Hash]) -> Self {
        let mut store = MemStore::default();
        for leaf in leaves {
            let nodes = &mut store.nodes;
            store.range.append(*leaf, |id, h| {
                assert!(nodes.insert(id, h).is_none(), "node {id:?} reported twice");
            });
        }
        store
    }
}

impl NodeSource for MemStore {
    type Error = NodeId;

    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, NodeId> {
        ids.iter()
            .map(|id| self.nodes.get(id).copied().ok_or(*id))
            .collect()
    }
}

/// Distinct leaf hashes for a tree of `n` leaves; `seed` varies the data.
fn leaves(n: u64, seed: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| {
            let mut data = seed.to_be_bytes().to_vec();
            data.extend_from_slice(&i.to_be_bytes());
            leaf_hash(&data)
        })
        .collect()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

/// The shape of `PATH(m, D[n])` as the verifier walks it: how many hashes are
/// combined with the index's bits (`inner`) and how many are left siblings on
/// the tree's right border (`border`). Transcribed from `decompInclProof` in
/// transparency-dev/merkle proof/verify.go.
///
/// An inclusion proof does not commit to `n` itself: if `(m, n')` has the same
/// shape as `(m, n)`, the verifier performs the same hashing and the proof for
/// `n` verifies "for `n'`" against the same root. RFC 9162 binds `n` to the
/// root through the signed tree head, not through the proof.
fn inclusion_shape(m: u64, n: u64) -> (u32, u32) {
    let inner = 64 - (m ^ (n - 1)).leading_zeros();
    let border = if inner == 64 {
        0
    } else {
        (m >> inner).count_ones()
    };
    (inner, border)
}

/// The same for `PROOF(m, D[n])`, `0 < m < n`: the verifier's hashing is fixed
/// by `m` and the shape of `PATH(m - 1, D[n])` above the first complete
/// subtree.
fn consistency_shape(m: u64, n: u64) -> (u64, u32, u32) {
    let (inner, border) = inclusion_shape(m - 1, n);
    (m, inner, border)
}

/// Checks leaf `m` of a tree of `n = leaves.len()` leaves, given both sources
/// and the reference; `bits` picks which bit to flip in each mutated hash.
fn check_inclusion(
    reference: &Reference,
    store: &MemStore,
    m: u64,
    n: u64,
    bits: &[usize],
) -> Result<(), TestCaseError> {
    let root = reference.mth(0, n);
    let leaf = reference.leaf(m);
    let want = reference.path(m, 0, n);
    let from_reference = inclusion_proof(reference, m, n).unwrap();
    let from_store = inclusion_proof(store, m, n).unwrap();
    prop_assert_eq!(
        &from_reference,
        &want,
        "PATH({}, D[{}]) via the reference",
        m,
        n
    );
    prop_assert_eq!(&from_store, &want, "PATH({}, D[{}]) via the store", m, n);
    prop_assert_eq!(inclusion_proof_nodes(m, n).unwrap().proof_len(), want.len());
    prop_assert_eq!(root_from_inclusion_proof(m, n, &leaf, &want), Ok(root));
    prop_assert_eq!(verify_inclusion(m, n, &leaf, &want, &root), Ok(()));

    let bit = |i: usize| bits[i % bits.len()];
    // Any flipped bit in a proof hash, the leaf or the root.
    for i in 0..want.len() {
        let mut bad = want.clone();
        bad[i] = flip(&bad[i], bit(i));
        let r = verify_inclusion(m, n, &leaf, &bad, &root);
        prop_assert!(
            matches!(r, Err(Error::RootMismatch { .. })),
            "proof[{}] flipped: {:?}",
            i,
            r
        );
    }
    let r = verify_inclusion(m, n, &flip(&leaf, bit(100)), &want, &root);
    prop_assert!(
        matches!(r, Err(Error::RootMismatch { .. })),
        "leaf flipped: {:?}",
        r
    );
    let r = verify_inclusion(m, n, &leaf, &want, &flip(&root, bit(101)));
    prop_assert!(
        matches!(r, Err(Error::RootMismatch { .. })),
        "root flipped: {:?}",
        r
    );

    // One hash short, one hash long (at either end): malformed, not a mismatch.
    if let Some((_, short)) = want.split_last() {
        let r = verify_inclusion(m, n, &leaf, short, &root);
        prop_assert!(
            matches!(r, Err(Error::ProofTooShort { .. })),
            "short: {:?}",
            r
        );
    }
    let mut long = want.clone();
    long.push(root);
    let r = verify_inclusion(m, n, &leaf, &long, &root);
    prop_assert!(
        matches!(r, Err(Error::ProofTooLong { .. })),
        "long: {:?}",
        r
    );
    let mut long = vec![leaf];
    long.extend_from_slice(&want);
    let r = verify_inclusion(m, n, &leaf, &long, &root);
    prop_assert!(
        matches!(r, Err(Error::ProofTooLong { .. })),
        "long: {:?}",
        r
    );

    // Any other index in the tree.
    for other in [m.wrapping_sub(1), m + 1, m ^ 1, m ^ 2, n - 1, 0] {
        if other != m && other < n {
            let r = verify_inclusion(other, n, &leaf, &want, &root);
            prop_assert!(
                matches!(
                    r,
                    Err(Error::RootMismatch { .. }
                        | Error::ProofTooShort { .. }
                        | Error::ProofTooLong { .. })
                ),
                "index {} instead of {}: {:?}",
                other,
                m,
                r
            );
        }
    }
    // Index outside the tree.
    for other in [n, n + 1, u64::MAX] {
        let r = verify_inclusion(other, n, &leaf, &want, &root);
        prop_assert_eq!(
            r,
            Err(Error::IndexOutOfRange {
                index: other,
                tree_size: n
            })
        );
    }
    // Any other size: rejected unless the verifier's hashing is identical, in
    // which case it must verify (see `inclusion_shape`).
    for other in [n - 1, n + 1, 2 * n, n / 2, n + 2, u64::MAX] {
        if other == n || other <= m {
            continue;
        }
        let r = verify_inclusion(m, other, &leaf, &want, &root);
        if inclusion_shape(m, other) == inclusion_shape(m, n) {
            prop_assert_eq!(
                r,
                Ok(()),
                "size {} instead of {} with the same shape",
                other,
                n
            );
        } else {
            prop_assert!(r.is_err(), "size {} instead of {} accepted", other, n);
        }
    }
    Ok(())
}

/// Checks `PROOF(m, D[n])` for the reference's tree of `n` leaves.
fn check_consistency(
    reference: &Reference,
    store: &MemStore,
    m: u64,
    n: u64,
    bits: &[usize],
) -> Result<(), TestCaseError> {
    let root1 = reference.mth(0, m);
    let root2 = reference.mth(0, n);
    let want = reference.proof(m, n);
    prop_assert_eq!(
        &consistency_proof(reference, m, n).unwrap(),
        &want,
        "PROOF({}, D[{}]) via the reference",
        m,
        n
    );
    prop_assert_eq!(
        &consistency_proof(store, m, n).unwrap(),
        &want,
        "PROOF({}, D[{}]) via the store",
        m,
        n
    );
    prop_assert_eq!(
        consistency_proof_nodes(m, n).unwrap().proof_len(),
        want.len()
    );
    prop_assert_eq!(verify_consistency(m, n, &root1, &root2, &want), Ok(()));

    let bit = |i: usize| bits[i % bits.len()];
    let mismatch = |r: &Result<(), Error>| {
        matches!(
            r,
            Err(Error::RootMismatch { .. } | Error::FirstRootMismatch { .. })
        )
    };
    for i in 0..want.len() {
        let mut bad = want.clone();
        bad[i] = flip(&bad[i], bit(i));
        let r = verify_consistency(m, n, &root1, &root2, &bad);
        prop_assert!(mismatch(&r), "proof[{}] flipped: {:?}", i, r);
    }
    let r = verify_consistency(m, n, &flip(&root1, bit(100)), &root2, &want);
    if m > 0 && (m == n || m.is_power_of_two()) {
        // Two equal sizes only say the roots are equal, either may be wrong.
        // When m is a power of two the first root is the seed of both
        // recomputations (RFC 9162 §2.1.4.2 step 2), so a wrong one surfaces
        // as a mismatch of the second root.
        prop_assert!(mismatch(&r), "first root flipped: {:?}", r);
    } else {
        prop_assert!(
            matches!(r, Err(Error::FirstRootMismatch { .. })),
            "first root flipped: {:?}",
            r
        );
    }
    let r = verify_consistency(m, n, &root1, &flip(&root2, bit(101)), &want);
    if m == 0 && n > 0 {
        // The empty tree is a prefix of every tree: nothing binds the second
        // root, so this is the one mutation that must still verify.
        prop_assert_eq!(r, Ok(()));
    } else {
        prop_assert!(mismatch(&r), "second root flipped: {:?}", r);
    }
    let r = verify_consistency(m, n, &root2, &root1, &want);
    if m == n {
        prop_assert_eq!(r, Ok(()), "swapping equal roots changes nothing");
    } else {
        prop_assert!(mismatch(&r), "roots swapped: {:?}", r);
    }

    if let Some((_, short)) = want.split_last() {
        let r = verify_consistency(m, n, &root1, &root2, short);
        prop_assert!(
            matches!(r, Err(Error::ProofTooShort { .. })),
            "short: {:?}",
            r
        );
    }
    let mut long = want.clone();
    long.push(root2);
    let r = verify_consistency(m, n, &root1, &root2, &long);
    prop_assert!(
        matches!(r, Err(Error::ProofTooLong { .. })),
        "long: {:?}",
        r
    );
    let mut long = vec![root1];
    long.extend_from_slice(&want);
    let r = verify_consistency(m, n, &root1, &root2, &long);
    prop_assert!(
        matches!(r, Err(Error::ProofTooLong { .. })),
        "long: {:?}",
        r
    );

    // Another first size, with the same roots and proof.
    for other in [m.wrapping_sub(1), m + 1, m ^ 1, 2 * m, m / 2] {
        if other == m || other > n {
            continue;
        }
        let r = verify_consistency(other, n, &root1, &root2, &want);
        prop_assert!(r.is_err(), "first size {} instead of {} accepted", other, m);
    }
    // Another second size: rejected unless the verifier's hashing is the same.
    for other in [n - 1, n + 1, 2 * n, n / 2, n + 2, u64::MAX] {
        if other == n || other < m {
            continue;
        }
        let r = verify_consistency(m, other, &root1, &root2, &want);
        // With m = 0 nothing binds the second tree, its size included.
        let same = (m == 0 && other > 0)
            || (0 < m
                && m < n
                && m < other
                && consistency_shape(m, other) == consistency_shape(m, n));
        if same {
            prop_assert_eq!(
                r,
                Ok(()),
                "size {} instead of {} with the same shape",
                other,
                n
            );
        } else {
            prop_assert!(
                r.is_err(),
                "second size {} instead of {} accepted",
                other,
                n
            );
        }
    }
    // Sizes in the wrong order.
    if m < n {
        let r = verify_consistency(n, m, &root2, &root1, &want);
        prop_assert_eq!(
            r,
            Err(Error::SizeOrder {
                first: n,
                second: m
            })
        );
    }
    Ok(())
}

/// Checks the compact range against the reference: every node `append`
/// reports is the MTH of its leaves, and the range restored from stored nodes
/// has the right root and keeps growing the same tree.
fn check_compact_range(leaves: &[Hash], reference: &Reference) -> Result<(), TestCaseError> {
    let mut range = CompactRange::new();
    let mut store: HashMap<NodeId, Hash> = HashMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let mut reported = Vec::new();
        range.append(*leaf, |id, h| reported.push((id, h)));
        prop_assert_eq!(
            reported[0],
            (NodeId::leaf(i as u64), *leaf),
            "the leaf comes first"
        );
        prop_assert_eq!(reported.len() as u32, (i as u64).trailing_ones() + 1);
        for (id, h) in reported {
            prop_assert_eq!(
                id.last_leaf(),
                i as u64,
                "{:?} is completed by leaf {}",
                id,
                i
            );
            prop_assert_eq!(
                h,
                reference.mth(id.first_leaf(), id.last_leaf() + 1),
                "{:?}",
                id
            );
            store.insert(id, h);
        }
        let size = i as u64 + 1;
        prop_assert_eq!(range.size(), size);
        prop_assert_eq!(range.root(), reference.mth(0, size));
        let ids = CompactRange::node_ids(size);
        let hashes: Vec<Hash> = ids.iter().map(|id| store[id]).collect();
        prop_assert_eq!(range.hashes(), &hashes[..]);
        let restored = CompactRange::from_parts(size, hashes.clone()).unwrap();
        prop_assert_eq!(restored.root(), range.root());
        prop_assert_eq!(&restored, &range);
        // One hash too few or too many is refused.
        prop_assert!(CompactRange::from_parts(size, hashes[1..].to_vec()).is_err());
        let mut more = hashes;
        more.push(*leaf);
        prop_assert!(CompactRange::from_parts(size, more).is_err());
    }
    prop_assert_eq!(
        merkle_tree_hash(leaves),
        reference.mth(0, leaves.len() as u64)
    );
    Ok(())
}

/// Sizes up to 300, biased towards powers of two and their neighbours, where
/// the tree's shape changes.
fn tree_size() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 1..=300u64,
        1 => (0..=8u32).prop_flat_map(|k| (1u64 << k).saturating_sub(1)..=(1u64 << k) + 1).prop_filter("n >= 1", |n| *n >= 1),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn inclusion_proofs_match_reference_and_reject_mutations(
        (n, m) in tree_size().prop_flat_map(|n| (Just(n), prop_oneof![0..n, Just(n - 1), Just(0)])),
        seed in any::<u64>(),
        bits in prop::collection::vec(0..256usize, 1..16),
    ) {
        let leaves = leaves(n, seed);
        let reference = Reference::from_leaf_hashes(leaves.clone());
        let store = MemStore::with_leaves(&leaves);
        check_inclusion(&reference, &store, m, n, &bits)?;
    }

    #[test]
    fn consistency_proofs_match_reference_and_reject_mutations(
        (n, m) in tree_size().prop_flat_map(|n| (Just(n), prop_oneof![0..=n, Just(n), Just(0), 1..=n])),
        seed in any::<u64>(),
        bits in prop::collection::vec(0..256usize, 1..16),
    ) {
        let leaves = leaves(n, seed);
        let reference = Reference::from_leaf_hashes(leaves.clone());
        let store = MemStore::with_leaves(&leaves);
        check_consistency(&reference, &store, m, n, &bits)?;
    }

    #[test]
    fn compact_range_nodes_are_subtree_roots(n in 0..=300u64, seed in any::<u64>()) {
        let leaves = leaves(n, seed);
        let reference = Reference::from_leaf_hashes(leaves.clone());
        check_compact_range(&leaves, &reference)?;
    }

    /// The left border of a tree, restored from its last leaf's inclusion
    /// proof, is the compact range built leaf by leaf; a proof with one bit
    /// flipped gives a range with another root.
    #[test]
    fn compact_range_from_the_last_leaf_proof(
        n in tree_size(),
        seed in any::<u64>(),
        bit in 0..256usize,
    ) {
        let leaves = leaves(n, seed);
        let store = MemStore::with_leaves(&leaves);
        let last = leaves[n as usize - 1];
        let proof = inclusion_proof(&store, n - 1, n).unwrap();
        let range = CompactRange::from_last_leaf_proof(n, &last, &proof).unwrap();
        prop_assert_eq!(&range, &store.range);
        prop_assert_eq!(range.root(), Reference::from_leaf_hashes(leaves.clone()).mth(0, n));
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(&bad[i], bit);
            let forged = CompactRange::from_last_leaf_proof(n, &last, &bad).unwrap();
            prop_assert_ne!(forged.root(), range.root());
        }
    }
}

/// Every inclusion and consistency proof of every tree up to 40 leaves, so
/// the small shapes are covered exhaustively and not by chance.
#[test]
fn exhaustive_small_trees() {
    let bits = [0, 77, 255, 130];
    for n in 1..=40u64 {
        let leaves = leaves(n, n);
        let reference = Reference::from_leaf_hashes(leaves.clone());
        let store = MemStore::with_leaves(&leaves);
        for m in 0..n {
            check_inclusion(&reference, &store, m, n, &bits).unwrap();
        }
        for m in 0..=n {
            check_consistency(&reference, &store, m, n, &bits).unwrap();
        }
    }
    check_compact_range(&leaves(70, 1), &Reference::from_leaf_hashes(leaves(70, 1))).unwrap();
}

#[test]
fn edge_cases() {
    let h = Hash([0xab; 32]);
    let empty = empty_root();

    // Size 0: no leaf is in it; its only consistency proof is with itself.
    assert_eq!(
        inclusion_proof_nodes(0, 0),
        Err(Error::IndexOutOfRange {
            index: 0,
            tree_size: 0
        })
    );
    assert_eq!(
        verify_inclusion(0, 0, &h, &[], &empty),
        Err(Error::IndexOutOfRange {
            index: 0,
            tree_size: 0
        })
    );
    assert_eq!(
        root_from_inclusion_proof(0, 0, &h, &[]),
        Err(Error::IndexOutOfRange {
            index: 0,
            tree_size: 0
        })
    );
    assert_eq!(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
    assert!(matches!(
        verify_consistency(0, 0, &empty, &h, &[]),
        Err(Error::RootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(0, 0, &h, &h, &[]),
        Err(Error::FirstRootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(0, 0, &empty, &empty, &[h]),
        Err(Error::ProofTooLong {
            expected: 0,
            got: 1
        })
    ));

    // Size 1: the leaf is the root and the proof is empty.
    assert_eq!(verify_inclusion(0, 1, &h, &[], &h), Ok(()));
    assert!(matches!(
        verify_inclusion(0, 1, &h, &[h], &h),
        Err(Error::ProofTooLong {
            expected: 0,
            got: 1
        })
    ));
    assert!(matches!(
        verify_inclusion(0, 1, &h, &[], &empty),
        Err(Error::RootMismatch { .. })
    ));
    assert_eq!(
        verify_inclusion(1, 1, &h, &[], &h),
        Err(Error::IndexOutOfRange {
            index: 1,
            tree_size: 1
        })
    );

    // m = 0: an empty proof, whatever the second tree; the first root must be MTH({}).
    assert_eq!(verify_consistency(0, 1, &empty, &h, &[]), Ok(()));
    assert_eq!(verify_consistency(0, u64::MAX, &empty, &h, &[]), Ok(()));
    assert!(matches!(
        verify_consistency(0, 5, &h, &h, &[]),
        Err(Error::FirstRootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(0, 5, &empty, &h, &[h]),
        Err(Error::ProofTooLong {
            expected: 0,
            got: 1
        })
    ));
    assert!(consistency_proof_nodes(0, 5).unwrap().ids().is_empty());

    // m = n: an empty proof and equal roots.
    assert_eq!(verify_consistency(5, 5, &h, &h, &[]), Ok(()));
    assert!(matches!(
        verify_consistency(5, 5, &h, &empty, &[]),
        Err(Error::RootMismatch { .. })
    ));
    assert!(matches!(
        verify_consistency(5, 5, &h, &h, &[h]),
        Err(Error::ProofTooLong {
            expected: 0,
            got: 1
        })
    ));

    // m > n, index >= size.
    assert_eq!(
        verify_consistency(6, 5, &h, &h, &[]),
        Err(Error::SizeOrder {
            first: 6,
            second: 5
        })
    );
    assert_eq!(
        consistency_proof_nodes(6, 5),
        Err(Error::SizeOrder {
            first: 6,
            second: 5
        })
    );
    assert_eq!(
        verify_consistency(u64::MAX, 0, &h, &h, &[]),
        Err(Error::SizeOrder {
            first: u64::MAX,
            second: 0
        })
    );
    assert_eq!(
        inclusion_proof_nodes(5, 5),
        Err(Error::IndexOutOfRange {
            index: 5,
            tree_size: 5
        })
    );

    // 0 < m < n with an empty proof is too short, never a mismatch.
    assert!(matches!(
        verify_consistency(1, 2, &h, &h, &[]),
        Err(Error::ProofTooShort {
            expected: 1,
            got: 0
        })
    ));
    assert!(matches!(
        verify_consistency(3, 7, &h, &h, &[]),
        Err(Error::ProofTooShort { .. })
    ));

    // A node source that answers with the wrong number of hashes is caught.
    struct Short;
    impl NodeSource for Short {
        type Error = ();
        fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ()> {
            Ok(vec![Hash::default(); ids.len().saturating_sub(1)])
        }
    }
    assert!(matches!(
        inclusion_proof(&Short, 0, 4),
        Err(ProofError::Request(Error::NodeCount {
            expected: 2,
            got: 1
        }))
    ));
    assert_eq!(
        inclusion_proof(&Short, 4, 4),
        Err(ProofError::Request(Error::IndexOutOfRange {
            index: 4,
            tree_size: 4
        }))
    );
    // A store missing a node reports which one.
    let store = MemStore::with_leaves(&leaves(3, 0));
    assert_eq!(
        inclusion_proof(&store, 0, 4),
        Err(ProofError::Source(NodeId::new(1, 1)))
    );
}
