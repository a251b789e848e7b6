//! The `merklog.v1.Log` gRPC service: validation of every request, reads
//! from the store, appends through the sequencer.
//!
//! It does not decide who may call it: admission ([`crate::admission`])
//! does, in front of every service on the port, before a request's body is
//! read, and hands an append the caller's name ([`Caller`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use merklog_merkle::{
    consistency_proof_nodes, inclusion_proof_nodes, leaf_hash, Hash, NodeId, ProofNodes,
};
use merklog_proto::v1::leaf_ref::Leaf as LeafRef;
use merklog_proto::v1::{self, get_inclusion_proof_request::Leaf, log_server::Log};
use merklog_proto::{hashes_to_wire, sth_to_wire};
use merklog_sth::{LogId, PublicKey, SignedTreeHead};
use merklog_storage::LogStore;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::admission::Caller;
use crate::clock::{Clock, SystemClock};
use crate::config::Limits;
use crate::leadership::InstanceRole;
use crate::node_cache::{spawn_filler, Filler, NodeCache};
use crate::node_reads::NodeReads;
use crate::sequencer::SequencerHandle;
use crate::status::ServiceError;
use crate::tasks::{TaskWatch, Tasks};

mod events;
pub use events::{ANONYMOUS_SUBMITTER, DEFAULT_MAX_SEARCH_WINDOW};

/// The gRPC service over a store and a sequencer.
pub struct LogService<S> {
    store: Arc<S>,
    role: watch::Receiver<InstanceRole>,
    public_key: PublicKey,
    log_id: LogId,
    limits: Limits,
    node_cache: Arc<NodeCache>,
    _filler: Option<Filler>,
    /// The store reads of concurrent proofs, merged.
    reads: NodeReads,
    /// How long a call may take once its request is read.
    request_timeout: Option<Duration>,
    /// Dates the event ids the log generates.
    clock: Arc<dyn Clock>,
    /// The longest time window of a `SearchEvents` call.
    max_search_window: Duration,
    /// The panics of the reader tasks started here, until `serve` takes it.
    task_watch: Option<TaskWatch>,
}

impl<S: LogStore + Send + Sync + 'static> LogService<S> {
    /// Returns the service of the only instance, appending through
    /// `sequencer`; `public_key` is the key the sequencer signs with. Proofs
    /// share the sequencer's node cache.
    pub fn new(
        store: Arc<S>,
        sequencer: SequencerHandle,
        public_key: PublicKey,
        limits: Limits,
    ) -> Self {
        let node_cache = sequencer.node_cache().clone();
        let (_, role) = watch::channel(InstanceRole::Leader(sequencer));
        Self::with_role(store, role, public_key, limits, node_cache)
    }

    /// Returns the service of an instance whose role may change: `role`
    /// says at each request whether it appends or follows. Proofs take the
    /// tree's upper levels from `node_cache`, which a task started here keeps
    /// filled from the store up to the head `role` serves (a sequencer
    /// sharing the cache fills it first with the batches it commits).
    ///
    /// # Panics
    /// Outside a Tokio runtime: it starts the tasks that fill the cache and
    /// merge the store reads of concurrent proofs.
    pub fn with_role(
        store: Arc<S>,
        role: watch::Receiver<InstanceRole>,
        public_key: PublicKey,
        limits: Limits,
        node_cache: Arc<NodeCache>,
    ) -> Self {
        let log_id = public_key.log_id();
        let (tasks, task_watch) = Tasks::new();
        let filler = spawn_filler(node_cache.clone(), store.clone(), role.clone(), &tasks);
        let reads = NodeReads::start(store.clone(), &tasks);
        LogService {
            store,
            role,
            public_key,
            log_id,
            limits,
            node_cache,
            _filler: filler,
            reads,
            request_timeout: None,
            clock: Arc::new(SystemClock),
            max_search_window: DEFAULT_MAX_SEARCH_WINDOW,
            task_watch: Some(task_watch),
        }
    }

    /// Takes the watch of the reader tasks started here, whose panics
    /// `serve` reports once the service is dropped.
    pub(crate) fn take_task_watch(&mut self) -> Option<TaskWatch> {
        self.task_watch.take()
    }

    /// Ends calls that take longer than `timeout` with DEADLINE_EXCEEDED.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// Dates the event ids it generates by `clock` (the system clock
    /// otherwise).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Refuses searches whose time window is longer than `window`
    /// ([`DEFAULT_MAX_SEARCH_WINDOW`] otherwise).
    #[must_use]
    pub fn with_max_search_window(mut self, window: Duration) -> Self {
        self.max_search_window = window;
        self
    }

    /// Runs `call` within the request timeout. tonic's own timeout answers
    /// CANCELLED "Timeout expired", which tells a caller neither that the
    /// server gave up nor, for an append, what became of its entries.
    /// Runs an append under the call deadline and counts its outcome: what
    /// `Append` and `AppendEvents` share.
    async fn answer_append<T>(
        &self,
        method: &str,
        append: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let response = self.within_deadline(method, append).await;
        crate::metrics::append_call(&response);
        response
    }

    async fn within_deadline<T>(
        &self,
        method: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let Some(limit) = self.request_timeout else {
            return call.await;
        };
        tokio::time::timeout(limit, call).await.unwrap_or_else(|_| {
            let mut message = format!(
                "{method} took longer than the server's request timeout of {} ms",
                limit.as_millis()
            );
            if method == "Append" || method == "AppendEvents" {
                message = format!("{message}; {}", crate::status::APPEND_AGAIN_IS_SAFE);
            }
            Err(Status::deadline_exceeded(message))
        })
    }

    fn wire_sth(&self, sth: &SignedTreeHead) -> v1::SignedTreeHead {
        sth_to_wire(sth, &self.log_id)
    }

    /// The latest signed tree head this instance serves.
    fn latest(&self) -> Result<SignedTreeHead, ServiceError> {
        self.role.borrow().latest().ok_or_else(|| {
            ServiceError::Unavailable(
                "the log has no signed tree head yet: no leader has started it".into(),
            )
        })
    }

    /// Resolves a requested tree size (0 = latest) against the latest head;
    /// returns the size and, when the log signed a head at that size, the head.
    async fn resolve_size(
        &self,
        requested: u64,
        field: &str,
    ) -> Result<(u64, Option<SignedTreeHead>), ServiceError> {
        let latest = self.latest()?;
        let size = latest.head.tree_size;
        if requested == 0 || requested == size {
            return Ok((size, Some(latest)));
        }
        if requested > size {
            return Err(ServiceError::out_of_range(
                field,
                format!("tree size {requested} is larger than the log's latest signed size {size}"),
            ));
        }
        let head = self.store.tree_head_at_size(requested).await?;
        // A stored head is served only if this log signed it: a head slipped
        // into the table behind the log's back is reported, not passed on.
        if let Some(h) = &head {
            self.public_key.verify(h).map_err(|e| {
                ServiceError::DataLoss(format!(
                    "the stored head at size {requested} is not valid: {e}"
                ))
            })?;
        }
        Ok((requested, head))
    }

    /// Reads leaves `[start, end)` and checks each against its leaf hash, so
    /// an entry changed in the database is reported instead of served.
    async fn checked_entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<merklog_storage::Entry>, ServiceError> {
        let entries = self.store.entries(start, end).await?;
        // Every index below the signed size must be stored: a gap is damage,
        // not a short page.
        let gap = entries
            .iter()
            .zip(start..)
            .find_map(|(e, index)| (e.index != index).then_some(index));
        let short = start + entries.len() as u64;
        if let Some(missing) = gap.or((short < end).then_some(short)) {
            return Err(ServiceError::DataLoss(format!(
                "leaf {missing} is missing from the store"
            )));
        }
        if let Some(bad) = entries.iter().find(|e| leaf_hash(&e.entry) != e.leaf_hash) {
            return Err(ServiceError::DataLoss(format!(
                "the stored entry at index {} does not match its leaf hash",
                bad.index
            )));
        }
        Ok(entries)
    }

    /// Reads the hashes of `ids` (complete subtrees), in order, taking those
    /// the node cache holds from it and the rest from the store, in one
    /// query with the reads of other proofs waiting at the same time.
    async fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ServiceError> {
        let mut hashes = self.node_cache.get_many(ids);
        let missing: Vec<NodeId> = ids
            .iter()
            .zip(&hashes)
            .filter(|(_, h)| h.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let mut read = self.reads.node_hashes(missing).await?.into_iter();
            for slot in hashes.iter_mut().filter(|h| h.is_none()) {
                *slot = Some(read.next().ok_or_else(|| {
                    ServiceError::DataLoss("the store returned fewer nodes than asked".into())
                })?);
            }
        }
        Ok(hashes.into_iter().flatten().collect())
    }

    async fn fetch_proof(&self, plan: &ProofNodes) -> Result<Vec<Hash>, ServiceError> {
        let hashes = self.node_hashes(plan.ids()).await?;
        plan.assemble(&hashes)
            .map_err(|e| ServiceError::DataLoss(e.to_string()))
    }

    /// Finds the index of each leaf in `wanted` in the tree of `size`, with
    /// its leaf hash when the caller gave that: one store query for all
    /// those given by hash. `leaf_field(i)` names the `i`-th leaf in errors
    /// (e.g. `leaves[2]`, or `` for the one leaf of a request).
    async fn locate(
        &self,
        wanted: &[WantedLeaf],
        leaf_field: impl Fn(usize) -> String,
        size: u64,
    ) -> Result<Vec<(u64, Option<Hash>)>, ServiceError> {
        let field = |i: usize, name: &str| {
            let leaf = leaf_field(i);
            if leaf.is_empty() {
                name.to_owned()
            } else {
                format!("{leaf}.{name}")
            }
        };
        let by_hash: Vec<Hash> = wanted
            .iter()
            .filter_map(|w| match w {
                WantedLeaf::Hash(hash) => Some(*hash),
                WantedLeaf::Index(_) => None,
            })
            .collect();
        let found: HashMap<Hash, u64> = if by_hash.is_empty() {
            HashMap::new()
        } else {
            self.store
                .find_by_leaf_hash(&by_hash)
                .await?
                .into_iter()
                .collect()
        };
        wanted
            .iter()
            .enumerate()
            .map(|(i, w)| match *w {
                WantedLeaf::Index(index) if index >= size => Err(ServiceError::out_of_range(
                    field(i, "leaf_index"),
                    format!("leaf index {index} is not below tree size {size}"),
                )),
                WantedLeaf::Index(index) => Ok((index, None)),
                WantedLeaf::Hash(hash) => match found.get(&hash) {
                    None => Err(ServiceError::NotFound(format!(
                        "{}: no entry with leaf hash {hash} is in the log",
                        field(i, "leaf_hash")
                    ))),
                    Some(&index) if index >= size => Err(ServiceError::out_of_range(
                        field(i, "leaf_hash"),
                        format!(
                            "the entry with leaf hash {hash} is at index {index}, \
                             outside tree size {size}"
                        ),
                    )),
                    Some(&index) => Ok((index, Some(hash))),
                },
            })
            .collect()
    }

    /// Builds the inclusion proofs of `leaves` (each an index, with its leaf
    /// hash when known) in the tree of `size`, reading every node they need
    /// that the cache lacks in one query, the unknown leaf hashes included.
    /// The proofs carry no tree head.
    async fn inclusion_proofs(
        &self,
        leaves: &[(u64, Option<Hash>)],
        size: u64,
    ) -> Result<Vec<v1::InclusionProof>, ServiceError> {
        let mut plans = Vec::with_capacity(leaves.len());
        let mut ids = Vec::new();
        for &(index, known) in leaves {
            let plan = inclusion_proof_nodes(index, size)
                .map_err(|e| ServiceError::out_of_range("leaf_index", e.to_string()))?;
            if known.is_none() {
                ids.push(NodeId::leaf(index));
            }
            ids.extend_from_slice(plan.ids());
            plans.push(plan);
        }
        let hashes = self.node_hashes(&ids).await?;
        let mut rest = &hashes[..];
        leaves
            .iter()
            .zip(&plans)
            .map(|(&(index, known), plan)| {
                let leaf_hash = match known {
                    Some(hash) => hash,
                    None => {
                        let (first, tail) = rest.split_first().expect("one hash per id");
                        rest = tail;
                        *first
                    }
                };
                let (nodes, tail) = rest.split_at(plan.ids().len());
                rest = tail;
                let proof = plan
                    .assemble(nodes)
                    .map_err(|e| ServiceError::DataLoss(e.to_string()))?;
                Ok(v1::InclusionProof {
                    leaf_index: index,
                    tree_size: size,
                    leaf_hash: leaf_hash.0.to_vec(),
                    proof: hashes_to_wire(&proof),
                    tree_head: None,
                })
            })
            .collect()
    }

    /// The inclusion proof of leaf `index` (with its leaf hash, when known)
    /// in the tree of `size`, carrying `head`.
    async fn inclusion_proof(
        &self,
        index: u64,
        leaf_hash: Option<Hash>,
        size: u64,
        head: Option<SignedTreeHead>,
    ) -> Result<v1::InclusionProof, ServiceError> {
        let mut proofs = self.inclusion_proofs(&[(index, leaf_hash)], size).await?;
        let mut proof = proofs.pop().expect("one proof per leaf");
        proof.tree_head = head.map(|h| self.wire_sth(&h));
        Ok(proof)
    }

    fn check_entries(&self, entries: &[Vec<u8>]) -> Result<(), ServiceError> {
        let limits = &self.limits;
        if entries.is_empty() {
            return Err(ServiceError::invalid(
                "entries",
                "at least one entry is required",
            ));
        }
        if entries.len() > limits.max_entries_per_append {
            return Err(ServiceError::invalid(
                "entries",
                format!(
                    "{} entries in one call; at most {} are allowed",
                    entries.len(),
                    limits.max_entries_per_append
                ),
            ));
        }
        for (i, e) in entries.iter().enumerate() {
            if e.is_empty() {
                return Err(ServiceError::invalid(
                    format!("entries[{i}]"),
                    "entry is empty",
                ));
            }
            if merklog_event::is_event_entry(e) {
                return Err(ServiceError::invalid(
                    format!("entries[{i}]"),
                    "starts with \"merklog.event.v1\\n\", the prefix reserved for event leaves: \
                     append events with AppendEvents",
                ));
            }
            if e.len() > limits.max_entry_bytes {
                return Err(ServiceError::invalid(
                    format!("entries[{i}]"),
                    format!(
                        "entry is {} bytes; at most {} are allowed",
                        e.len(),
                        limits.max_entry_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn append_entries(
        &self,
        req: v1::AppendRequest,
    ) -> Result<v1::AppendResponse, ServiceError> {
        self.check_entries(&req.entries)?;
        // Cloned out of the watch: a borrow must not be held across awaits.
        let sequencer = self.role.borrow().sequencer()?;
        let committed = sequencer.append(req.entries).await?;
        let proofs = committed
            .proofs(self.store.as_ref())
            .await
            .map_err(|e| match e {
                ServiceError::Unavailable(m) => ServiceError::Unavailable(format!(
                    "{m}; the entries were stored (tree size {}) but their proofs could not be \
                     read: appending them again returns their indexes and proofs",
                    committed.tree_head.head.tree_size
                )),
                other => other,
            })?;
        Ok(v1::AppendResponse {
            entries: committed
                .placements
                .iter()
                .zip(proofs)
                .map(|(p, proof)| v1::AppendedEntry {
                    leaf_index: p.index,
                    leaf_hash: p.leaf_hash.0.to_vec(),
                    inclusion_proof: hashes_to_wire(&proof),
                    duplicate: p.duplicate,
                })
                .collect(),
            tree_head: Some(self.wire_sth(&committed.tree_head)),
        })
    }

    async fn inclusion(
        &self,
        req: v1::GetInclusionProofRequest,
    ) -> Result<v1::InclusionProof, ServiceError> {
        let wanted = match req.leaf {
            None => None,
            Some(Leaf::LeafIndex(index)) => Some(WantedLeaf::Index(index)),
            Some(Leaf::LeafHash(bytes)) => Some(WantedLeaf::from_wire_hash(&bytes, "leaf_hash")?),
        }
        .ok_or_else(|| ServiceError::invalid("leaf", "give either leaf_index or leaf_hash"))?;
        let (size, head) = self.resolve_size(req.tree_size, "tree_size").await?;
        let found = self.locate(&[wanted], |_| String::new(), size).await?;
        let (index, leaf_hash) = found[0];
        self.inclusion_proof(index, leaf_hash, size, head).await
    }

    async fn inclusions(
        &self,
        req: v1::GetInclusionProofsRequest,
    ) -> Result<v1::InclusionProofs, ServiceError> {
        let max = self.limits.max_page_size;
        if req.leaves.is_empty() {
            return Err(ServiceError::invalid("leaves", "give at least one leaf"));
        }
        if req.leaves.len() > max {
            return Err(ServiceError::invalid(
                "leaves",
                format!("{} leaves asked; at most {max} per call", req.leaves.len()),
            ));
        }
        let wanted = req
            .leaves
            .iter()
            .enumerate()
            .map(|(i, leaf)| match &leaf.leaf {
                None => Err(ServiceError::invalid(
                    format!("leaves[{i}]"),
                    "give either leaf_index or leaf_hash",
                )),
                Some(LeafRef::LeafIndex(index)) => Ok(WantedLeaf::Index(*index)),
                Some(LeafRef::LeafHash(bytes)) => {
                    WantedLeaf::from_wire_hash(bytes, &format!("leaves[{i}].leaf_hash"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (size, head) = self.resolve_size(req.tree_size, "tree_size").await?;
        let found = self
            .locate(&wanted, |i| format!("leaves[{i}]"), size)
            .await?;
        Ok(v1::InclusionProofs {
            proofs: self.inclusion_proofs(&found, size).await?,
            tree_head: head.map(|h| self.wire_sth(&h)),
        })
    }

    async fn consistency(
        &self,
        req: v1::GetConsistencyProofRequest,
    ) -> Result<v1::ConsistencyProof, ServiceError> {
        let first = req.first_size;
        if req.second_size != 0 && first > req.second_size {
            return Err(ServiceError::invalid(
                "first_size",
                format!(
                    "first size {first} is larger than second size {}",
                    req.second_size
                ),
            ));
        }
        let (second, head) = self.resolve_size(req.second_size, "second_size").await?;
        if first > second {
            // second_size 0: the latest head, which first_size is past.
            return Err(ServiceError::out_of_range(
                "first_size",
                format!("first size {first} is larger than the log's latest signed size {second}"),
            ));
        }
        let plan = consistency_proof_nodes(first, second)
            .map_err(|e| ServiceError::invalid("first_size", e.to_string()))?;
        let proof = self.fetch_proof(&plan).await?;
        Ok(v1::ConsistencyProof {
            first_size: first,
            second_size: second,
            proof: hashes_to_wire(&proof),
            tree_head: head.map(|h| self.wire_sth(&h)),
        })
    }

    async fn entries_page(
        &self,
        req: v1::GetEntriesRequest,
    ) -> Result<v1::GetEntriesResponse, ServiceError> {
        let (start, end) = (req.start, req.end);
        if end <= start {
            return Err(ServiceError::invalid(
                "end",
                format!("end {end} must be greater than start {start}"),
            ));
        }
        let size = self.latest()?.head.tree_size;
        if start >= size {
            return Err(ServiceError::out_of_range(
                "start",
                format!("start {start} is not below the tree size {size}"),
            ));
        }
        // A page is cut at the page size and at the latest signed size, as
        // the proto says, and at max_response_bytes of entry data: the
        // caller asks again from where it ended. The store is read in
        // chunks that fit what is left of the bytes even if every entry is
        // as large as allowed, so a page never reads more than the bound
        // (or one entry) into memory.
        let max = self.limits.max_page_size as u64;
        let end = end.min(size).min(start.saturating_add(max));
        let largest = self.limits.max_entry_bytes.max(1) as u64;
        let mut room = self.limits.max_response_bytes;
        let mut entries = Vec::new();
        let mut next = start;
        while next < end {
            let fit = (room as u64 / largest).min(end - next);
            let chunk = if entries.is_empty() { fit.max(1) } else { fit };
            if chunk == 0 {
                break;
            }
            let read = self.checked_entries(next, next + chunk).await?;
            room = room.saturating_sub(read.iter().map(|e| e.entry.len()).sum());
            next += chunk;
            entries.extend(read);
        }
        Ok(v1::GetEntriesResponse {
            entries: entries.into_iter().map(entry_to_wire).collect(),
        })
    }

    async fn entry_and_proof(
        &self,
        req: v1::GetEntryAndProofRequest,
    ) -> Result<v1::EntryAndProof, ServiceError> {
        let (size, head) = self.resolve_size(req.tree_size, "tree_size").await?;
        let index = req.leaf_index;
        if index >= size {
            return Err(ServiceError::out_of_range(
                "leaf_index",
                format!("leaf index {index} is not below tree size {size}"),
            ));
        }
        let mut entries = self.checked_entries(index, index + 1).await?;
        let entry = entries.pop().ok_or_else(|| {
            ServiceError::DataLoss(format!("leaf {index} is missing from the store"))
        })?;
        let proof = self
            .inclusion_proof(index, Some(entry.leaf_hash), size, head)
            .await?;
        Ok(v1::EntryAndProof {
            entry: Some(entry_to_wire(entry)),
            proof: Some(proof),
        })
    }
}

impl<S: LogStore + Send + Sync + 'static> LogService<S> {
    /// A page of signed heads in (size, timestamp) order, each checked with
    /// the log's key so that a head slipped into the table is reported,
    /// not served.
    async fn tree_heads_page(
        &self,
        req: v1::ListTreeHeadsRequest,
    ) -> Result<v1::ListTreeHeadsResponse, ServiceError> {
        use v1::list_tree_heads_request::Start;
        let max = self.limits.max_page_size.max(1);
        let limit = match req.page_size as usize {
            0 => max,
            n => n.min(max),
        };
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let mut heads = Vec::with_capacity(limit as usize);
        let after = match req.start {
            None => None,
            Some(Start::After(p)) => Some(merklog_sth::TreeHead {
                tree_size: p.tree_size,
                timestamp_ms: p.timestamp_ms,
                root_hash: Hash::default(),
            }),
            Some(Start::LatestBeforeMs(ms)) => match self.store.tree_head_before(ms).await? {
                None => None,
                Some(first) => {
                    let position = first.head;
                    heads.push(first);
                    Some(position)
                }
            },
        };
        let rest = limit.saturating_sub(heads.len() as u32);
        if rest > 0 {
            heads.extend(self.store.tree_heads(after, rest).await?);
        }
        for h in &heads {
            self.public_key.verify(h).map_err(|e| {
                ServiceError::DataLoss(format!(
                    "the stored head of size {} dated {} is not valid: {e}",
                    h.head.tree_size, h.head.timestamp_ms
                ))
            })?;
        }
        Ok(v1::ListTreeHeadsResponse {
            tree_heads: heads.iter().map(|h| self.wire_sth(h)).collect(),
        })
    }
}

/// A leaf a caller asked to prove.
#[derive(Debug, Clone, Copy)]
enum WantedLeaf {
    Index(u64),
    Hash(Hash),
}

impl WantedLeaf {
    fn from_wire_hash(bytes: &[u8], field: &str) -> Result<Self, ServiceError> {
        Hash::from_slice(bytes).map(WantedLeaf::Hash).map_err(|_| {
            ServiceError::invalid(
                field,
                format!("a leaf hash is 32 bytes, got {}", bytes.len()),
            )
        })
    }
}

/// The label of a gRPC code in metrics.
fn entry_to_wire(e: merklog_storage::Entry) -> v1::Entry {
    v1::Entry {
        leaf_index: e.index,
        leaf_hash: e.leaf_hash.0.to_vec(),
        data: e.entry,
        integrated_ms: e.integrated_ms,
    }
}

/// Writes the access line of a granted append. With access rules, each
/// granted append is audited by client name. Without them every caller is
/// anonymous and the line would say nothing the log itself does not: it
/// costs a write per append at thousands per second, so it is kept for
/// debugging.
/// The authenticated client's name (if any) and the peer address of a call.
fn caller_and_peer<T>(request: &Request<T>) -> (Option<String>, Option<std::net::SocketAddr>) {
    let client = request
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.0.clone());
    (client, request.remote_addr())
}

fn log_append_granted(
    client: Option<&str>,
    peer: Option<std::net::SocketAddr>,
    method: &'static str,
    entries: usize,
    tree_size: u64,
) {
    match client {
        Some(name) => tracing::info!(
            target: "merklog::access",
            client = %name, peer = ?peer, method, entries, tree_size,
            "append granted"
        ),
        None => tracing::debug!(
            target: "merklog::access",
            client = "anonymous", peer = ?peer, method, entries, tree_size,
            "append granted"
        ),
    }
}

#[tonic::async_trait]
impl<S: LogStore + Send + Sync + 'static> Log for LogService<S> {
    async fn append(
        &self,
        request: Request<v1::AppendRequest>,
    ) -> Result<Response<v1::AppendResponse>, Status> {
        let (client, peer) = caller_and_peer(&request);
        let req = request.into_inner();
        let entries = req.entries.len();
        let append = async { self.append_entries(req).await.map_err(Status::from) };
        let response = self.answer_append("Append", append).await?;
        let tree_size = response.tree_head.as_ref().map_or(0, |h| h.tree_size);
        log_append_granted(client.as_deref(), peer, "Append", entries, tree_size);
        Ok(Response::new(response))
    }

    async fn get_signed_tree_head(
        &self,
        _request: Request<v1::GetSignedTreeHeadRequest>,
    ) -> Result<Response<v1::SignedTreeHead>, Status> {
        Ok(Response::new(self.wire_sth(&self.latest()?)))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        let answer = self
            .within_deadline("GetInclusionProof", async {
                Ok(self.inclusion(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_inclusion_proofs(
        &self,
        request: Request<v1::GetInclusionProofsRequest>,
    ) -> Result<Response<v1::InclusionProofs>, Status> {
        let answer = self
            .within_deadline("GetInclusionProofs", async {
                Ok(self.inclusions(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        let answer = self
            .within_deadline("GetConsistencyProof", async {
                Ok(self.consistency(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_entries(
        &self,
        request: Request<v1::GetEntriesRequest>,
    ) -> Result<Response<v1::GetEntriesResponse>, Status> {
        let answer = self
            .within_deadline("GetEntries", async {
                Ok(self.entries_page(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_entry_and_proof(
        &self,
        request: Request<v1::GetEntryAndProofRequest>,
    ) -> Result<Response<v1::EntryAndProof>, Status> {
        let answer = self
            .within_deadline("GetEntryAndProof", async {
                Ok(self.entry_and_proof(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn get_log_info(
        &self,
        _request: Request<v1::GetLogInfoRequest>,
    ) -> Result<Response<v1::LogInfo>, Status> {
        Ok(Response::new(v1::LogInfo {
            public_key_der: self.public_key.der().to_vec(),
            public_key_pem: self.public_key.pem(),
            log_id: self.log_id.0.to_vec(),
            hash_algorithm: "SHA-256".into(),
            signature_algorithm:
                "ECDSA P-256 with SHA-256, DER signature over RFC 6962 TreeHeadSignature".into(),
            max_entry_bytes: self.limits.max_entry_bytes as u64,
            max_entries_per_append: self.limits.max_entries_per_append as u32,
            max_page_size: self.limits.max_page_size as u32,
            max_request_bytes: self.limits.max_request_bytes as u64,
            max_events_per_append: self.max_events_per_append() as u32,
            max_events_page_size: self.max_events_page_size(),
            max_search_window_seconds: self.max_search_window.as_secs(),
        }))
    }

    async fn append_events(
        &self,
        request: Request<v1::AppendEventsRequest>,
    ) -> Result<Response<v1::AppendEventsResponse>, Status> {
        let (client, peer) = caller_and_peer(&request);
        let req = request.into_inner();
        let events = req.events.len();
        let submitted_by = client.as_deref().unwrap_or(ANONYMOUS_SUBMITTER);
        let append = async {
            self.append_event_batch(req, submitted_by)
                .await
                .map_err(Status::from)
        };
        let response = self.answer_append("AppendEvents", append).await?;
        let tree_size = response.tree_head.as_ref().map_or(0, |h| h.tree_size);
        log_append_granted(client.as_deref(), peer, "AppendEvents", events, tree_size);
        Ok(Response::new(response))
    }

    async fn search_events(
        &self,
        request: Request<v1::SearchEventsRequest>,
    ) -> Result<Response<v1::SearchEventsResponse>, Status> {
        let answer = self
            .within_deadline("SearchEvents", async {
                Ok(self.search_event_page(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }

    async fn list_tree_heads(
        &self,
        request: Request<v1::ListTreeHeadsRequest>,
    ) -> Result<Response<v1::ListTreeHeadsResponse>, Status> {
        let answer = self
            .within_deadline("ListTreeHeads", async {
                Ok(self.tree_heads_page(request.into_inner()).await?)
            })
            .await?;
        Ok(Response::new(answer))
    }
}
