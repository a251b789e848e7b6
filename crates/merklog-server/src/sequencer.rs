//! The sequencer: the single owner of the tree's right edge.
//!
//! Contract: an append is answered with success only after its leaves, the
//! nodes they complete and a tree head signed over them were committed in one
//! storage transaction. A failed commit fails every caller of that batch and
//! leaves the in-memory tree where it was, so the next batch starts from the
//! last committed state.
//!
//! Writes are pipelined: the next batch is built and signed while one is
//! written, and written once that one has committed (see `Sequencer::run`).

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
use crate::config::{SequencerConfig, QUEUED_ENTRY_OVERHEAD};
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
    /// The latest head is dated further ahead of this machine's clock than
    /// [`MAX_HEAD_AHEAD_MS`]. Heads never go back in time, so every head
    /// signed here would carry that future date, which clients refuse.
    #[error(
        "refusing to sequence: the latest signed tree head is dated {head_ms} ms since the epoch, \
         {} s ahead of this machine's clock ({now_ms}); correct the clock (or wait until it \
         passes the head's time) and start again",
        (head_ms - now_ms) / 1000
    )]
    ClockBehind { head_ms: u64, now_ms: u64 },
}

/// How far ahead of the clock the latest stored head may be dated when a
/// sequencer starts: a clock stepped back a little (NTP) keeps the head's
/// time as its floor until it catches up; more means this machine's clock is
/// wrong, or was when the head was signed.
pub const MAX_HEAD_AHEAD_MS: u64 = 60_000;

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
    // Held until the job is answered: the job's place in the queue, in
    // entries and in bytes.
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
}

/// A cheap handle for submitting appends to the sequencer.
#[derive(Clone)]
pub struct SequencerHandle {
    jobs: mpsc::UnboundedSender<Job>,
    queue: Arc<Semaphore>,
    capacity: usize,
    queue_bytes: Arc<Semaphore>,
    capacity_bytes: usize,
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
        // Hash in the caller's task so that hashing spreads over all cores.
        self.append_leaves(entries.into_iter().map(NewLeaf::new).collect())
            .await
    }

    /// Submits sealed events and waits until they are committed. An event
    /// whose `event_id` the log holds already, or that an earlier event of
    /// the same batch carries, adds no leaf: its placement is the original
    /// event's index and leaf hash, marked duplicate.
    ///
    /// # Errors
    /// As [`SequencerHandle::append`].
    pub async fn append_events(
        &self,
        events: &[merklog_event::SealedEvent],
    ) -> Result<Committed, ServiceError> {
        self.append_leaves(events.iter().map(NewLeaf::event).collect())
            .await
    }

    /// Submits `leaves` and waits until they are committed.
    async fn append_leaves(&self, leaves: Vec<NewLeaf>) -> Result<Committed, ServiceError> {
        let wanted = u32::try_from(leaves.len()).unwrap_or(u32::MAX);
        let permit = self
            .queue
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| ServiceError::Overloaded {
                queued: self.capacity - self.queue.available_permits(),
                capacity: self.capacity,
                unit: "entries",
            })?;
        let bytes: usize = leaves
            .iter()
            .map(|l| l.entry().len() + QUEUED_ENTRY_OVERHEAD)
            .sum();
        let bytes_permit = self
            .queue_bytes
            .clone()
            .try_acquire_many_owned(u32::try_from(bytes).unwrap_or(u32::MAX))
            .map_err(|_| ServiceError::Overloaded {
                queued: self.capacity_bytes - self.queue_bytes.available_permits(),
                capacity: self.capacity_bytes,
                unit: "bytes",
            })?;
        crate::metrics::queue_depth(self.capacity - self.queue.available_permits());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                leaves,
                reply,
                _permits: (permit, bytes_permit),
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
    /// After a failed re-signing of an idle head, when to try again (clock
    /// milliseconds); 0 before any failure.
    resign_retry_at_ms: u64,
}

/// What an idle sequencer woke up for.
enum Idle {
    Job(Job),
    /// The latest head is older than the maximum head age.
    HeadTooOld,
    /// Every handle is gone: the server is stopping.
    Closed,
}

/// How long after a failed re-signing of an idle head the sequencer tries
/// again.
const RESIGN_RETRY_MS: u64 = 5_000;

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
        let now_ms = clock.now_ms();
        if head.head.timestamp_ms > now_ms.saturating_add(MAX_HEAD_AHEAD_MS) {
            return Err(StartupError::ClockBehind {
                head_ms: head.head.timestamp_ms,
                now_ms,
            });
        }
        tracing::info!(
            tree_size = head.head.tree_size,
            root = %head.head.root_hash,
            "stored log verified"
        );
        let (latest_tx, latest_rx) = watch::channel(head);
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let capacity = config.queue_capacity;
        let capacity_bytes = config.queue_capacity_bytes;
        let sequencer = Sequencer {
            store,
            signer,
            clock,
            config,
            range,
            latest: latest_tx,
            node_cache: node_cache.clone(),
            needs_resync: false,
            resign_retry_at_ms: 0,
        };
        let task = tokio::spawn(sequencer.run(jobs_rx));
        let handle = SequencerHandle {
            jobs: jobs_tx,
            queue: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue_bytes: Arc::new(Semaphore::new(capacity_bytes)),
            capacity_bytes,
            latest: latest_rx,
            node_cache,
        };
        Ok((handle, task))
    }

    /// Batches and commits appends until the queue closes.
    ///
    /// Writes are pipelined: while one batch is written, the appends that
    /// arrive join the next, which is built and signed on top of the tree the
    /// written batch will leave. Nothing of a batch is published before its
    /// write commits, and a batch's write starts only after the one before
    /// it committed, so batches commit in order; if a write fails, the batch
    /// built on it is rebuilt from the committed tree.
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Job>) {
        let max = self.config.max_batch_entries;
        let mut in_flight: Option<InFlight> = None;
        let mut waiting: Vec<Job> = Vec::new();
        let mut size = 0usize;
        let mut open = true;
        let take = |job: Job, waiting: &mut Vec<Job>, size: &mut usize| {
            *size += job.leaves.len();
            waiting.push(job);
        };
        loop {
            // 1. Take appends for the next batch.
            let mut written = None;
            match in_flight.as_mut() {
                None => {
                    if waiting.is_empty() {
                        match self.wait_idle(&mut queue).await {
                            Idle::Job(job) => take(job, &mut waiting, &mut size),
                            Idle::HeadTooOld => {
                                self.refresh_head().await;
                                continue;
                            }
                            Idle::Closed => break,
                        }
                    }
                    // Appends that queued meanwhile join at once.
                    while size < max {
                        match queue.try_recv() {
                            Ok(job) => take(job, &mut waiting, &mut size),
                            Err(_) => break,
                        }
                    }
                    if size < max && !self.config.max_batch_delay.is_zero() {
                        let deadline = Instant::now() + self.config.max_batch_delay;
                        while size < max {
                            match tokio::time::timeout_at(deadline, queue.recv()).await {
                                Ok(Some(job)) => take(job, &mut waiting, &mut size),
                                _ => break,
                            }
                        }
                    }
                }
                // Until the write ends (then what has queued joins at once)
                // or the batch is full.
                Some(flight) => {
                    while size < max && written.is_none() {
                        tokio::select! {
                            biased;
                            result = &mut flight.write => written = Some(result),
                            job = queue.recv(), if open => match job {
                                Some(job) => take(job, &mut waiting, &mut size),
                                None => open = false,
                            },
                        }
                    }
                    while size < max {
                        match queue.try_recv() {
                            Ok(job) => take(job, &mut waiting, &mut size),
                            Err(_) => break,
                        }
                    }
                }
            }
            // 2. Build and sign it, on top of the batch in flight if any.
            let mut next = None;
            if !waiting.is_empty() {
                let jobs = std::mem::take(&mut waiting);
                size = 0;
                next = match in_flight.as_ref() {
                    Some(flight) => Some(self.prepare(
                        jobs,
                        Known::default(),
                        &flight.prepared.range,
                        &flight.prepared.tree_head,
                    )),
                    None => self.prepare_on_committed(jobs).await,
                };
            }
            // 3. Finish the write in flight: publish it, or fail its callers.
            if let Some(flight) = in_flight.take() {
                let result = match written {
                    Some(result) => result,
                    None => flight.write.await,
                };
                if !self.finish(flight.prepared, result).await {
                    // `next` was built on the batch as prepared, which
                    // failed or was rebuilt around duplicates.
                    if let Some(stale) = next.take() {
                        next = self.prepare_on_committed(stale.jobs).await;
                    }
                }
            }
            // 4. Start writing the next batch (or answer it at once when it
            // adds nothing).
            if let Some(prepared) = next {
                match prepared.batch.clone() {
                    Some(batch) => {
                        let store = self.store.clone();
                        let span = tracing::info_span!(
                            "batch",
                            calls = prepared.jobs.len(),
                            entries = batch.leaves.len()
                        );
                        // Polled by this task, in steps 1 and 3: no hop
                        // through the scheduler between two batches.
                        let write = Box::pin(
                            async move { store.append_batch(&batch).await }.instrument(span),
                        );
                        in_flight = Some(InFlight { prepared, write });
                    }
                    None => self.publish(prepared),
                }
            }
            if !open && in_flight.is_none() && waiting.is_empty() {
                break;
            }
        }
        tracing::debug!("sequencer queue closed");
    }

    /// Waits, with nothing queued and nothing in flight, for the next
    /// append, or until the latest head is older than
    /// [`SequencerConfig::max_head_age`] by the injected clock (a timer
    /// that resolves first wins, so a stream of appends that add nothing,
    /// all duplicates, cannot keep the head from being renewed).
    async fn wait_idle(&mut self, queue: &mut mpsc::UnboundedReceiver<Job>) -> Idle {
        let Some(deadline_ms) = self.resign_at_ms() else {
            return queue.recv().await.map_or(Idle::Closed, Idle::Job);
        };
        let clock = self.clock.clone();
        tokio::select! {
            biased;
            () = clock.sleep_until_ms(deadline_ms) => Idle::HeadTooOld,
            job = queue.recv() => job.map_or(Idle::Closed, Idle::Job),
        }
    }

    /// When the latest head is due to be re-signed, in the clock's
    /// milliseconds; `None` when re-signing is off.
    fn resign_at_ms(&self) -> Option<u64> {
        let age = u64::try_from(self.config.max_head_age?.as_millis()).unwrap_or(u64::MAX);
        let due = self.latest.borrow().head.timestamp_ms.saturating_add(age);
        Some(due.max(self.resign_retry_at_ms))
    }

    /// Signs and stores a head of the tree as it is, dated now, and
    /// publishes it: the log's way of saying it is alive while nobody
    /// appends. Same size and root as the latest head, a later timestamp
    /// (the schema keeps every head, one row per (size, timestamp)). A
    /// failure is retried after a short pause; callers never wait on it.
    async fn refresh_head(&mut self) {
        if let Err(e) = self.resync().await {
            tracing::warn!(error = %e, "cannot resynchronise with the store to re-sign the head");
            self.resign_retry_at_ms = self.clock.now_ms().saturating_add(RESIGN_RETRY_MS);
            return;
        }
        let latest = self.latest.borrow().clone();
        let now_ms = self.clock.now_ms();
        // A wait that resolved early, or a clock set back meanwhile: the
        // head is not due yet (and a head must not be dated before it).
        if self.resign_at_ms().is_none_or(|due| now_ms < due) {
            return;
        }
        let head = self.signer.sign(TreeHead {
            timestamp_ms: now_ms,
            ..latest.head
        });
        let batch = Batch {
            first_index: head.head.tree_size,
            leaves: Vec::new(),
            nodes: Vec::new(),
            tree_head: head.clone(),
            integrated_ms: now_ms,
        };
        match self.store.append_batch(&batch).await {
            Ok(()) => {
                tracing::debug!(
                    tree_size = head.head.tree_size,
                    timestamp_ms = now_ms,
                    previous_ms = latest.head.timestamp_ms,
                    "re-signed the head of an idle log"
                );
                self.latest.send_replace(head);
            }
            Err(e) => {
                crate::metrics::storage_error(crate::metrics::STORAGE_REFRESH_HEAD);
                tracing::warn!(error = %e, "cannot store a fresh head of the idle log; retrying");
                // Another writer may have moved the store: reload first.
                self.needs_resync = true;
                self.resign_retry_at_ms = now_ms.saturating_add(RESIGN_RETRY_MS);
            }
        }
    }

    /// Reloads the tree and the latest head from the store after a failed
    /// commit (the store may have committed it after all).
    async fn resync(&mut self) -> Result<(), StartupError> {
        if !self.needs_resync {
            return Ok(());
        }
        if let Some((range, head)) = load_state(self.store.as_ref(), &self.signer).await? {
            tracing::warn!(
                tree_size = head.head.tree_size,
                "resynchronised with the store"
            );
            self.range = range;
            self.latest.send_replace(head);
        }
        self.needs_resync = false;
        Ok(())
    }

    /// Builds a batch of `jobs` on the committed tree, first reloading the
    /// tree from the store after a failed commit; fails the jobs and returns
    /// `None` when that reload fails.
    async fn prepare_on_committed(&mut self, jobs: Vec<Job>) -> Option<Prepared> {
        if let Err(e) = self.resync().await {
            tracing::error!(error = %e, "cannot resynchronise with the store");
            fail_all(
                jobs,
                ServiceError::Unavailable(format!(
                    "cannot reload the log's state from the database: {e}"
                )),
            );
            return None;
        }
        let range = self.range.clone();
        let head = self.latest.borrow().clone();
        Some(self.prepare(jobs, Known::default(), &range, &head))
    }

    /// Ends the write of `prepared` with its `result`: publishes the batch
    /// and answers its callers, or fails them. Returns whether it committed
    /// exactly as prepared, so that a batch built on top of it stands.
    ///
    /// Most batches hold no entry the log already has, so a batch is first
    /// written without asking the store: the store refuses it whole if a
    /// leaf hash is already stored, and only then are the batch's hashes
    /// looked up and the batch rebuilt and written again with them as
    /// duplicates. That saves a round trip and an index probe per entry on
    /// every batch without a resubmitted entry.
    async fn finish(&mut self, prepared: Prepared, result: Result<(), StorageError>) -> bool {
        let span = tracing::info_span!(
            "batch",
            calls = prepared.jobs.len(),
            entries = prepared.batch.as_ref().map_or(0, |b| b.leaves.len())
        );
        let as_prepared = result.is_ok();
        let result = match result {
            Ok(()) => Ok(prepared),
            Err(StorageError::DuplicateLeaf { .. } | StorageError::DuplicateEvent { .. }) => {
                // Not an error: resubmitted entries (a retry after a lost
                // answer) are answered with their stored leaves.
                tracing::debug!(parent: &span, "the batch holds entries the log has; answering them as duplicates");
                self.commit_with_duplicates(prepared.jobs)
                    .instrument(span.clone())
                    .await
            }
            Err(e) => Err((prepared.jobs, write_failed(e))),
        };
        let _entered = span.enter();
        match result {
            Ok(prepared) => {
                self.publish(prepared);
                as_prepared
            }
            Err((jobs, e)) => {
                crate::metrics::storage_error(crate::metrics::STORAGE_BATCH);
                tracing::error!(error = %e, "batch failed; its callers get the error");
                self.needs_resync = true;
                fail_all(jobs, e);
                false
            }
        }
    }

    /// Rebuilds a batch that the store refused for a leaf (or an event id)
    /// it already holds, with the stored leaves of its entries and events as
    /// duplicates, and writes it.
    async fn commit_with_duplicates(
        &mut self,
        jobs: Vec<Job>,
    ) -> Result<Prepared, (Vec<Job>, ServiceError)> {
        let mut unique: Vec<Hash> = jobs
            .iter()
            .flat_map(|j| j.leaves.iter().map(NewLeaf::leaf_hash))
            .collect();
        unique.sort_unstable();
        unique.dedup();
        let stored = match self.store.find_by_leaf_hash(&unique).await {
            Ok(stored) => stored,
            Err(e) => return Err((jobs, e.into())),
        };
        let mut event_ids: Vec<String> = jobs
            .iter()
            .flat_map(|j| j.leaves.iter().filter_map(NewLeaf::event_id))
            .map(str::to_owned)
            .collect();
        event_ids.sort_unstable();
        event_ids.dedup();
        let events = if event_ids.is_empty() {
            Vec::new()
        } else {
            match self.store.find_events_by_id(&event_ids).await {
                Ok(found) => found,
                Err(e) => return Err((jobs, e.into())),
            }
        };
        let known = Known {
            leaves: stored.into_iter().collect(),
            events: events
                .into_iter()
                .map(|e| (e.event_id, (e.index, e.leaf_hash)))
                .collect(),
        };
        let range = self.range.clone();
        let head = self.latest.borrow().clone();
        let prepared = self.prepare(jobs, known, &range, &head);
        if let Some(batch) = &prepared.batch {
            if let Err(e) = self.store.append_batch(batch).await {
                return Err((prepared.jobs, write_failed(e)));
            }
        }
        Ok(prepared)
    }

    /// Sequences `jobs` on top of the tree `base` with signed head `head`,
    /// where `stored` holds the leaves and event ids already in the log;
    /// signs the new head. Writes and publishes nothing.
    fn prepare(
        &self,
        jobs: Vec<Job>,
        stored: Known,
        base: &CompactRange,
        head: &SignedTreeHead,
    ) -> Prepared {
        let started = std::time::Instant::now();
        let Known {
            leaves: mut index_of,
            events: mut event_at,
        } = stored;
        let old_size = base.size();
        let mut range = base.clone();
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
        for job in &jobs {
            let mut mine = Vec::with_capacity(job.leaves.len());
            for leaf in &job.leaves {
                // An event is known by its id first: a resubmitted event
                // has a new salt, so a new leaf hash.
                let known = leaf
                    .event_id()
                    .and_then(|id| event_at.get(id).copied())
                    .or_else(|| {
                        index_of
                            .get(&leaf.leaf_hash())
                            .map(|&i| (i, leaf.leaf_hash()))
                    });
                let (index, hash, duplicate) = match known {
                    Some((index, hash)) => (index, hash, true),
                    None => {
                        let hash = leaf.leaf_hash();
                        let index = range.size();
                        range.append(hash, |id, h| {
                            nodes.insert(id, h);
                            if id.level > 0 {
                                new_nodes.push((id, h));
                            }
                        });
                        index_of.insert(hash, index);
                        if let Some(id) = leaf.event_id() {
                            event_at.insert(id.to_owned(), (index, hash));
                        }
                        leaves.push(leaf.clone());
                        (index, hash, false)
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
        let (tree_head, batch) = if leaves.is_empty() {
            (head.clone(), None)
        } else {
            let tree_head = self.signer.sign(TreeHead {
                tree_size: range.size(),
                // Timestamps never go backwards, even if the clock does.
                timestamp_ms: self.clock.now_ms().max(head.head.timestamp_ms),
                root_hash: range.root(),
            });
            let batch = Batch {
                first_index: old_size,
                leaves,
                nodes: new_nodes,
                integrated_ms: tree_head.head.timestamp_ms,
                tree_head: tree_head.clone(),
            };
            (tree_head, Some(Arc::new(batch)))
        };
        Prepared {
            jobs,
            placements,
            nodes,
            range,
            tree_head,
            batch,
            started,
        }
    }

    /// Makes a committed batch the log's state and answers its callers.
    fn publish(&mut self, prepared: Prepared) {
        let Prepared {
            jobs,
            placements,
            nodes,
            range,
            tree_head,
            batch,
            started,
        } = prepared;
        if let Some(batch) = batch {
            // The cache first, so that its filler never reads back a
            // published batch.
            self.node_cache
                .extend_committed(batch.first_index, range.size(), &batch.nodes);
            self.range = range;
            self.latest.send_replace(tree_head.clone());
            crate::metrics::batch_committed(
                batch.leaves.len(),
                started.elapsed(),
                tree_head.head.tree_size,
            );
            tracing::debug!(tree_size = tree_head.head.tree_size, "batch committed");
        }
        let nodes = Arc::new(nodes);
        for (job, placements) in jobs.into_iter().zip(placements) {
            let _ = job.reply.send(Ok(Committed {
                placements,
                tree_head: tree_head.clone(),
                nodes: nodes.clone(),
            }));
        }
    }
}

/// What the log holds already, for answering resubmissions as duplicates:
/// leaf hashes and event ids, each with its index (and an event's leaf hash).
#[derive(Debug, Default)]
struct Known {
    leaves: HashMap<Hash, u64>,
    events: HashMap<String, (u64, Hash)>,
}

/// A batch built on the tree that the batches before it leave; nothing of it
/// is published until its write commits.
struct Prepared {
    jobs: Vec<Job>,
    placements: Vec<Vec<Placement>>,
    nodes: BatchNodes,
    /// The tree after this batch, and the head signed over it.
    range: CompactRange,
    tree_head: SignedTreeHead,
    /// What to write; `None` when every entry was in the log already.
    batch: Option<Arc<Batch>>,
    started: std::time::Instant,
}

/// A prepared batch and its write, which the sequencer polls while it
/// gathers the next batch.
struct InFlight {
    prepared: Prepared,
    write: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StorageError>> + Send>>,
}

/// What the callers of a batch whose write failed are told. A write can fail
/// after its COMMIT reached the database (the connection dropped before the
/// answer came back), so the sequencer cannot say whether the entries are
/// stored; what it can say is that appending them again is safe.
fn write_failed(e: StorageError) -> ServiceError {
    let note = crate::status::APPEND_AGAIN_IS_SAFE;
    match ServiceError::from(e) {
        ServiceError::Unavailable(m) => ServiceError::Unavailable(format!("{m}; {note}")),
        ServiceError::Internal(m) => ServiceError::Internal(format!("{m}; {note}")),
        other => other,
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
    use merklog_storage::testing::{AppendHook, HookedStore};

    struct FixedClock(u64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            self.0
        }
    }

    /// A sequencer whose clock is far behind the latest head does not sign
    /// more heads with that future date, which clients refuse; a clock a
    /// little behind (stepped back by NTP) keeps the head's time as floor.
    #[tokio::test]
    async fn a_clock_far_behind_the_latest_head_refuses_to_sequence() {
        use merklog_storage::testing::temp_sqlite;
        use merklog_storage::SqliteStore;

        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let start = |at_ms: u64| {
            Sequencer::start(
                store.clone(),
                signer.clone(),
                Arc::new(FixedClock(at_ms)),
                SequencerConfig::default(),
                Arc::new(NodeCache::new(0)),
            )
        };
        let t = 1_800_000_000_000;
        let (handle, task) = start(t).await.unwrap();
        let head = handle
            .append(vec![b"one".to_vec()])
            .await
            .unwrap()
            .tree_head;
        assert_eq!(head.head.timestamp_ms, t);
        drop(handle);
        task.await.unwrap();

        let (handle, task) = start(t - MAX_HEAD_AHEAD_MS).await.unwrap();
        let head = handle
            .append(vec![b"two".to_vec()])
            .await
            .unwrap()
            .tree_head;
        assert_eq!(head.head.timestamp_ms, t, "the head's time is the floor");
        drop(handle);
        task.await.unwrap();

        match start(t - MAX_HEAD_AHEAD_MS - 1).await {
            Err(e @ StartupError::ClockBehind { .. }) => {
                assert!(
                    e.to_string().contains("60 s ahead of this machine's clock"),
                    "{e}"
                );
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a sequencer started with its clock behind the latest head"),
        }
    }

    fn sealed(id: &str, actor: &str, salt: u8) -> merklog_event::SealedEvent {
        let input = merklog_event::EventInput {
            event_id: Some(id.into()),
            occurred_at: "2026-12-03T10:00:00Z".into(),
            actor: merklog_event::ActorInput {
                id: actor.into(),
                kind: "user".into(),
            },
            action: "test".into(),
            outcome: "success".into(),
            ..Default::default()
        };
        merklog_event::SealedEvent {
            salt: [salt; merklog_event::SALT_LEN],
            event: merklog_event::Event::from_input(input, "tester", String::new).unwrap(),
        }
    }

    /// An event id seen earlier in the call, in an earlier call, or in the
    /// batch written before (pipelined) is answered with the first leaf.
    /// Every head the store keeps, oldest first.
    async fn stored_heads<S: LogStore>(store: &S) -> Vec<SignedTreeHead> {
        store.tree_heads(None, 1000).await.unwrap()
    }

    /// An idle log re-signs its head once the head is older than the
    /// maximum age by the injected clock, and not a moment before; the
    /// fresh head has the same size and root, a new time, a valid
    /// signature, is stored, and later appends go on from it.
    #[tokio::test]
    async fn an_idle_log_re_signs_its_head_at_the_maximum_age() {
        use merklog_storage::testing::temp_sqlite;
        use merklog_storage::SqliteStore;

        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let t = 1_800_000_000_000;
        let clock = Arc::new(crate::ManualClock::new(t));
        let (handle, _task) = Sequencer::start(
            store.clone(),
            signer.clone(),
            clock.clone(),
            SequencerConfig {
                max_head_age: Some(std::time::Duration::from_secs(60)),
                ..SequencerConfig::default()
            },
            Arc::new(NodeCache::new(0)),
        )
        .await
        .unwrap();
        let first = handle
            .append(vec![b"one".to_vec()])
            .await
            .unwrap()
            .tree_head;
        assert_eq!(
            stored_heads(store.as_ref()).await.len(),
            2,
            "empty log, then one"
        );
        let mut latest = handle.latest.clone();
        latest.mark_unchanged();

        // A millisecond short of the age: a call that the sequencer
        // answers (a duplicate, which adds nothing) shows it looked at the
        // clock and signed nothing.
        clock.set_ms(t + 59_999);
        let again = handle.append(vec![b"one".to_vec()]).await.unwrap();
        assert!(again.placements[0].duplicate);
        assert_eq!(again.tree_head, first);
        assert_eq!(stored_heads(store.as_ref()).await.len(), 2);
        assert!(!latest.has_changed().unwrap(), "nothing re-signed early");

        clock.set_ms(t + 60_000);
        tokio::time::timeout(std::time::Duration::from_secs(30), latest.changed())
            .await
            .expect("the head is re-signed once it is 60 s old")
            .unwrap();
        let fresh = handle.latest();
        assert_eq!(fresh.head.tree_size, first.head.tree_size);
        assert_eq!(fresh.head.root_hash, first.head.root_hash);
        assert_eq!(fresh.head.timestamp_ms, t + 60_000);
        signer.public_key().verify(&fresh).unwrap();
        let heads = stored_heads(store.as_ref()).await;
        assert_eq!(heads.len(), 3);
        assert_eq!(heads[2], fresh, "stored before it is served");
        assert_eq!(store.latest_tree_head().await.unwrap().unwrap(), fresh);

        // The next age is counted from the fresh head.
        clock.set_ms(t + 119_999);
        handle.append(vec![b"one".to_vec()]).await.unwrap();
        assert_eq!(stored_heads(store.as_ref()).await.len(), 3);
        clock.set_ms(t + 120_500);
        latest.changed().await.unwrap();
        assert_eq!(handle.latest().head.timestamp_ms, t + 120_500);

        // Appends go on from the re-signed head.
        let two = handle.append(vec![b"two".to_vec()]).await.unwrap();
        assert_eq!(two.placements[0].index, 1);
        assert_eq!(two.tree_head.head.timestamp_ms, t + 120_500);
        assert_eq!(stored_heads(store.as_ref()).await.len(), 5);
    }

    /// A clock that goes back while the sequencer runs (NTP stepping it):
    /// later heads keep the latest head's time as their floor, so no head
    /// and no leaf is dated before one already signed, and the store's time
    /// order accepts every batch; the clock moving on again moves them on.
    #[tokio::test]
    async fn a_clock_set_back_while_running_never_dates_a_head_earlier() {
        use merklog_storage::testing::temp_sqlite;
        use merklog_storage::SqliteStore;

        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let t = 1_800_000_000_000;
        let clock = Arc::new(crate::ManualClock::new(t));
        let (handle, _task) = Sequencer::start(
            store.clone(),
            signer.clone(),
            clock.clone(),
            SequencerConfig::default(),
            Arc::new(NodeCache::new(0)),
        )
        .await
        .unwrap();
        let one = handle.append(vec![b"one".to_vec()]).await.unwrap();
        assert_eq!(one.tree_head.head.timestamp_ms, t);

        clock.set_ms(t - 30_000);
        let two = handle.append(vec![b"two".to_vec()]).await.unwrap();
        assert_eq!(two.placements[0].index, 1);
        assert_eq!(
            two.tree_head.head.timestamp_ms, t,
            "the latest head's time is the floor"
        );
        signer.public_key().verify(&two.tree_head).unwrap();

        clock.set_ms(t + 5);
        let three = handle.append(vec![b"three".to_vec()]).await.unwrap();
        assert_eq!(three.tree_head.head.timestamp_ms, t + 5);

        let heads = stored_heads(store.as_ref()).await;
        assert!(
            heads
                .windows(2)
                .all(|w| w[0].head.timestamp_ms <= w[1].head.timestamp_ms),
            "stored heads never go back in time"
        );
        let leaves = store.entries(0, 3).await.unwrap();
        let times: Vec<u64> = leaves.iter().map(|e| e.integrated_ms).collect();
        assert_eq!(times, [t, t, t + 5], "integration times never go back");
    }

    /// With the maximum age off, an idle log signs nothing, however old
    /// its head grows.
    #[tokio::test]
    async fn an_idle_log_without_a_maximum_age_signs_nothing() {
        use merklog_storage::testing::temp_sqlite;
        use merklog_storage::SqliteStore;

        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let t = 1_800_000_000_000;
        let clock = Arc::new(crate::ManualClock::new(t));
        let (handle, _task) = Sequencer::start(
            store.clone(),
            signer,
            clock.clone(),
            SequencerConfig {
                max_head_age: None,
                ..SequencerConfig::default()
            },
            Arc::new(NodeCache::new(0)),
        )
        .await
        .unwrap();
        handle.append(vec![b"one".to_vec()]).await.unwrap();
        clock.advance(std::time::Duration::from_secs(86_400 * 365));
        let again = handle.append(vec![b"one".to_vec()]).await.unwrap();
        assert_eq!(again.tree_head.head.timestamp_ms, t);
        assert_eq!(stored_heads(store.as_ref()).await.len(), 2);
    }

    #[tokio::test]
    async fn events_are_deduplicated_by_event_id() {
        let (handle, store, _dir) = gated().await;
        store.hook.gate.add_permits(1);
        let first = handle
            .append_events(&[
                sealed("a", "x", 1),
                sealed("b", "x", 2),
                sealed("a", "y", 3),
            ])
            .await
            .unwrap();
        assert_eq!(places(&first), [(0, false), (1, false), (0, true)]);
        assert_eq!(first.placements[2].leaf_hash, first.placements[0].leaf_hash);
        store.hook.writes_started.acquire().await.unwrap().forget();
        // In flight: "c"; built on it meanwhile: "c" again and "a" again.
        let handle2 = handle.clone();
        let c = tokio::spawn(async move { handle2.append_events(&[sealed("c", "x", 4)]).await });
        store.hook.writes_started.acquire().await.unwrap().forget();
        let handle3 = handle.clone();
        let again = tokio::spawn(async move {
            handle3
                .append_events(&[
                    sealed("c", "z", 5),
                    sealed("a", "z", 6),
                    sealed("d", "z", 7),
                ])
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        store.hook.gate.add_permits(10);
        let c = c.await.unwrap().unwrap();
        let again = again.await.unwrap().unwrap();
        assert_eq!(places(&c), [(2, false)]);
        assert_eq!(places(&again), [(2, true), (0, true), (3, false)]);
        assert_eq!(again.placements[0].leaf_hash, c.placements[0].leaf_hash);
        assert_proofs_verify(&again, &store).await;
        assert_eq!(store.leaf_count().await.unwrap(), 4);
    }

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

    /// Writes that wait at a gate, so that a test can hold a batch in
    /// flight while later appends arrive, and fail on demand.
    struct Gate {
        gate: Semaphore,
        writes_started: Semaphore,
        fail_next: std::sync::atomic::AtomicUsize,
        /// When set, write k fails before storing when k % 7 == 3, and after
        /// storing (as a lost answer to COMMIT would) when k % 11 == 5.
        flaky: std::sync::atomic::AtomicBool,
        writes: std::sync::atomic::AtomicUsize,
    }

    type GatedStore = HookedStore<merklog_storage::SqliteStore, Gate>;

    impl AppendHook for Gate {
        async fn before(&self, _: &Batch) -> merklog_storage::Result<()> {
            self.writes_started.add_permits(1);
            self.gate.acquire().await.unwrap().forget();
            if self
                .fail_next
                .fetch_update(
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                return Err(injected());
            }
            let k = self
                .writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.flaky.load(std::sync::atomic::Ordering::SeqCst) && k % 7 == 3 {
                return Err(injected());
            }
            Ok(())
        }
        fn after(&self, _: &Batch) -> merklog_storage::Result<()> {
            // The sequencer writes one batch at a time: the write that just
            // passed `before` is the last one counted.
            let k = self.writes.load(std::sync::atomic::Ordering::SeqCst) - 1;
            if self.flaky.load(std::sync::atomic::Ordering::SeqCst) && k % 11 == 5 {
                return Err(injected());
            }
            Ok(())
        }
    }

    fn injected() -> StorageError {
        StorageError::InvalidBatch {
            reason: "injected failure".into(),
        }
    }

    /// The system clock, which once armed tells each time it is read: the
    /// sequencer reads it exactly once per batch it builds (to date the
    /// batch's head), so a test can wait until a batch is built instead of
    /// sleeping and hoping it was.
    struct TellingClock {
        armed: std::sync::atomic::AtomicBool,
        reads: Semaphore,
    }

    impl crate::Clock for TellingClock {
        fn now_ms(&self) -> u64 {
            if self.armed.load(std::sync::atomic::Ordering::SeqCst) {
                self.reads.add_permits(1);
            }
            crate::Clock::now_ms(&crate::SystemClock)
        }
    }

    impl TellingClock {
        /// Waits until the sequencer has built (and signed) one more batch.
        /// A sequencer that waited for the write held at the gate before
        /// building would never get there: that fails here rather than
        /// hanging the test.
        async fn batch_built(&self) {
            tokio::time::timeout(std::time::Duration::from_secs(30), self.reads.acquire())
                .await
                .expect("no batch was built while the write before it was held")
                .unwrap()
                .forget();
        }
    }

    /// A sequencer over a [`GatedStore`] whose gate is shut (the start-up
    /// write of the empty head has passed it).
    async fn gated() -> (SequencerHandle, Arc<GatedStore>, impl Sized) {
        let (handle, store, _clock, dir) = gated_with(SequencerConfig::default()).await;
        (handle, store, dir)
    }

    /// A gated sequencer that closes a batch at 2 entries, without waiting
    /// for more: an append of two entries that arrives while a batch is
    /// written fills the next batch, which is then built at once, while the
    /// write is still held at the gate. Its clock is armed.
    async fn pipelined() -> (
        SequencerHandle,
        Arc<GatedStore>,
        Arc<TellingClock>,
        impl Sized,
    ) {
        gated_with(SequencerConfig {
            max_batch_entries: 2,
            max_batch_delay: std::time::Duration::ZERO,
            ..SequencerConfig::default()
        })
        .await
    }

    async fn gated_with(
        config: SequencerConfig,
    ) -> (
        SequencerHandle,
        Arc<GatedStore>,
        Arc<TellingClock>,
        impl Sized,
    ) {
        let (path, dir) = merklog_storage::testing::temp_sqlite();
        let store = Arc::new(GatedStore {
            inner: merklog_storage::SqliteStore::open_path(&path)
                .await
                .unwrap(),
            hook: Gate {
                // The start-up write of the empty head passes.
                gate: Semaphore::new(1),
                writes_started: Semaphore::new(0),
                fail_next: 0.into(),
                flaky: false.into(),
                writes: 0.into(),
            },
        });
        let clock = Arc::new(TellingClock {
            armed: false.into(),
            reads: Semaphore::new(0),
        });
        let (handle, _task) = Sequencer::start(
            store.clone(),
            LogSigner::generate(&mut rand_core::OsRng),
            clock.clone(),
            config,
            Arc::new(NodeCache::new(1 << 20)),
        )
        .await
        .unwrap();
        store.hook.writes_started.acquire().await.unwrap().forget();
        clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        (handle, store, clock, dir)
    }

    /// Appends `entries` on a task of its own, once the batch before is in
    /// flight at the gate.
    fn append_later(
        handle: &SequencerHandle,
        entries: &[&str],
    ) -> JoinHandle<Result<Committed, ServiceError>> {
        let handle = handle.clone();
        let entries = entries.iter().map(|e| e.as_bytes().to_vec()).collect();
        tokio::spawn(async move { handle.append(entries).await })
    }

    /// Each placement's index and whether it was a duplicate.
    fn places(committed: &Committed) -> Vec<(u64, bool)> {
        committed
            .placements
            .iter()
            .map(|p| (p.index, p.duplicate))
            .collect()
    }

    /// Checks each placement's proof against its head.
    async fn assert_proofs_verify(committed: &Committed, store: &GatedStore) {
        let n = committed.tree_head.head.tree_size;
        let proofs = committed.proofs(store).await.unwrap();
        for (p, proof) in committed.placements.iter().zip(proofs) {
            merklog_merkle::verify_inclusion(
                p.index,
                n,
                &p.leaf_hash,
                &proof,
                &committed.tree_head.head.root_hash,
            )
            .unwrap();
        }
    }

    /// A batch built while the one before it is written, with an entry of
    /// that batch, is stored after it and answers that entry as the
    /// duplicate it is.
    #[tokio::test]
    async fn a_batch_built_during_a_write_sees_that_write_commit() {
        let (handle, store, clock, _dir) = pipelined().await;
        let first = append_later(&handle, &["a", "b"]);
        clock.batch_built().await;
        store.hook.writes_started.acquire().await.unwrap().forget();
        // "a" and "b" are in flight, held at the gate.
        let second = append_later(&handle, &["b", "c"]);
        clock.batch_built().await;
        // Built and signed with nothing committed: on top of the write in
        // flight, which is still held at the gate.
        assert_eq!(store.leaf_count().await.unwrap(), 0);
        store.hook.gate.add_permits(10);
        let first = first.await.unwrap().unwrap();
        let second = second.await.unwrap().unwrap();
        assert_eq!(places(&first), [(0, false), (1, false)]);
        assert_eq!(first.tree_head.head.tree_size, 2);
        assert_eq!(places(&second), [(1, true), (2, false)]);
        assert_eq!(second.tree_head.head.tree_size, 3);
        assert_proofs_verify(&first, &store).await;
        assert_proofs_verify(&second, &store).await;
        assert_eq!(store.leaf_count().await.unwrap(), 3);
    }

    /// When the write in flight fails, its callers get the error and the
    /// batch built on it is rebuilt on the committed tree and stored.
    #[tokio::test]
    async fn a_failed_write_fails_its_callers_only() {
        let (handle, store, clock, _dir) = pipelined().await;
        store
            .hook
            .fail_next
            .store(1, std::sync::atomic::Ordering::SeqCst);
        let first = append_later(&handle, &["a", "b"]);
        clock.batch_built().await;
        store.hook.writes_started.acquire().await.unwrap().forget();
        let second = append_later(&handle, &["b", "c"]);
        // Built on the write in flight, before it fails.
        clock.batch_built().await;
        assert_eq!(store.leaf_count().await.unwrap(), 0);
        store.hook.gate.add_permits(10);
        assert!(first.await.unwrap().is_err());
        let second = second.await.unwrap().unwrap();
        assert_eq!(places(&second), [(0, false), (1, false)]);
        assert_eq!(second.tree_head.head.tree_size, 2);
        assert_proofs_verify(&second, &store).await;
        assert_eq!(store.leaf_count().await.unwrap(), 2);
        // And the log goes on from there.
        let third = handle.append(vec![b"a".to_vec()]).await.unwrap();
        assert_eq!(third.placements[0].index, 2);
        assert_proofs_verify(&third, &store).await;
    }

    /// A batch built while the one before it is written stands on that
    /// batch as prepared; when that one turns out to repeat a stored entry
    /// and is rebuilt smaller, the batch on top is rebuilt too.
    #[tokio::test]
    async fn a_batch_built_on_a_batch_with_a_duplicate_is_rebuilt() {
        let (handle, store, clock, _dir) = pipelined().await;
        store.hook.gate.add_permits(1);
        handle.append(vec![b"a".to_vec()]).await.unwrap();
        clock.batch_built().await;
        store.hook.writes_started.acquire().await.unwrap().forget();
        let first = append_later(&handle, &["a", "x"]);
        clock.batch_built().await;
        store.hook.writes_started.acquire().await.unwrap().forget();
        // ["a", "x"] is held at the gate, prepared as two new leaves.
        let second = append_later(&handle, &["y", "z"]);
        // Built on ["a", "x"] as prepared, before its write was refused.
        clock.batch_built().await;
        assert_eq!(store.leaf_count().await.unwrap(), 1);
        store.hook.gate.add_permits(10);
        let first = first.await.unwrap().unwrap();
        let second = second.await.unwrap().unwrap();
        assert_eq!(places(&first), [(0, true), (1, false)]);
        assert_eq!(places(&second), [(2, false), (3, false)]);
        assert_eq!(second.tree_head.head.tree_size, 4);
        assert_proofs_verify(&second, &store).await;
    }

    /// Many callers append, with entries in common, while writes fail
    /// before and after storing: every answer agrees with the store (each
    /// placed entry is the stored leaf at its index, each proof verifies,
    /// each head is the stored tree of its size), and the store keeps every
    /// leaf hash once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_agree_with_the_store_through_failures() {
        let (handle, store, _dir) = gated().await;
        store
            .hook
            .flaky
            .store(true, std::sync::atomic::Ordering::SeqCst);
        store.hook.gate.add_permits(1 << 20);
        let mut callers = Vec::new();
        for t in 0..16u32 {
            let handle = handle.clone();
            callers.push(tokio::spawn(async move {
                let mut answers = Vec::new();
                for i in 0..30u32 {
                    let entries = vec![
                        format!("shared {}", (t + i) % 25).into_bytes(),
                        format!("own {t} {i}").into_bytes(),
                    ];
                    let answer = handle.append(entries.clone()).await;
                    answers.push((entries, answer));
                }
                answers
            }));
        }
        let mut answers = Vec::new();
        for caller in callers {
            answers.extend(caller.await.unwrap());
        }
        let failed = answers.iter().filter(|(_, a)| a.is_err()).count();
        assert!(failed > 0, "the injected failures were hit");
        assert!(
            failed < answers.len() / 2,
            "{failed} of {} failed",
            answers.len()
        );

        let size = store.leaf_count().await.unwrap();
        let stored = store.entries(0, size).await.unwrap();
        let hashes: Vec<Hash> = stored.iter().map(|e| e.leaf_hash).collect();
        let mut distinct = hashes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), hashes.len(), "a leaf hash is stored twice");
        let root_at = |n: u64| merklog_merkle::merkle_tree_hash(&hashes[..n as usize]);
        for (entries, answer) in &answers {
            let Ok(committed) = answer else { continue };
            let head = &committed.tree_head.head;
            assert!(head.tree_size <= size);
            assert_eq!(head.root_hash, root_at(head.tree_size));
            for (entry, p) in entries.iter().zip(&committed.placements) {
                assert_eq!(&stored[p.index as usize].entry, entry, "leaf {}", p.index);
            }
            assert_proofs_verify(committed, &store).await;
        }
        let latest = handle.latest().head;
        assert_eq!(latest.tree_size, size);
        assert_eq!(latest.root_hash, root_at(size));
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
