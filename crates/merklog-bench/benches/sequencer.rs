//! The sequencer's CPU cost per batch, with storage taken out: the real
//! `merklog_server::Sequencer` over a store that keeps nothing and answers
//! at once, on a single-thread runtime, so each figure is one core's work
//! for one batch (hashing, duplicate lookup, compact range, signing, proof
//! assembly, and for the service figures the wire conversion).
//!
//! ```sh
//! cargo bench -p merklog-bench --bench sequencer
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use merklog_merkle::{leaf_hash, CompactRange, Hash, NodeId};
use merklog_proto::v1::{log_server::Log, AppendRequest};
use merklog_server::{Limits, LogService, Sequencer, SequencerConfig, SystemClock};
use merklog_sth::{LogSigner, SignedTreeHead, TreeHead};
use merklog_storage::{
    Batch, Entry, EventHit, LeafNodes, LogStore, Result, StorageError, StoredEventRef,
};

/// A store that accepts every batch and keeps nothing: it reports an empty
/// log, no stored duplicates, and no nodes (the proofs of a batch's own
/// leaves never need stored nodes, so a read of one is a bug here).
struct NullStore;

impl LogStore for NullStore {
    async fn append_batch(&self, _batch: &Batch) -> Result<()> {
        Ok(())
    }
    async fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        Err(StorageError::NodeMissing { id: ids[0] })
    }
    async fn entries(&self, _start: u64, _end: u64) -> Result<Vec<Entry>> {
        Ok(Vec::new())
    }
    async fn find_by_leaf_hash(&self, _hashes: &[Hash]) -> Result<Vec<(Hash, u64)>> {
        Ok(Vec::new())
    }
    async fn leaf_count(&self) -> Result<u64> {
        Ok(0)
    }
    async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>> {
        Ok(None)
    }
    async fn tree_head_at_size(&self, _tree_size: u64) -> Result<Option<SignedTreeHead>> {
        Ok(None)
    }
    async fn tree_heads(
        &self,
        _after: Option<TreeHead>,
        _limit: u32,
    ) -> Result<Vec<SignedTreeHead>> {
        Ok(Vec::new())
    }
    async fn leaves_with_nodes(&self, _start: u64, _end: u64) -> Result<Vec<LeafNodes>> {
        Ok(Vec::new())
    }
    async fn find_events_by_id(&self, _ids: &[String]) -> Result<Vec<StoredEventRef>> {
        Ok(Vec::new())
    }
    async fn search_events(
        &self,
        _query: &merklog_storage::EventQuery,
        _tree_size: u64,
    ) -> Result<Vec<EventHit>> {
        Ok(Vec::new())
    }
}

const ENTRY_BYTES: usize = 256;
const BATCH: usize = 1_000;

/// `count` distinct 256-byte entries, distinct from every earlier call's.
fn entries(next: &mut u64, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            *next += 1;
            let mut e = vec![0xA5; ENTRY_BYTES];
            e[..8].copy_from_slice(&next.to_le_bytes());
            e
        })
        .collect()
}

fn config() -> SequencerConfig {
    SequencerConfig {
        max_batch_entries: 4096,
        // No waiting: a bench measures work, not the batching delay.
        max_batch_delay: Duration::ZERO,
        queue_capacity: 100_000,
        queue_capacity_bytes: 256 << 20,
        max_head_age: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn sequencer(c: &mut Criterion) {
    let rt = runtime();
    let store = Arc::new(NullStore);
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let (handle, _task) = rt
        .block_on(Sequencer::start(
            store.clone(),
            signer.clone(),
            Arc::new(SystemClock),
            config(),
            Arc::default(),
        ))
        .expect("sequencer starts");
    let mut next = 0u64;

    let mut g = c.benchmark_group("sequencer");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("one call of 1000 entries, with proofs", |b| {
        b.iter_batched(
            || entries(&mut next, BATCH),
            |batch| {
                rt.block_on(async {
                    let committed = handle.append(batch).await.expect("append");
                    black_box(committed.proofs(store.as_ref()).await.expect("proofs"))
                })
            },
            BatchSize::SmallInput,
        );
    });
    g.bench_function("1000 single-entry calls in one batch, with proofs", |b| {
        b.iter_batched(
            || entries(&mut next, BATCH),
            |batch| {
                rt.block_on(async {
                    // On a current-thread runtime all the calls queue before
                    // the sequencer runs, so they form one batch.
                    let calls: Vec<_> = batch
                        .into_iter()
                        .map(|e| {
                            let handle = handle.clone();
                            let store = store.clone();
                            tokio::spawn(async move {
                                let committed = handle.append(vec![e]).await.expect("append");
                                committed.proofs(store.as_ref()).await.expect("proofs")
                            })
                        })
                        .collect();
                    for call in calls {
                        black_box(call.await.expect("call"));
                    }
                })
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    // The service starts its background tasks on the runtime.
    let _runtime = rt.enter();
    let service = LogService::new(
        store.clone(),
        handle.clone(),
        signer.public_key().clone(),
        Limits::default(),
    );
    let mut g = c.benchmark_group("service");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("Append of 1000 entries, no network", |b| {
        b.iter_batched(
            || entries(&mut next, BATCH),
            |batch| {
                rt.block_on(async {
                    black_box(
                        service
                            .append(tonic::Request::new(AppendRequest { entries: batch }))
                            .await
                            .expect("append"),
                    )
                })
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();

    // The parts, for scale.
    let mut g = c.benchmark_group("parts");
    g.bench_function("sign one tree head", |b| {
        b.iter(|| {
            black_box(signer.sign(TreeHead {
                tree_size: 1,
                timestamp_ms: 1,
                root_hash: Hash([1; 32]),
            }))
        });
    });
    g.throughput(Throughput::Elements(BATCH as u64));
    let batch = entries(&mut next, BATCH);
    g.bench_function("leaf hashes of 1000 entries", |b| {
        b.iter(|| black_box(batch.iter().map(|e| leaf_hash(e)).collect::<Vec<_>>()));
    });
    let hashes: Vec<Hash> = batch.iter().map(|e| leaf_hash(e)).collect();
    let mut range = CompactRange::new();
    range.extend(&vec![Hash([7; 32]); 1_000_003], |_, _| {});
    g.bench_function("compact range: append 1000 leaves at size 1e6", |b| {
        b.iter(|| {
            let mut r = range.clone();
            let mut nodes = 0usize;
            for h in &hashes {
                r.append(*h, |_, _| nodes += 1);
            }
            black_box((r.root(), nodes))
        });
    });
    g.finish();
}

criterion_group!(benches, sequencer);
criterion_main!(benches);
