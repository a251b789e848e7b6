//! The sequencer: the single owner of the tree's right edge.
//!
//! Contract: an append is answered with success only after its leaves, the
//! nodes they complete and a tree head signed over them were committed in one
//! storage transaction. A failed commit fails every caller of that batch and
//! leaves the in-memory tree where it was, so the next batch starts from the
//! last committed state.

use std::collections::HashMap;
use std::sync::Arc;

use merklog_merkle::{fold_right_edge, inclusion_proof_nodes, CompactRange, Hash, NodeId};
use merklog_sth::{LogSigner, SignedTreeHead, TreeHead};
use merklog_storage::{Batch, LogStore, NewLeaf, StorageError};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::SequencerConfig;
use crate::node_cache::NodeCache;
use crate::status::ServiceError;

/// The stored log failed a start-up check; the server must not serve it.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Storage(#[from] StorageError),
    /// The stored log contradicts itself or this server's key.
    #[error("refusing to start: {0}")]
    Inconsistent(String),
}

/// Where one appended entry ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub index: u64,
    pub leaf_hash: Hash,
    /// The entry was already in the log before this call.
    pub duplicate: bool,
}

/// The sequencer's answer to one append call: where each entry is, the head
/// that covers them, and the node hashes of the batch for building proofs.
#[derive(Debug, Clone)]
pub struct Committed {
    pub placements: Vec<Placement>,
    pub tree_head: SignedTreeHead,
    /// Every node a proof against `tree_head` needs for a leaf of this batch:
    /// the nodes the batch created and the right edge it grew from. Proofs
    /// of older (duplicate) leaves need nodes from the store as well.
    pub nodes: Arc<BatchNodes>,
}

/// The nodes of a batch's tree, level by level. At each level the batch
/// holds one contiguous run of node indexes (the old right edge's node, if
/// any, then the nodes the batch completed, left to right), so a lookup is a
/// subtraction and a bounds check.
#[derive(Debug, Default)]
pub struct BatchNodes {
    levels: Vec<LevelRun>,
}

#[derive(Debug, Default)]
struct LevelRun {
    first: u64,
    hashes: Vec<Hash>,
}

impl BatchNodes {
    /// Records `hash` as node `id`; nodes of a level must come left to right
    /// without gaps. A node that breaks the run is not kept (a proof then
    /// reads it from the store) rather than misplaced.
    fn insert(&mut self, id: NodeId, hash: Hash) {
        let level = usize::from(id.level);
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, LevelRun::default);
        }
        let run = &mut self.levels[level];
        if run.hashes.is_empty() {
            run.first = id.index;
        }
        if id.index.checked_sub(run.first) == Some(run.hashes.len() as u64) {
            run.hashes.push(hash);
        } else {
            debug_assert!(false, "node {id:?} breaks the run of its level");
        }
    }

    /// Returns the hash of node `id` if the batch holds it.
    pub fn get(&self, id: NodeId) -> Option<Hash> {
        let run = self.levels.get(usize::from(id.level))?;
        let offset = usize::try_from(id.index.checked_sub(run.first)?).ok()?;
        run.hashes.get(offset).copied()
    }
}

impl Committed {
    /// Builds the inclusion proof of each placement against `tree_head`,
    /// reading from `store` only the nodes this batch does not hold. The
    /// ragged right edge, which all proofs against one head share, is folded
    /// once per distinct edge, not once per proof.
    ///
    /// # Errors
    /// [`ServiceError::Unavailable`] or [`ServiceError::DataLoss`] when the
    /// store fails to provide a node.
    pub async fn proofs<S: LogStore>(&self, store: &S) -> Result<Vec<Vec<Hash>>, ServiceError> {
        let n = self.tree_head.head.tree_size;
        let plans = self
            .placements
            .iter()
            .map(|p| inclusion_proof_nodes(p.index, n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ServiceError::DataLoss(format!("placement outside its own head: {e}")))?;
        let mut missing: Vec<NodeId> = plans
            .iter()
            .flat_map(|p| p.ids().iter().copied())
            .filter(|id| self.nodes.get(*id).is_none())
            .collect();
        let mut fetched = HashMap::new();
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            let hashes = store.node_hashes(&missing).await?;
            fetched.extend(missing.into_iter().zip(hashes));
        }
        let lookup = |id: &NodeId| {
            self.nodes
                .get(*id)
                .or_else(|| fetched.get(id).copied())
                .ok_or_else(|| ServiceError::DataLoss(format!("proof node {id:?} is missing")))
        };
        // Keyed by the edge's first node: at most one edge per level.
        let mut edges: Vec<(NodeId, Hash)> = Vec::new();
        plans
            .iter()
            .map(|plan| {
                plan.assemble_with(|ids| match ids {
                    [id] => lookup(id),
                    _ => {
                        if let Some((_, hash)) = edges.iter().find(|(first, _)| *first == ids[0]) {
                            return Ok(*hash);
                        }
                        let hashes = ids.iter().map(lookup).collect::<Result<Vec<_>, _>>()?;
                        let hash = fold_right_edge(&hashes);
                        edges.push((ids[0], hash));
                        Ok(hash)
                    }
                })
            })
            .collect()
    }
}

struct Job {
    leaves: Vec<NewLeaf>,
    reply: oneshot::Sender<Result<Committed, ServiceError>>,
    // Held until the job is answered: it is the job's place in the queue.
    _permit: OwnedSemaphorePermit,
}

/// A cheap handle for submitting appends to the sequencer.
#[derive(Clone)]
pub struct SequencerHandle {
    jobs: mpsc::UnboundedSender<Job>,
    queue: Arc<Semaphore>,
    capacity: usize,
    latest: watch::Receiver<SignedTreeHead>,
    node_cache: Arc<NodeCache>,
}

impl SequencerHandle {
    /// Returns the latest committed signed tree head.
    pub fn latest(&self) -> SignedTreeHead {
        self.latest.borrow().clone()
    }

    /// The cache of the tree's upper levels that the sequencer extends with
    /// every batch it commits.
    pub fn node_cache(&self) -> &Arc<NodeCache> {
        &self.node_cache
    }

    /// Submits `entries` and waits until they are committed.
    ///
    /// # Errors
    /// [`ServiceError::Overloaded`] at once when the queue is full;
    /// [`ServiceError::Unavailable`] when the batch failed to commit or the
    /// sequencer has stopped.
    pub async fn append(&self, entries: Vec<Vec<u8>>) -> Result<Committed, ServiceError> {
        let wanted = u32::try_from(entries.len()).unwrap_or(u32::MAX);
        let permit = self
            .queue
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| ServiceError::Overloaded {
                queued: self.capacity - self.queue.available_permits(),
                capacity: self.capacity,
            })?;
        crate::metrics::queue_depth(self.capacity - self.queue.available_permits());
        // Hash in the caller's task so that hashing spreads over all cores.
        let leaves = entries.into_iter().map(NewLeaf::new).collect();
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                leaves,
                reply,
                _permit: permit,
            })
            .map_err(|_| ServiceError::Unavailable("the sequencer has stopped".into()))?;
        let answer = answer.await.map_err(|_| {
            ServiceError::Unavailable("the sequencer stopped before answering".into())
        })?;
        crate::metrics::queue_depth(self.capacity - self.queue.available_permits());
        answer
    }
}

/// The task that owns the right edge of the tree.
pub struct Sequencer<S> {
    store: Arc<S>,
    signer: LogSigner,
    clock: Arc<dyn Clock>,
    config: SequencerConfig,
    range: CompactRange,
    latest: watch::Sender<SignedTreeHead>,
    node_cache: Arc<NodeCache>,
    /// Set after a failed commit: the store may have committed after all
    /// (the connection broke after COMMIT), so reload before the next batch.
    needs_resync: bool,
}

impl<S: LogStore + Send + Sync + 'static> Sequencer<S> {
    /// Checks the stored log against itself and `signer`'s key, publishes
    /// the empty tree's head on a new log, and starts the sequencer task,
    /// which adds the nodes of every batch it commits to `node_cache`.
    ///
    /// # Errors
    /// [`StartupError::Inconsistent`] saying what disagrees when the latest
    /// stored head is not signed by `signer`, does not cover exactly the
    /// stored leaves, or does not match the stored tree's root.
    pub async fn start(
        store: Arc<S>,
        signer: LogSigner,
        clock: Arc<dyn Clock>,
        config: SequencerConfig,
        node_cache: Arc<NodeCache>,
    ) -> Result<(SequencerHandle, JoinHandle<()>), StartupError> {
        let (range, head) = match load_state(store.as_ref(), &signer).await? {
            Some(state) => state,
            None => {
                let head = signer.sign(TreeHead {
                    tree_size: 0,
                    timestamp_ms: clock.now_ms(),
                    root_hash: merklog_merkle::empty_root(),
                });
                store
                    .append_batch(&Batch {
                        first_index: 0,
                        leaves: Vec::new(),
                        nodes: Vec::new(),
                        tree_head: head.clone(),
                        integrated_ms: head.head.timestamp_ms,
                    })
                    .await?;
                tracing::info!(log_id = %signer.public_key().log_id(), "created a new empty log");
                (CompactRange::new(), head)
            }
        };
        tracing::info!(
            tree_size = head.head.tree_size,
            root = %head.head.root_hash,
            "stored log verified"
        );
        let (latest_tx, latest_rx) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let capacity = config.queue_capacity;
        let sequencer = Sequencer {
            store,
            signer,
            clock,
            config,
            range,
            latest: latest_tx,
            node_cache: node_cache.clone(),
            needs_resync: false,
        };
        let task = tokio::spawn(sequencer.run(jobs_rx));
        let handle = SequencerHandle {
            jobs: jobs_tx,
            queue: Arc::new(Semaphore::new(capacity)),
            capacity,
            latest: latest_rx,
            node_cache,
        };
        Ok((handle, task))
    }

    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let max = self.config.max_batch_entries;
        while let Some(first) = jobs.recv().await {
            let mut size = first.leaves.len();
            let mut batch = vec![first];
            // Appends that queued while the last batch committed join at once.
            while size < max {
                match jobs.try_recv() {
                    Ok(job) => {
                        size += job.leaves.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            if size < max && !self.config.max_batch_delay.is_zero() {
                let deadline = Instant::now() + self.config.max_batch_delay;
                while size < max {
                    match tokio::time::timeout_at(deadline, jobs.recv()).await {
                        Ok(Some(job)) => {
                            size += job.leaves.len();
                            batch.push(job);
                        }
                        _ => break,
                    }
                }
            }
            let span = tracing::info_span!("batch", calls = batch.len(), entries = size);
            self.integrate(batch).instrument(span).await;
        }
        tracing::debug!("sequencer queue closed");
    }

    async fn integrate(&mut self, jobs: Vec<Job>) {
        if self.needs_resync {
            match load_state(self.store.as_ref(), &self.signer).await {
                Ok(Some((range, head))) => {
                    tracing::warn!(
                        tree_size = head.head.tree_size,
                        "resynchronised with the store"
                    );
                    self.range = range;
                    self.latest.send_replace(head);
                    self.needs_resync = false;
                }
                Ok(None) => {
                    self.needs_resync = false;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot resynchronise with the store");
                    fail_all(jobs, ServiceError::Unavailable(e.to_string()));
                    return;
                }
            }
        }
        match self.commit(&jobs).await {
            Ok(answers) => {
                for (job, answer) in jobs.into_iter().zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(e) => {
                crate::metrics::storage_error("batch");
                tracing::error!(error = %e, "batch failed; its callers get UNAVAILABLE");
                self.needs_resync = true;
                fail_all(jobs, e);
            }
        }
    }

    /// Sequences, stores and signs one batch; returns one answer per job.
    ///
    /// Most batches hold no entry the log already has, so the batch is
    /// first written without asking the store: the unique index on leaf
    /// hashes refuses it whole if one is already stored, and only then are
    /// the batch's hashes looked up and the batch rebuilt with them as
    /// duplicates. That saves a round trip and an index probe per entry on
    /// every batch without a resubmitted entry.
    async fn commit(&mut self, jobs: &[Job]) -> Result<Vec<Committed>, ServiceError> {
        match self.commit_knowing(jobs, HashMap::new()).await {
            Err(StorageError::DuplicateLeaf { .. }) => {
                let mut unique: Vec<Hash> = jobs
                    .iter()
                    .flat_map(|j| j.leaves.iter().map(NewLeaf::leaf_hash))
                    .collect();
                unique.sort_unstable();
                unique.dedup();
                let stored = self.store.find_by_leaf_hash(&unique).await?;
                Ok(self
                    .commit_knowing(jobs, stored.into_iter().collect())
                    .await?)
            }
            other => Ok(other?),
        }
    }

    /// Commits the batch of `jobs`, where `stored` maps leaf hashes already
    /// in the log to their indexes.
    async fn commit_knowing(
        &mut self,
        jobs: &[Job],
        stored: HashMap<Hash, u64>,
    ) -> Result<Vec<Committed>, StorageError> {
        let started = std::time::Instant::now();
        let mut index_of = stored;
        let old_size = self.range.size();
        let mut range = self.range.clone();
        let mut nodes = BatchNodes::default();
        for (id, hash) in CompactRange::node_ids(old_size)
            .into_iter()
            .zip(range.hashes().iter().copied())
        {
            nodes.insert(id, hash);
        }
        let mut leaves = Vec::new();
        let mut new_nodes = Vec::new();
        let mut placements: Vec<Vec<Placement>> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut mine = Vec::with_capacity(job.leaves.len());
            for leaf in &job.leaves {
                let hash = leaf.leaf_hash();
                let (index, duplicate) = match index_of.get(&hash) {
                    Some(&index) => (index, true),
                    None => {
                        let index = range.size();
                        range.append(hash, |id, h| {
                            nodes.insert(id, h);
                            if id.level > 0 {
                                new_nodes.push((id, h));
                            }
                        });
                        index_of.insert(hash, index);
                        leaves.push(leaf.clone());
                        (index, false)
                    }
                };
                // A copy of an entry appended earlier in this batch, by this
                // call or another, is a duplicate too.
                mine.push(Placement {
                    index,
                    leaf_hash: hash,
                    duplicate,
                });
            }
            placements.push(mine);
        }
        let tree_head = if leaves.is_empty() {
            self.latest.borrow().clone()
        } else {
            let previous = self.latest.borrow().head.timestamp_ms;
            let tree_head = self.signer.sign(TreeHead {
                tree_size: range.size(),
                // Timestamps never go backwards, even if the clock does.
                timestamp_ms: self.clock.now_ms().max(previous),
                root_hash: range.root(),
            });
            let appended = leaves.len();
            let batch = Batch {
                first_index: old_size,
                leaves,
                nodes: new_nodes,
                integrated_ms: tree_head.head.timestamp_ms,
                tree_head: tree_head.clone(),
            };
            self.store.append_batch(&batch).await?;
            // Committed: only now does the in-memory tree move on. The cache
            // first, so that its filler never reads back a published batch.
            self.node_cache
                .extend_committed(old_size, range.size(), &batch.nodes);
            self.range = range;
            self.latest.send_replace(tree_head.clone());
            crate::metrics::batch_committed(appended, started.elapsed(), tree_head.head.tree_size);
            tracing::debug!(tree_size = tree_head.head.tree_size, "batch committed");
            tree_head
        };
        let nodes = Arc::new(nodes);
        Ok(placements
            .into_iter()
            .map(|placements| Committed {
                placements,
                tree_head: tree_head.clone(),
                nodes: nodes.clone(),
            })
            .collect())
    }
}

fn fail_all(jobs: Vec<Job>, error: ServiceError) {
    for job in jobs {
        let _ = job.reply.send(Err(error.clone()));
    }
}

/// Reads the latest head and the tree's right edge and checks them against
/// each other and `signer`'s key. `None` for a store that has no head yet.
async fn load_state<S: LogStore>(
    store: &S,
    signer: &LogSigner,
) -> Result<Option<(CompactRange, SignedTreeHead)>, StartupError> {
    let leaves = store.leaf_count().await?;
    let Some(head) = store.latest_tree_head().await? else {
        if leaves > 0 {
            return Err(StartupError::Inconsistent(format!(
                "the store holds {leaves} leaves but no signed tree head"
            )));
        }
        return Ok(None);
    };
    signer.public_key().verify(&head).map_err(|e| {
        StartupError::Inconsistent(format!(
            "the latest tree head (size {}) is not signed by this server's key (log ID {}): {e}; \
             is this the right key file, or was the head tampered with?",
            head.head.tree_size,
            signer.public_key().log_id()
        ))
    })?;
    let size = head.head.tree_size;
    if leaves != size {
        return Err(StartupError::Inconsistent(format!(
            "the store holds {leaves} leaves but the latest signed tree head covers {size}; \
             leaves were added or removed outside the service"
        )));
    }
    let edge = store.node_hashes(&CompactRange::node_ids(size)).await?;
    let range = CompactRange::from_parts(size, edge)
        .map_err(|e| StartupError::Inconsistent(e.to_string()))?;
    if range.root() != head.head.root_hash {
        return Err(StartupError::Inconsistent(format!(
            "the stored tree of size {size} has root {} but the latest signed tree head says {}; \
             stored nodes or the head were altered",
            range.root(),
            head.head.root_hash
        )));
    }
    Ok(Some((range, head)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed batch reaches the node cache before its callers are
    /// answered, with exactly the nodes the store holds.
    #[tokio::test]
    async fn committed_batches_extend_the_node_cache() {
        use merklog_storage::testing::temp_sqlite;
        use merklog_storage::SqliteStore;

        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let cache = Arc::new(NodeCache::new(1 << 20));
        let (handle, _task) = Sequencer::start(
            store.clone(),
            signer,
            Arc::new(crate::SystemClock),
            SequencerConfig::default(),
            cache.clone(),
        )
        .await
        .unwrap();
        let mut next = 0u32;
        for calls in [1, 3, 250, 7] {
            for _ in 0..calls {
                next += 1;
                let committed = handle
                    .append(vec![next.to_be_bytes().to_vec()])
                    .await
                    .unwrap();
                let size = committed.tree_head.head.tree_size;
                assert_eq!(cache.size(), size);
                let lowest = cache.lowest_level();
                let ids: Vec<NodeId> = (lowest..10)
                    .flat_map(|level| (0..size >> level).map(move |i| NodeId::new(level, i)))
                    .collect();
                let cached: Vec<Hash> = cache
                    .get_many(&ids)
                    .into_iter()
                    .map(Option::unwrap)
                    .collect();
                assert_eq!(
                    cached,
                    store.node_hashes(&ids).await.unwrap(),
                    "at size {size}"
                );
            }
        }
    }

    /// Grows a tree from every size up to 40 by batches of 1 to 20 leaves,
    /// filling `BatchNodes` as `commit` does, and checks every node it was
    /// given against a plain map: the runs really are contiguous.
    #[test]
    fn batch_nodes_hold_every_node_of_a_batch() {
        let leaf = |i: u64| merklog_merkle::leaf_hash(&i.to_be_bytes());
        for old_size in 0..40u64 {
            let mut range = CompactRange::new();
            for i in 0..old_size {
                range.append(leaf(i), |_, _| {});
            }
            for batch in 1..20u64 {
                let mut range = range.clone();
                let mut nodes = BatchNodes::default();
                let mut expected = HashMap::new();
                for (id, hash) in CompactRange::node_ids(old_size)
                    .into_iter()
                    .zip(range.hashes().iter().copied())
                {
                    nodes.insert(id, hash);
                    expected.insert(id, hash);
                }
                for i in old_size..old_size + batch {
                    range.append(leaf(i), |id, hash| {
                        nodes.insert(id, hash);
                        expected.insert(id, hash);
                    });
                }
                for (id, hash) in &expected {
                    assert_eq!(nodes.get(*id), Some(*hash), "{old_size}+{batch}: {id:?}");
                }
                assert_eq!(nodes.get(NodeId::leaf(old_size + batch)), None);
            }
        }
    }
}
