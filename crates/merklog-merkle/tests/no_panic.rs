//! The verification functions take sizes, indices and proofs straight from
//! the wire: whatever they are given, they return `Ok` or `Err` and never
//! panic (no overflow, no out-of-range shift, no index past the proof).

use merklog_merkle::*;
use proptest::prelude::*;

/// Any `u64`, with extra weight on the edges where arithmetic overflows.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => any::<u64>(),
        1 => (0..=64u32).prop_map(|k| 1u64.checked_shl(k).unwrap_or(0)),
        1 => (0..=64u32, -2i64..=2).prop_map(|(k, d)| 1u64.checked_shl(k).unwrap_or(0).wrapping_add_signed(d)),
        1 => (0..4u64).prop_map(|d| u64::MAX - d),
        1 => 0..300u64,
    ]
}

fn hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

/// How long a proof to try: anything up to 70 hashes, or exactly (or nearly
/// exactly) the expected length, so that the hashing loops run on huge sizes
/// too and not only the length check.
#[derive(Debug, Clone, Copy)]
enum Len {
    Any(usize),
    Expected(i8),
}

fn len() -> impl Strategy<Value = Len> {
    prop_oneof![
        (0..70usize).prop_map(Len::Any),
        (-1i8..=1).prop_map(Len::Expected)
    ]
}

fn pick(pool: &[Hash], len: Len, expected: Option<usize>) -> &[Hash] {
    let n = match len {
        Len::Any(n) => n,
        Len::Expected(d) => expected.unwrap_or(0).saturating_add_signed(d.into()),
    };
    &pool[..n.min(pool.len())]
}

/// Runs every verification entry point on one input; only a panic fails.
fn exercise(m: u64, n: u64, leaf: &Hash, root1: &Hash, root2: &Hash, pool: &[Hash], len: Len) {
    let incl = inclusion_proof_nodes(m, n);
    if let Ok(nodes) = &incl {
        assert!(
            nodes.proof_len() <= 64,
            "an inclusion proof has at most 64 hashes"
        );
        let _ = nodes.assemble(&pool[..nodes.ids().len().min(pool.len())]);
    }
    let proof = pick(pool, len, incl.as_ref().ok().map(ProofNodes::proof_len));
    let _ = root_from_inclusion_proof(m, n, leaf, proof);
    let _ = verify_inclusion(m, n, leaf, proof, root1);

    let cons = consistency_proof_nodes(m, n);
    if let Ok(nodes) = &cons {
        // One hash per level plus the seed: PROOF(3, D[2^64 - 1]) has 65.
        assert!(
            nodes.proof_len() <= 65,
            "a consistency proof has at most 65 hashes"
        );
        let _ = nodes.assemble(&pool[..nodes.ids().len().min(pool.len())]);
    }
    let proof = pick(pool, len, cons.as_ref().ok().map(ProofNodes::proof_len));
    let _ = verify_consistency(m, n, root1, root2, proof);
    // Seeding the first root so that the proof's first half agrees makes the
    // verifier run to the end more often; any panic is still a failure.
    let _ = verify_consistency(m, n, root1, root1, proof);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn verification_never_panics(
        m in size(),
        n in size(),
        leaf in hash(),
        root1 in hash(),
        root2 in hash(),
        pool in prop::collection::vec(hash(), 70),
        len in len(),
    ) {
        exercise(m, n, &leaf, &root1, &root2, &pool, len);
        exercise(n, m, &leaf, &root1, &root2, &pool, len);
    }
}

#[test]
fn huge_sizes() {
    let pool: Vec<Hash> = (0..70u8).map(|i| Hash([i; 32])).collect();
    let edges = [
        0,
        1,
        2,
        3,
        (1 << 32) - 1,
        1 << 32,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX - 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    for &m in &edges {
        for &n in &edges {
            for len in [
                Len::Any(0),
                Len::Any(1),
                Len::Any(69),
                Len::Expected(-1),
                Len::Expected(0),
                Len::Expected(1),
            ] {
                exercise(m, n, &pool[0], &pool[1], &pool[2], &pool, len);
            }
        }
    }
}

/// Proofs in the largest trees are built and verified, not only rejected.
#[test]
fn huge_trees_round_trip() {
    let leaf = Hash([1; 32]);
    for (m, n) in [
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, u64::MAX),
        ((1 << 63) - 1, 1 << 63),
        (12_345_678_901, u64::MAX - 7),
    ] {
        let len = inclusion_proof_nodes(m, n).unwrap().proof_len();
        let proof: Vec<Hash> = (0..len).map(|i| Hash([i as u8 + 2; 32])).collect();
        let root = root_from_inclusion_proof(m, n, &leaf, &proof).unwrap();
        assert_eq!(
            verify_inclusion(m, n, &leaf, &proof, &root),
            Ok(()),
            "({m}, {n})"
        );
        assert!(verify_inclusion(m, n, &leaf, &proof[1..], &root).is_err());
    }
    for (m, n) in [
        (1, u64::MAX),
        (3, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, u64::MAX),
        (3, 1 << 63),
    ] {
        let len = consistency_proof_nodes(m, n).unwrap().proof_len();
        assert!(len > 0 && len <= 65, "PROOF({m}, D[{n}]) has {len} hashes");
        if (m, n) == (3, u64::MAX) {
            // Longer than any inclusion proof: a hash for every level plus the seed.
            assert_eq!(len, 65);
        }
        let proof: Vec<Hash> = (0..len).map(|i| Hash([i as u8 + 2; 32])).collect();
        let r = verify_consistency(m, n, &leaf, &leaf, &proof);
        assert!(
            matches!(
                r,
                Err(Error::FirstRootMismatch { .. } | Error::RootMismatch { .. })
            ),
            "{r:?}"
        );
    }
}
