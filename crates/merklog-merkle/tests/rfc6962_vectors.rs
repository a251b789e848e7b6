//! The RFC 6962 reference tree used across certificate-transparency
//! implementations, checked against a naive recursive reference written
//! straight from RFC 9162 §2.1.
//!
//! The leaf inputs, node hashes, prefix roots and compact ranges are those of
//! transparency-dev/merkle `testonly/constants.go` (commit
//! 582a6ad190b6848f1d26f8bf08ddef29955d9db1), which carries them over from
//! the original certificate-transparency C++ tests.

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

/// Every complete subtree of the 8-leaf tree, by level then index
/// (`NodeHashes()` upstream).
const NODE_HASHES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// `MTH(D[n])` for n = 0..=8 (`RootHashes()` upstream).
const PREFIX_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn node(level: u8, index: u64) -> Hash {
    NODE_HASHES[level as usize][index as usize].parse().unwrap()
}

#[test]
fn known_prefix_roots() {
    let hashes: Vec<Hash> = leaves().iter().map(|d| leaf_hash(d)).collect();
    let reference = Reference::from_leaf_hashes(hashes.clone());
    let mut range = CompactRange::new();
    assert_eq!(range.root().to_string(), PREFIX_ROOTS[0]);
    for n in 1..=8usize {
        range.append(hashes[n - 1], |_, _| {});
        assert_eq!(range.root().to_string(), PREFIX_ROOTS[n], "MTH(D[{n}])");
        assert_eq!(merkle_tree_hash(&hashes[..n]).to_string(), PREFIX_ROOTS[n]);
        assert_eq!(reference.mth(0, n as u64).to_string(), PREFIX_ROOTS[n]);
    }
}

#[test]
fn known_nodes_and_compact_ranges() {
    let mut range = CompactRange::new();
    let mut reported = 0;
    for data in leaves() {
        range.append(leaf_hash(&data), |id, h| {
            assert_eq!(h, node(id.level, id.index), "{id:?}");
            reported += 1;
        });
        // `CompactTrees()` upstream: the compact range is the stored nodes
        // that `CompactRange::node_ids` names, largest first.
        let ids = CompactRange::node_ids(range.size());
        let want: Vec<Hash> = ids.iter().map(|id| node(id.level, id.index)).collect();
        assert_eq!(range.hashes(), &want[..], "size {}", range.size());
        let restored = CompactRange::from_parts(range.size(), want).unwrap();
        assert_eq!(restored.root(), range.root());
    }
    assert_eq!(
        reported,
        8 + 4 + 2 + 1,
        "every complete subtree is reported once"
    );
}

/// Proofs written out as node hashes, from the RFC's definitions by hand:
/// PATH(0, D[8]), PATH(5, D[8]), PATH(6, D[7]), PATH(2, D[3]); PROOF(1, D[8]),
/// PROOF(3, D[7]), PROOF(4, D[7]), PROOF(6, D[8]), PROOF(2, D[5]).
#[test]
fn known_proofs() {
    let data = leaves();
    let cases = [
        (0, 8, vec![node(0, 1), node(1, 1), node(2, 1)]),
        (5, 8, vec![node(0, 4), node(1, 3), node(2, 0)]),
        (6, 7, vec![node(1, 2), node(2, 0)]),
        (2, 3, vec![node(1, 0)]),
    ];
    for (m, n, want) in cases {
        let reference = Reference::new(&data);
        assert_eq!(
            inclusion_proof(&reference, m, n).unwrap(),
            want,
            "PATH({m}, D[{n}])"
        );
        let root: Hash = PREFIX_ROOTS[n as usize].parse().unwrap();
        verify_inclusion(m, n, &leaf_hash(&data[m as usize]), &want, &root).unwrap();
    }
    // MTH(D[4:7]) = node_hash(MTH(D[4:6]), leaf 6): the ragged right edge.
    let d4_7 = node_hash(&node(1, 2), &node(0, 6));
    let cases = [
        (1, 8, vec![node(0, 1), node(1, 1), node(2, 1)]),
        (3, 7, vec![node(0, 2), node(0, 3), node(1, 0), d4_7]),
        (4, 7, vec![d4_7]),
        (6, 8, vec![node(1, 2), node(1, 3), node(2, 0)]),
        (2, 5, vec![node(1, 1), node(0, 4)]),
    ];
    for (m, n, want) in cases {
        let reference = Reference::new(&data);
        assert_eq!(
            consistency_proof(&reference, m, n).unwrap(),
            want,
            "PROOF({m}, D[{n}])"
        );
        let first: Hash = PREFIX_ROOTS[m as usize].parse().unwrap();
        let second: Hash = PREFIX_ROOTS[n as usize].parse().unwrap();
        verify_consistency(m, n, &first, &second, &want).unwrap();
    }
}
