//! A lying log: a `merklog.v1.Log` server on 127.0.0.1 that forwards every
//! call to an honest log and alters the answer as the chosen [`Lie`] says,
//! so that the verifying client can be shown to refuse each lie.
//!
//! The liar holds the honest log's signing key: a lie that a client must
//! catch by something other than the signature (a head dated in the future,
//! a forked root, a rollback) has to be validly signed, or the signature
//! check would catch it first and the test would prove nothing.
//!
//! This file depends only on crates outside this package, because the
//! `merklog` binary's tests include it by path (a test of the binary's exit
//! code and stderr can only live in the package that builds it).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use merklog_merkle::leaf_hash;
use merklog_proto::v1::{
    self,
    log_client::LogClient,
    log_server::{Log, LogServer},
};
use merklog_proto::{sth_from_wire, sth_to_wire};
use merklog_sth::{LogSigner, TreeHead};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// How far ahead [`Lie::FutureHead`] dates a head: well past the client's
/// default allowed skew of 300 s.
pub const FUTURE_BY_MS: u64 = 3_600_000;

/// What the liar does to the honest log's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// Nothing: every answer is forwarded as it came.
    None,
    /// Flips a bit of every inclusion proof (the first hash; an empty proof
    /// gets one hash of zeros).
    BadInclusionProof,
    /// Answers for leaf `k` with the proof of its neighbour (`k + 1`, or
    /// `k - 1` for the last leaf), keeping `k`'s index and leaf hash.
    NeighbourProof,
    /// Answers for the neighbour instead of the leaf asked: its index, leaf
    /// hash and proof; entries are numbered one higher than they are; an
    /// append receipt names the neighbour's index and proof.
    NeighbourAnswer,
    /// Signs every head with another key and gives that key's log ID; the
    /// log info describes that key.
    ForeignKey,
    /// Signs every head with another key but keeps the pinned log's ID.
    ForgedSignature,
    /// Keeps every head's signature but gives another log's ID, in the log
    /// info too.
    ForeignLogId,
    /// Flips a bit of every consistency proof.
    BadConsistencyProof,
    /// Serves entries whose bytes were changed, with their true leaf hash.
    TamperedEntry,
    /// Serves other entries than the log holds, each with the leaf hash of
    /// its new bytes (self-consistent, but not what the log signed); an
    /// append receipt names such a leaf hash.
    SubstitutedEntry,
    /// Signs every head with the log's key, dated [`FUTURE_BY_MS`] ahead.
    FutureHead,
    /// Signs every head with the log's key, dated 1 ms after the epoch
    /// (before any head the log really signed).
    BackDatedHead,
    /// Answers the latest head (and an append's receipt head) with the
    /// log's own, validly signed head at this older size.
    Rollback(u64),
    /// Signs every head with the log's key over another root: a fork.
    Fork,
    /// Forwards this many `Append` calls from the time it is told, then
    /// answers every later one UNAVAILABLE without forwarding it (the log
    /// went away part-way through a client's calls).
    FailAppendsAfter(u32),
}

/// A lying log running in this process until [`LyingLog::stop`] or drop.
pub struct LyingLog {
    pub addr: SocketAddr,
    lie: Arc<Mutex<Lie>>,
    /// `Append` calls since the lie was told.
    appends: Arc<AtomicU32>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl LyingLog {
    /// Starts a liar in front of the honest log at `upstream` (a URL),
    /// whose signing key is `signer`, telling no lie yet.
    ///
    /// # Errors
    /// When the port cannot be bound or `upstream` cannot be reached.
    pub async fn start(upstream: &str, signer: LogSigner) -> anyhow::Result<Self> {
        let upstream = LogClient::connect(upstream.to_owned()).await?;
        let lie = Arc::new(Mutex::new(Lie::None));
        let appends = Arc::new(AtomicU32::new(0));
        let liar = Liar {
            upstream,
            signer,
            stranger: LogSigner::generate(&mut rand_core::OsRng),
            lie: lie.clone(),
            appends: appends.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LogServer::new(liar))
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
                    let _ = stopped.await;
                }),
        );
        Ok(LyingLog {
            addr,
            lie,
            appends,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Returns the liar's URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tells `lie` from the next answer on.
    pub fn tell(&self, lie: Lie) {
        let mut told = self.lie.lock().unwrap_or_else(|e| e.into_inner());
        self.appends.store(0, Ordering::SeqCst);
        *told = lie;
    }

    /// Stops the liar and returns how its server ended.
    ///
    /// # Errors
    /// A transport error, or a panic in the server task.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => Ok(task.await??),
            None => Ok(()),
        }
    }
}

impl Drop for LyingLog {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Liar {
    upstream: LogClient<Channel>,
    /// The honest log's key, for lies that must be validly signed.
    signer: LogSigner,
    /// Another key, for lies about who signed.
    stranger: LogSigner,
    lie: Arc<Mutex<Lie>>,
    appends: Arc<AtomicU32>,
}

impl Liar {
    fn lie(&self) -> Lie {
        *self.lie.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn rpc(&self) -> LogClient<Channel> {
        self.upstream.clone()
    }

    /// Alters a head the log signed, as the lie says.
    fn head(&self, lie: Lie, wire: &mut v1::SignedTreeHead) -> Result<(), Status> {
        let sth = sth_from_wire(wire, "tree_head").map_err(|e| Status::internal(e.to_string()))?;
        let ours = self.signer.public_key().log_id();
        let resign = |head: TreeHead| sth_to_wire(&self.signer.sign(head), &ours);
        match lie {
            Lie::ForeignKey => {
                *wire = sth_to_wire(
                    &self.stranger.sign(sth.head),
                    &self.stranger.public_key().log_id(),
                );
            }
            Lie::ForgedSignature => wire.signature = self.stranger.sign(sth.head).signature,
            Lie::ForeignLogId => wire.log_id = self.stranger.public_key().log_id().0.to_vec(),
            Lie::FutureHead => {
                *wire = resign(TreeHead {
                    timestamp_ms: now_ms() + FUTURE_BY_MS,
                    ..sth.head
                });
            }
            Lie::BackDatedHead => {
                *wire = resign(TreeHead {
                    timestamp_ms: 1,
                    ..sth.head
                });
            }
            Lie::Fork => {
                let mut root = sth.head.root_hash;
                root.0[0] ^= 1;
                *wire = resign(TreeHead {
                    root_hash: root,
                    ..sth.head
                });
            }
            _ => {}
        }
        Ok(())
    }

    fn opt_head(&self, lie: Lie, wire: &mut Option<v1::SignedTreeHead>) -> Result<(), Status> {
        if let Some(wire) = wire {
            self.head(lie, wire)?;
        }
        Ok(())
    }

    /// The log's own signed head at `size`.
    async fn head_at(&self, size: u64) -> Result<v1::SignedTreeHead, Status> {
        self.rpc()
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                first_size: size,
                second_size: size,
            })
            .await?
            .into_inner()
            .tree_head
            .ok_or_else(|| Status::internal(format!("the honest log has no head at {size}")))
    }

    /// The honest proof of leaf `index` in the tree of `tree_size`.
    async fn proof_of(&self, index: u64, tree_size: u64) -> Result<v1::InclusionProof, Status> {
        Ok(self
            .rpc()
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(index)),
                tree_size,
            })
            .await?
            .into_inner())
    }

    /// Alters one inclusion proof: its hashes, or what it is the proof of.
    async fn inclusion(&self, lie: Lie, proof: &mut v1::InclusionProof) -> Result<(), Status> {
        match lie {
            Lie::BadInclusionProof => flip(&mut proof.proof),
            Lie::NeighbourProof => {
                let other = neighbour(proof.leaf_index, proof.tree_size);
                proof.proof = self.proof_of(other, proof.tree_size).await?.proof;
            }
            Lie::NeighbourAnswer => {
                let other = neighbour(proof.leaf_index, proof.tree_size);
                let head = proof.tree_head.take();
                *proof = self.proof_of(other, proof.tree_size).await?;
                proof.tree_head = head;
            }
            _ => {}
        }
        self.opt_head(lie, &mut proof.tree_head)
    }

    fn entry(lie: Lie, entry: &mut v1::Entry) {
        match lie {
            Lie::TamperedEntry => entry.data.push(b'!'),
            Lie::SubstitutedEntry => {
                entry.data.splice(0..0, b"substituted ".iter().copied());
                entry.leaf_hash = leaf_hash(&entry.data).0.to_vec();
            }
            Lie::NeighbourAnswer => entry.leaf_index += 1,
            _ => {}
        }
    }
}

/// Flips a bit of the first hash of `proof` (or makes a one-hash proof of
/// an empty one).
fn flip(proof: &mut Vec<Vec<u8>>) {
    match proof.first_mut().and_then(|h| h.first_mut()) {
        Some(byte) => *byte ^= 1,
        None => proof.push(vec![0; 32]),
    }
}

/// Another leaf of the tree of `tree_size` (which must hold two).
fn neighbour(index: u64, tree_size: u64) -> u64 {
    if index + 1 < tree_size {
        index + 1
    } else {
        index.saturating_sub(1)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[tonic::async_trait]
impl Log for Liar {
    // The event and head-listing calls are passed through with only the
    // head lies applied: the lies these tests tell are about proofs and
    // heads, which the event and export tests cover on their own.
    async fn append_events(
        &self,
        request: Request<v1::AppendEventsRequest>,
    ) -> Result<Response<v1::AppendEventsResponse>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .append_events(request.into_inner())
            .await?
            .into_inner();
        self.opt_head(lie, &mut reply.tree_head)?;
        Ok(Response::new(reply))
    }

    async fn search_events(
        &self,
        request: Request<v1::SearchEventsRequest>,
    ) -> Result<Response<v1::SearchEventsResponse>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .search_events(request.into_inner())
            .await?
            .into_inner();
        self.opt_head(lie, &mut reply.tree_head)?;
        Ok(Response::new(reply))
    }

    async fn list_tree_heads(
        &self,
        request: Request<v1::ListTreeHeadsRequest>,
    ) -> Result<Response<v1::ListTreeHeadsResponse>, Status> {
        Ok(Response::new(
            self.rpc()
                .list_tree_heads(request.into_inner())
                .await?
                .into_inner(),
        ))
    }

    async fn append(
        &self,
        request: Request<v1::AppendRequest>,
    ) -> Result<Response<v1::AppendResponse>, Status> {
        let lie = self.lie();
        let call = self.appends.fetch_add(1, Ordering::SeqCst);
        if let Lie::FailAppendsAfter(n) = lie {
            if call >= n {
                return Err(Status::unavailable("the log went away (a lie)"));
            }
        }
        let mut reply = self.rpc().append(request.into_inner()).await?.into_inner();
        let tree_size = reply.tree_head.as_ref().map_or(0, |h| h.tree_size);
        for e in &mut reply.entries {
            match lie {
                Lie::BadInclusionProof => flip(&mut e.inclusion_proof),
                Lie::NeighbourProof | Lie::NeighbourAnswer => {
                    let other = neighbour(e.leaf_index, tree_size);
                    e.inclusion_proof = self.proof_of(other, tree_size).await?.proof;
                    if lie == Lie::NeighbourAnswer {
                        e.leaf_index = other;
                    }
                }
                Lie::SubstitutedEntry => e.leaf_hash = leaf_hash(b"substituted").0.to_vec(),
                _ => {}
            }
        }
        if let Lie::Rollback(size) = lie {
            reply.tree_head = Some(self.head_at(size).await?);
        }
        self.opt_head(lie, &mut reply.tree_head)?;
        Ok(Response::new(reply))
    }

    async fn get_signed_tree_head(
        &self,
        request: Request<v1::GetSignedTreeHeadRequest>,
    ) -> Result<Response<v1::SignedTreeHead>, Status> {
        let lie = self.lie();
        let mut head = match lie {
            Lie::Rollback(size) => self.head_at(size).await?,
            _ => self
                .rpc()
                .get_signed_tree_head(request.into_inner())
                .await?
                .into_inner(),
        };
        self.head(lie, &mut head)?;
        Ok(Response::new(head))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .get_inclusion_proof(request.into_inner())
            .await?
            .into_inner();
        self.inclusion(lie, &mut reply).await?;
        Ok(Response::new(reply))
    }

    async fn get_inclusion_proofs(
        &self,
        request: Request<v1::GetInclusionProofsRequest>,
    ) -> Result<Response<v1::InclusionProofs>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .get_inclusion_proofs(request.into_inner())
            .await?
            .into_inner();
        for proof in &mut reply.proofs {
            self.inclusion(lie, proof).await?;
        }
        self.opt_head(lie, &mut reply.tree_head)?;
        Ok(Response::new(reply))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .get_consistency_proof(request.into_inner())
            .await?
            .into_inner();
        // An empty proof (equal sizes) proves nothing to break.
        if lie == Lie::BadConsistencyProof && reply.first_size != reply.second_size {
            flip(&mut reply.proof);
        }
        self.opt_head(lie, &mut reply.tree_head)?;
        Ok(Response::new(reply))
    }

    async fn get_entries(
        &self,
        request: Request<v1::GetEntriesRequest>,
    ) -> Result<Response<v1::GetEntriesResponse>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .get_entries(request.into_inner())
            .await?
            .into_inner();
        for e in &mut reply.entries {
            Self::entry(lie, e);
        }
        Ok(Response::new(reply))
    }

    async fn get_entry_and_proof(
        &self,
        request: Request<v1::GetEntryAndProofRequest>,
    ) -> Result<Response<v1::EntryAndProof>, Status> {
        let lie = self.lie();
        let mut reply = self
            .rpc()
            .get_entry_and_proof(request.into_inner())
            .await?
            .into_inner();
        if let Some(e) = &mut reply.entry {
            Self::entry(lie, e);
        }
        if let Some(p) = &mut reply.proof {
            self.inclusion(lie, p).await?;
        }
        Ok(Response::new(reply))
    }

    async fn get_log_info(
        &self,
        request: Request<v1::GetLogInfoRequest>,
    ) -> Result<Response<v1::LogInfo>, Status> {
        let lie = self.lie();
        let mut info = self
            .rpc()
            .get_log_info(request.into_inner())
            .await?
            .into_inner();
        let stranger = self.stranger.public_key();
        match lie {
            Lie::ForeignKey => {
                info.public_key_der = stranger.der().to_vec();
                info.public_key_pem = stranger.pem();
                info.log_id = stranger.log_id().0.to_vec();
            }
            Lie::ForeignLogId => info.log_id = stranger.log_id().0.to_vec(),
            _ => {}
        }
        Ok(Response::new(info))
    }
}
