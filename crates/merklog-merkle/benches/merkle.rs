//! Benchmarks of the Merkle core; figures and how they were taken are in
//! `docs/BENCHMARKS.md`.
//!
//! - `append`: leaf appends into a [`CompactRange`] with leaf hashes
//!   precomputed (what the sequencer does after hashing a batch), with the
//!   leaf hashing included, and the raw SHA-256 cost of the two hashes a leaf
//!   costs on average (one 33-byte leaf hash, one 65-byte node hash) to compare
//!   against.
//! - `proof_generation`: inclusion and consistency proofs from an in-memory
//!   store of every complete-subtree node of a 10,000,000-leaf tree.
//! - `verification`: inclusion and consistency proofs in a tree of 2^32
//!   leaves, built from a sparse tree in which almost every leaf is the same,
//!   so that its root and proofs are real without hashing 2^32 leaves.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use merklog_merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, verify_consistency, verify_inclusion,
    CompactRange, Hash, NodeId, NodeSource,
};
use sha2::{Digest, Sha256};

/// A deterministic generator (SplitMix64), so every run measures the same
/// indices and leaves.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a value in `lo..hi`.
    fn below(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}

const APPEND_BATCH: usize = 1 << 16;

fn append(c: &mut Criterion) {
    let mut rng = SplitMix(1);
    let data: Vec<[u8; 32]> = (0..APPEND_BATCH).map(|_| rng.bytes32()).collect();
    let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();

    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(APPEND_BATCH as u64));

    // Each append reports the leaf and the parents it completes; a store
    // would persist them, here they only go through `black_box`.
    group.bench_function("compact_range_precomputed_leaf_hashes", |b| {
        b.iter(|| {
            let mut range = CompactRange::new();
            for leaf in &leaves {
                range.append(*leaf, |id, h| {
                    black_box((id, h));
                });
            }
            black_box(range.root())
        })
    });

    group.bench_function("compact_range_including_leaf_hash", |b| {
        b.iter(|| {
            let mut range = CompactRange::new();
            for d in &data {
                range.append(leaf_hash(d), |id, h| {
                    black_box((id, h));
                });
            }
            black_box(range.root())
        })
    });

    // The floor: per leaf, SHA-256 of 0x00 || 32 bytes and of 0x01 || 64
    // bytes, with no tree bookkeeping at all.
    group.bench_function("raw_sha256_two_hashes_per_leaf", |b| {
        b.iter(|| {
            let mut acc = [0u8; 32];
            let mut node = [0u8; 65];
            node[0] = 0x01;
            for d in &data {
                let mut leaf = [0u8; 33];
                leaf[1..].copy_from_slice(d);
                let l: [u8; 32] = Sha256::digest(leaf).into();
                node[1..33].copy_from_slice(&acc);
                node[33..].copy_from_slice(&l);
                acc = Sha256::digest(node).into();
            }
            black_box(acc)
        })
    });
    group.finish();
}

/// Every complete-subtree node of a tree, one vector per level: exactly what
/// [`CompactRange::append`] reports, stored as a backend would.
struct LevelStore {
    levels: Vec<Vec<Hash>>,
}

impl LevelStore {
    fn build(size: u64) -> Self {
        let started = Instant::now();
        let mut levels: Vec<Vec<Hash>> = (0..64)
            .map_while(|l| {
                let count = size >> l;
                (count > 0).then(|| Vec::with_capacity(count as usize))
            })
            .collect();
        let mut range = CompactRange::new();
        for i in 0..size {
            range.append(leaf_hash(&i.to_le_bytes()), |id, h| {
                let level = &mut levels[id.level as usize];
                debug_assert_eq!(level.len() as u64, id.index);
                level.push(h);
            });
        }
        let nodes: usize = levels.iter().map(Vec::len).sum();
        eprintln!(
            "built a {size}-leaf store: {nodes} nodes, {} MiB, in {:.1?}",
            (nodes * 32) >> 20,
            started.elapsed()
        );
        LevelStore { levels }
    }
}

impl NodeSource for LevelStore {
    type Error = NodeId;

    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, NodeId> {
        ids.iter()
            .map(|id| {
                self.levels
                    .get(id.level as usize)
                    .and_then(|l| l.get(id.index as usize))
                    .copied()
                    .ok_or(*id)
            })
            .collect()
    }
}

const STORE_SIZE: u64 = 10_000_000;

fn store() -> &'static LevelStore {
    static STORE: OnceLock<LevelStore> = OnceLock::new();
    STORE.get_or_init(|| LevelStore::build(STORE_SIZE))
}

fn proof_generation(c: &mut Criterion) {
    let mut group = c.benchmark_group("proof_generation_10M");
    group.throughput(Throughput::Elements(1));
    group.bench_function("inclusion", |b| {
        let store = store();
        let mut rng = SplitMix(2);
        b.iter_batched(
            || rng.below(0, STORE_SIZE),
            |m| inclusion_proof(store, m, STORE_SIZE).expect("stored"),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("consistency", |b| {
        let store = store();
        let mut rng = SplitMix(3);
        b.iter_batched(
            || rng.below(1, STORE_SIZE),
            |m| consistency_proof(store, m, STORE_SIZE).expect("stored"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A tree in which every leaf hash is `base` except a few chosen ones. A
/// complete subtree without a chosen leaf has a hash that depends only on its
/// height, so any `MTH(D[begin:end])` costs O((chosen + 1) * log n) hashes,
/// even for 2^32 leaves, and every hash it returns is the real one.
struct SparseTree {
    chosen: BTreeMap<u64, Hash>,
    /// `uniform[k]`: the root of `2^k` leaves that all hash to `base`.
    uniform: Vec<Hash>,
}

impl SparseTree {
    fn new(rng: &mut SplitMix, chosen: impl IntoIterator<Item = u64>) -> Self {
        let mut uniform = vec![Hash(rng.bytes32())];
        for k in 1..64 {
            let h = uniform[k - 1];
            uniform.push(node_hash(&h, &h));
        }
        let chosen = chosen
            .into_iter()
            .map(|i| (i, Hash(rng.bytes32())))
            .collect();
        SparseTree { chosen, uniform }
    }

    fn mth(&self, begin: u64, end: u64) -> Hash {
        let n = end - begin;
        if n == 1 {
            return self.chosen.get(&begin).copied().unwrap_or(self.uniform[0]);
        }
        if n.is_power_of_two() && self.chosen.range(begin..end).next().is_none() {
            return self.uniform[n.trailing_zeros() as usize];
        }
        let k = 1u64 << (63 - (n - 1).leading_zeros());
        node_hash(&self.mth(begin, begin + k), &self.mth(begin + k, end))
    }

    fn leaf(&self, i: u64) -> Hash {
        self.mth(i, i + 1)
    }
}

impl NodeSource for SparseTree {
    type Error = std::convert::Infallible;

    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        Ok(ids
            .iter()
            .map(|id| self.mth(id.first_leaf(), id.last_leaf() + 1))
            .collect())
    }
}

const BIG: u64 = 1 << 32;
const CASES: usize = 16;

fn verification(c: &mut Criterion) {
    let mut rng = SplitMix(4);
    let indices: Vec<u64> = (0..CASES).map(|_| rng.below(0, BIG)).collect();
    // First sizes for consistency: random, so mostly not powers of two and
    // the proof carries its seed hash too.
    let firsts: Vec<u64> = (0..CASES).map(|_| rng.below(1, BIG)).collect();
    let extra: Vec<u64> = (0..64).map(|_| rng.below(0, BIG)).collect();
    let tree = SparseTree::new(
        &mut rng,
        indices.iter().chain(&firsts).chain(&extra).copied(),
    );
    let root = tree.mth(0, BIG);

    let inclusion: Vec<(u64, Hash, Vec<Hash>)> = indices
        .iter()
        .map(|&m| {
            let proof = inclusion_proof(&tree, m, BIG).expect("infallible");
            let leaf = tree.leaf(m);
            verify_inclusion(m, BIG, &leaf, &proof, &root).expect("a real proof");
            (m, leaf, proof)
        })
        .collect();
    let consistency: Vec<(u64, Hash, Vec<Hash>)> = firsts
        .iter()
        .map(|&m| {
            let proof = consistency_proof(&tree, m, BIG).expect("infallible");
            let first = tree.mth(0, m);
            verify_consistency(m, BIG, &first, &root, &proof).expect("a real proof");
            (m, first, proof)
        })
        .collect();
    let lens = |v: &[(u64, Hash, Vec<Hash>)]| {
        let (min, max) = v.iter().fold((usize::MAX, 0), |(a, b), (_, _, p)| {
            (a.min(p.len()), b.max(p.len()))
        });
        format!("{min}..={max}")
    };
    eprintln!(
        "2^32-leaf tree: inclusion proofs of {} hashes, consistency proofs of {} hashes",
        lens(&inclusion),
        lens(&consistency)
    );

    let mut group = c.benchmark_group("verification_2^32");
    group.throughput(Throughput::Elements(1));
    group.bench_function("inclusion", |b| {
        let mut i = 0;
        b.iter(|| {
            let (m, leaf, proof) = &inclusion[i % CASES];
            i += 1;
            verify_inclusion(*m, BIG, leaf, proof, &root).expect("valid")
        })
    });
    group.bench_function("consistency", |b| {
        let mut i = 0;
        b.iter(|| {
            let (m, first, proof) = &consistency[i % CASES];
            i += 1;
            verify_consistency(*m, BIG, first, &root, proof).expect("valid")
        })
    });
    group.finish();
}

criterion_group!(benches, append, verification, proof_generation);
criterion_main!(benches);
