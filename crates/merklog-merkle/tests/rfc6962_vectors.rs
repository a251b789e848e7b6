//! The RFC 6962 reference tree used across certificate-transparency
//! implementations, checked against a naive recursive reference written
//! straight from RFC 9162 §2.1.

mod reference;

use merklog_merkle::*;
use reference::Reference;

const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

fn leaves() -> Vec<Vec<u8>> {
    LEAVES.iter().map(|h| hex::decode(h).unwrap()).collect()
}

#[test]
fn known_roots() {
    let data = leaves();
    let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
    assert_eq!(
        merkle_tree_hash(&hashes).to_string(),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    assert_eq!(
        merkle_tree_hash(&[]).to_string(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let reference = Reference::new(&data);
    let mut range = CompactRange::new();
    for (n, h) in hashes.iter().enumerate() {
        range.append(*h, |_, _| {});
        assert_eq!(
            range.root(),
            reference.mth(0, n as u64 + 1),
            "prefix {}",
            n + 1
        );
    }
}

#[test]
fn every_proof_matches_the_reference() {
    let data = leaves();
    let reference = Reference::new(&data);
    for n in 1..=8u64 {
        let root = reference.mth(0, n);
        for m in 0..n {
            let proof = inclusion_proof(&reference, m, n).unwrap();
            assert_eq!(proof, reference.path(m, 0, n), "PATH({m}, D[{n}])");
            verify_inclusion(m, n, &leaf_hash(&data[m as usize]), &proof, &root).unwrap();
        }
        for m in 0..=n {
            let proof = consistency_proof(&reference, m, n).unwrap();
            assert_eq!(proof, reference.proof(m, n), "PROOF({m}, D[{n}])");
            verify_consistency(m, n, &reference.mth(0, m), &root, &proof).unwrap();
        }
    }
}
