//! A naive reference written straight from the definitions of RFC 9162 §2.1:
//! `MTH`, `PATH` and `PROOF`/`SUBPROOF` by recursion over the leaves. It is
//! slow on purpose and serves only to cross-check the real implementation.

// Each test binary includes this module and uses a different part of it, so
// `dead_code` fires in some binaries and not others; `expect` would then fail
// as unfulfilled in the binaries that use everything.
#![allow(
    dead_code,
    reason = "shared by several test binaries, each using a subset"
)]

use merklog_merkle::{empty_root, leaf_hash, node_hash, Hash, NodeId, NodeSource};

pub struct Reference {
    leaves: Vec<Hash>,
}

fn k_for(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

impl Reference {
    pub fn new<D: AsRef<[u8]>>(data: &[D]) -> Self {
        Reference {
            leaves: data.iter().map(|d| leaf_hash(d.as_ref())).collect(),
        }
    }

    pub fn from_leaf_hashes(leaves: Vec<Hash>) -> Self {
        Reference { leaves }
    }

    pub fn leaf(&self, i: u64) -> Hash {
        self.leaves[i as usize]
    }

    /// `MTH(D[begin:end])`.
    pub fn mth(&self, begin: u64, end: u64) -> Hash {
        let n = end - begin;
        match n {
            0 => empty_root(),
            1 => self.leaves[begin as usize],
            _ => {
                let k = k_for(n);
                node_hash(&self.mth(begin, begin + k), &self.mth(begin + k, end))
            }
        }
    }

    /// `PATH(m, D[begin:end])`, with `m` relative to `begin`.
    pub fn path(&self, m: u64, begin: u64, end: u64) -> Vec<Hash> {
        let n = end - begin;
        if n <= 1 {
            return vec![];
        }
        let k = k_for(n);
        if m < k {
            let mut p = self.path(m, begin, begin + k);
            p.push(self.mth(begin + k, end));
            p
        } else {
            let mut p = self.path(m - k, begin + k, end);
            p.push(self.mth(begin, begin + k));
            p
        }
    }

    /// `PROOF(m, D[n])`; empty for `m = 0`.
    pub fn proof(&self, m: u64, n: u64) -> Vec<Hash> {
        if m == 0 {
            return vec![];
        }
        self.subproof(m, 0, n, true)
    }

    fn subproof(&self, m: u64, begin: u64, end: u64, b: bool) -> Vec<Hash> {
        let n = end - begin;
        if m == n {
            return if b {
                vec![]
            } else {
                vec![self.mth(begin, end)]
            };
        }
        let k = k_for(n);
        if m <= k {
            let mut p = self.subproof(m, begin, begin + k, b);
            p.push(self.mth(begin + k, end));
            p
        } else {
            let mut p = self.subproof(m - k, begin + k, end, false);
            p.push(self.mth(begin, begin + k));
            p
        }
    }
}

/// The reference answers node reads by recomputing each complete subtree.
impl NodeSource for Reference {
    type Error = String;

    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, String> {
        ids.iter()
            .map(|id| {
                let begin = id.first_leaf();
                let end = id.last_leaf() + 1;
                if end as usize > self.leaves.len() {
                    Err(format!("node {id:?} is beyond the tree"))
                } else {
                    Ok(self.mth(begin, end))
                }
            })
            .collect()
    }
}
