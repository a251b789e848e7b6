//! The Merkle tree math of RFC 9162 §2.1 (identical to RFC 6962 §2.1), shared
//! by the merklog server and every client that checks it.
//!
//! This crate is pure: no I/O, no async, no database. It
//! - hashes leaves and interior nodes ([`leaf_hash`], [`node_hash`]) and
//!   computes `MTH(D[n])` ([`merkle_tree_hash`]);
//! - grows a tree one leaf at a time in O(log n) memory ([`CompactRange`]) and
//!   names every complete-subtree node that a store must persist;
//! - says which stored nodes an inclusion or consistency proof needs
//!   ([`inclusion_proof_nodes`], [`consistency_proof_nodes`]) and assembles the
//!   proof from them, so a store answers with O(log n) reads and never rehashes
//!   the tree;
//! - lays the tree out as C2SP tlog-tiles ([`tiles`]): tile coordinates,
//!   partial widths, paths, nodes recomputed from tiles, entry bundles;
//! - verifies proofs ([`verify_inclusion`], [`verify_consistency`]) exactly as
//!   RFC 9162 §2.1.3.2 and §2.1.4.2 describe.
//!
//! It does not fetch nodes, sign tree heads or know about entries' bytes
//! beyond hashing them.

mod compact;
mod error;
mod hash;
mod node;
mod proof;
pub mod tiles;
mod verify;

pub use compact::CompactRange;
pub use error::Error;
pub use hash::{empty_root, leaf_hash, merkle_tree_hash, node_hash, Hash};
pub use node::NodeId;
pub use proof::{
    consistency_proof, consistency_proof_nodes, fold_right_edge, inclusion_proof,
    inclusion_proof_nodes, NodeSource, ProofError, ProofNodes,
};
pub use verify::{root_from_inclusion_proof, verify_consistency, verify_inclusion};
