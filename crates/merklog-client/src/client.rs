//! The online client: every answer of the log is checked before it is
//! returned, and every new tree head is linked to the trusted one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use merklog_merkle::{empty_root, leaf_hash, CompactRange, Hash};
use merklog_proto::v1::{self, get_inclusion_proof_request::Leaf, log_client::LogClient};
use merklog_proto::{hash_from_wire, hashes_from_wire};
use merklog_sth::{LogId, PublicKey};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::check::{
    check_consistency, check_heads_consistent, check_inclusion, check_not_future, verify_head,
    VerifiedHead, DEFAULT_MAX_CLOCK_SKEW,
};
use crate::clock::{Clock, SystemClock};
use crate::json::{ConsistencyProofJson, EntryJson, InclusionProofJson};
use crate::state::TrustState;
use crate::{ClientError, Result};

mod events;
pub use events::{AppendedEvent, EventHit, EventReceipt, SearchPage};

/// What the log says about itself, with its key checked against the pinned
/// one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    pub public_key: PublicKey,
    pub log_id: LogId,
    pub hash_algorithm: String,
    pub signature_algorithm: String,
    pub max_entry_bytes: u64,
    pub max_entries_per_append: u32,
    pub max_page_size: u32,
    /// The largest Append request, in bytes; 0 when the log does not say.
    pub max_request_bytes: u64,
    /// The most events of an AppendEvents call; 0 when the log does not say.
    pub max_events_per_append: u32,
    /// The most hits of a SearchEvents page; 0 when the log does not say.
    pub max_events_page_size: u32,
    /// The longest search window, in seconds; 0 when the log does not say.
    pub max_search_window_seconds: u64,
}

/// One entry of an append, with its inclusion proof checked against the
/// receipt's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedEntry {
    pub proof: InclusionProofJson,
    /// The entry was already in the log; `proof.leaf_index` is where.
    pub duplicate: bool,
}

/// The checked answer to an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendReceipt {
    /// The head that covers every entry, consistent with the trusted head.
    pub head: VerifiedHead,
    /// In the order the entries were given.
    pub entries: Vec<AppendedEntry>,
}

/// An entry whose bytes hash to its leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub leaf_hash: Hash,
    pub data: Vec<u8>,
    pub integrated_ms: u64,
}

impl LogEntry {
    /// Returns the entry as the JSON document of `docs/FORMATS.md`.
    pub fn to_json(&self) -> EntryJson {
        EntryJson {
            leaf_index: self.index,
            leaf_hash: self.leaf_hash,
            data: self.data.clone(),
            integrated_ms: self.integrated_ms,
        }
    }
}

/// An entry as the log served it, before its leaf hash is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedEntry {
    pub index: u64,
    /// The leaf hash the log claims for `data`.
    pub claimed_leaf_hash: Hash,
    pub data: Vec<u8>,
    pub integrated_ms: u64,
}

impl ServedEntry {
    /// Returns the entry once its bytes hash to its claimed leaf hash.
    ///
    /// # Errors
    /// [`ClientError::LeafHash`] when they do not.
    pub fn check(self) -> Result<LogEntry> {
        let computed = leaf_hash(&self.data);
        if computed != self.claimed_leaf_hash {
            return Err(ClientError::LeafHash {
                leaf_index: self.index,
                claimed: self.claimed_leaf_hash,
                computed,
            });
        }
        Ok(LogEntry {
            index: self.index,
            leaf_hash: computed,
            data: self.data,
            integrated_ms: self.integrated_ms,
        })
    }
}

/// Reads an inclusion proof the log answered for `leaf` in the tree of
/// `head`, checking that it is the proof asked for (not yet that it
/// verifies).
fn proof_from_reply(
    leaf: &Leaf,
    head: &VerifiedHead,
    reply: &v1::InclusionProof,
) -> Result<InclusionProofJson> {
    expect("tree_size", head.tree_size(), reply.tree_size)?;
    let leaf_hash = hash_from_wire(&reply.leaf_hash, "leaf_hash")?;
    match leaf {
        Leaf::LeafIndex(index) => expect("leaf_index", *index, reply.leaf_index)?,
        Leaf::LeafHash(asked) => {
            if asked[..] != leaf_hash.0 {
                return Err(ClientError::Unexpected {
                    field: "leaf_hash".into(),
                    expected: hex::encode(asked),
                    got: leaf_hash.to_string(),
                });
            }
        }
    }
    Ok(InclusionProofJson {
        leaf_index: reply.leaf_index,
        tree_size: reply.tree_size,
        leaf_hash,
        root_hash: head.root_hash(),
        proof: hashes_from_wire(&reply.proof, "proof")?,
    })
}

/// An inclusion proof checked against a verified head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenInclusion {
    pub proof: InclusionProofJson,
    pub head: VerifiedHead,
}

/// A consistency proof checked against two verified heads (the first is
/// `None` for the empty tree, whose root needs no signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenConsistency {
    pub proof: ConsistencyProofJson,
    pub first_head: Option<VerifiedHead>,
    pub second_head: VerifiedHead,
}

/// How the state file compared with a head the caller kept in memory, as
/// [`Client::restore_trusted`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFileCheck {
    /// The client keeps no state file.
    NoStateFile,
    /// The file holds a head of the same size and root.
    Same,
    /// The file holds a larger head (another client sharing the file moved
    /// it forward, say); it stays trusted.
    Ahead { file_size: u64 },
    /// The file is gone. The kept head is trusted and the file is written
    /// again at the next save.
    Missing,
    /// The file holds a smaller head (an old copy put back, say); the kept
    /// head is trusted.
    Behind { file_size: u64 },
}

/// What the client trusts and presents on an `https://` connection.
///
/// Only the given CA certificates are trusted (no system roots): a log's
/// certificate is checked against them and against the endpoint's host name
/// or IP address.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// PEM certificates of the CA(s) that sign the log's certificate.
    pub ca_pem: Vec<u8>,
    /// PEM certificate chain and private key presented to a log that
    /// requires client certificates (mutual TLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    // The private key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// How a [`Client`] connects and what it tolerates.
/// [`ClientOptions::default`] is the safe choice: no TLS, no token, heads
/// dated up to [`DEFAULT_MAX_CLOCK_SKEW`] past the system clock.
#[derive(Clone)]
pub struct ClientOptions {
    /// What to trust and present on an `https://` endpoint.
    pub tls: Option<ClientTls>,
    /// A bearer token, sent as `authorization: Bearer <token>` with every
    /// call (see [`Client::with_token`]).
    pub token: Option<String>,
    /// Send the token over plain `http://` to a host that is not loopback.
    /// Anyone on the network path can then read and replay it.
    pub allow_insecure_token: bool,
    /// How far past `clock` the log may date a head before it is refused
    /// ([`ClientError::FutureHead`]).
    pub max_clock_skew: Duration,
    /// This machine's clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls: None,
            token: None,
            allow_insecure_token: false,
            max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    // The token stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("tls", &self.tls)
            .field("token", &self.token.is_some())
            .field("allow_insecure_token", &self.allow_insecure_token)
            .field("max_clock_skew", &self.max_clock_skew)
            .finish_non_exhaustive()
    }
}

/// A client of one log, pinned to its public key.
///
/// It trusts the first head it verifies (or the one in its state file) and,
/// from then on, accepts a head only with a consistency proof from the
/// trusted one. The trusted head only grows; with a state file it survives
/// restarts.
pub struct Client {
    rpc: LogClient<InterceptedService<Channel, BearerToken>>,
    channel: Channel,
    endpoint: String,
    key: PublicKey,
    log_id: LogId,
    trusted: Option<VerifiedHead>,
    /// The right edge of the trusted tree, when known (see [`TrustState`]).
    edge: Option<CompactRange>,
    state_path: Option<PathBuf>,
    /// The log's `max_page_size`, once asked.
    page_size: Option<u64>,
    allow_insecure_token: bool,
    max_clock_skew: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("log_id", &self.log_id)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the log at `endpoint` (`http://host:port`, or
    /// `host:port`), pinned to `key`.
    ///
    /// # Errors
    /// [`ClientError::Transport`] when the address is invalid or the log
    /// cannot be reached.
    pub async fn connect(endpoint: &str, key: PublicKey) -> Result<Self> {
        Self::connect_with_tls(endpoint, key, None).await
    }

    /// Connects as [`Client::connect`] does; an `https://` endpoint needs
    /// `tls`, and `tls` needs an `https://` endpoint.
    ///
    /// # Errors
    /// [`ClientError::Input`] when the scheme and `tls` disagree;
    /// [`ClientError::Transport`] when the log cannot be reached or the TLS
    /// handshake fails (an untrusted or mismatched certificate, no client
    /// certificate where one is required).
    pub async fn connect_with_tls(
        endpoint: &str,
        key: PublicKey,
        tls: Option<&ClientTls>,
    ) -> Result<Self> {
        let options = ClientOptions {
            tls: tls.cloned(),
            ..ClientOptions::default()
        };
        Self::connect_with(endpoint, key, options).await
    }

    /// Connects as [`Client::connect_with_tls`] does, with `options`. A
    /// token that may not go to `endpoint` is refused before any
    /// connection is made.
    ///
    /// # Errors
    /// [`ClientError::InsecureToken`] for a token over plain `http://` to a
    /// host that is not loopback, unless `options.allow_insecure_token`;
    /// [`ClientError::Input`] for a token that cannot be sent in a header;
    /// as [`Client::connect_with_tls`].
    pub async fn connect_with(
        endpoint: &str,
        key: PublicKey,
        options: ClientOptions,
    ) -> Result<Self> {
        let (url, channel, token) = open_channel(endpoint, &options).await?;
        let log_id = key.log_id();
        Ok(Client {
            rpc: rpc(channel.clone(), BearerToken(token)),
            channel,
            endpoint: url,
            key,
            log_id,
            trusted: None,
            edge: None,
            state_path: None,
            page_size: None,
            allow_insecure_token: options.allow_insecure_token,
            max_clock_skew: options.max_clock_skew,
            clock: options.clock,
        })
    }

    /// Keeps the trusted head in `path`: loads it now (when the file exists)
    /// and writes it atomically each time it moves.
    ///
    /// # Errors
    /// As [`TrustState::load`].
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if let Some((head, edge)) = TrustState::load(&path, &self.key)? {
            self.trusted = Some(head);
            self.edge = edge;
        }
        self.state_path = Some(path);
        Ok(self)
    }

    /// Trusts `head` (with `edge`, its tree's right edge, when known), a head
    /// this process verified earlier and kept in memory, alongside whatever
    /// the state file loaded: a long-running caller that reconnects must
    /// not start over from nothing because the file went missing.
    ///
    /// The larger of the two heads becomes the trusted one, so a later head
    /// that is smaller than either is a rollback. Two heads of the same size
    /// must have the same root; whether two of different sizes are one tree
    /// needs a consistency proof from the log, which is the caller's to ask
    /// ([`Client::check_against_trusted`] with the smaller one), after it
    /// checked the log's latest head: a log that rolled back cannot prove
    /// the larger tree any more, and must be caught as a rollback.
    ///
    /// # Errors
    /// [`ClientError::Fork`] when the file's head and `head` have the same
    /// size and different roots.
    pub fn restore_trusted(
        &mut self,
        head: &VerifiedHead,
        edge: Option<&CompactRange>,
    ) -> Result<StateFileCheck> {
        let edge = edge
            .filter(|e| e.size() == head.tree_size() && e.root() == head.root_hash())
            .cloned();
        let Some(file_head) = self.trusted.clone() else {
            self.trusted = Some(head.clone());
            self.edge = edge;
            return Ok(if self.state_path.is_some() {
                StateFileCheck::Missing
            } else {
                StateFileCheck::NoStateFile
            });
        };
        let file_size = file_head.tree_size();
        if file_size == head.tree_size() {
            check_heads_consistent(&file_head, head, &[])?;
            if self.edge.is_none() {
                self.edge = edge;
            }
            return Ok(StateFileCheck::Same);
        }
        if file_size > head.tree_size() {
            return Ok(StateFileCheck::Ahead { file_size });
        }
        self.trusted = Some(head.clone());
        self.edge = edge;
        Ok(StateFileCheck::Behind { file_size })
    }

    /// Sends `token` as `authorization: Bearer <token>` with every call, for
    /// a log that requires one to append (or to read). The header is marked
    /// sensitive, so HTTP/2 never adds it to its header compression table.
    ///
    /// # Errors
    /// [`ClientError::InsecureToken`] for a plain `http://` endpoint that is
    /// not loopback (unless the client was connected with
    /// [`ClientOptions::allow_insecure_token`]); [`ClientError::Input`] when
    /// the token cannot be sent in a header.
    pub fn with_token(mut self, token: &str) -> Result<Self> {
        let value = token_header(&self.endpoint, token, self.allow_insecure_token)?;
        self.rpc = rpc(self.channel.clone(), BearerToken(Some(value)));
        Ok(self)
    }

    /// Starts from `head` as the trusted head.
    pub fn with_trusted_head(mut self, head: VerifiedHead) -> Self {
        self.trusted = Some(head);
        self.edge = None;
        self
    }

    /// Returns the right edge of the trusted tree, when the state file held
    /// one that matches the trusted head's root.
    pub fn trusted_edge(&self) -> Option<&CompactRange> {
        self.edge.as_ref()
    }

    /// Returns the pinned key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// Returns the head the client trusts now, if any.
    pub fn trusted_head(&self) -> Option<&VerifiedHead> {
        self.trusted.as_ref()
    }

    /// Returns the state file, if the client keeps one.
    pub fn state_path(&self) -> Option<&Path> {
        self.state_path.as_deref()
    }

    /// Makes `head` the trusted head if it is larger than (or as large as,
    /// and newer than) the trusted one, and saves it with `edge` (the right
    /// edge of `head`'s tree, if the caller has it) to the state file.
    ///
    /// The caller must have checked `head` against the trusted head
    /// ([`Client::check_against_trusted`]). A state file that another
    /// process moved past `head` meanwhile is left as it is
    /// ([`TrustState::save_unless_ahead`]).
    ///
    /// # Errors
    /// [`ClientError::State`] when the state file cannot be written;
    /// [`ClientError::Fork`] when it now holds another root at `head`'s size.
    pub fn set_trusted(&mut self, head: &VerifiedHead, edge: Option<&CompactRange>) -> Result<()> {
        let newer = match &self.trusted {
            None => true,
            Some(t) => {
                head.tree_size() > t.tree_size()
                    || (head.tree_size() == t.tree_size()
                        && head.timestamp_ms() >= t.timestamp_ms())
            }
        };
        if !newer {
            return Ok(());
        }
        let edge = edge.filter(|e| e.size() == head.tree_size() && e.root() == head.root_hash());
        if let Some(path) = &self.state_path {
            TrustState::save_unless_ahead(path, &self.key, head, edge)?;
        }
        self.trusted = Some(head.clone());
        self.edge = edge.cloned();
        Ok(())
    }

    /// Returns the log's description, after checking that its key is the
    /// pinned key.
    ///
    /// # Errors
    /// [`ClientError::WrongLog`] when the server has another key; transport
    /// and status errors.
    pub async fn log_info(&mut self) -> Result<LogInfo> {
        let info = self
            .rpc
            .get_log_info(v1::GetLogInfoRequest {})
            .await?
            .into_inner();
        let (info, claimed) = log_info_from_wire(info)?;
        for got in [info.log_id, claimed] {
            if got != self.log_id {
                return Err(ClientError::WrongLog {
                    what: format!("the server at {}", self.endpoint),
                    expected: self.log_id,
                    got,
                });
            }
        }
        Ok(info)
    }

    /// Fetches the log's latest head and checks its signature and log, but
    /// not yet its consistency with the trusted head.
    ///
    /// # Errors
    /// [`ClientError::BadSignature`], [`ClientError::WrongLog`],
    /// [`ClientError::Malformed`]; transport and status errors.
    pub async fn fetch_latest(&mut self) -> Result<VerifiedHead> {
        let wire = self
            .rpc
            .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
            .await?
            .into_inner();
        self.verify_wire_head(&wire, "tree_head")
    }

    /// Fetches, checks and trusts the log's latest head: signed by the
    /// pinned key, not smaller than the trusted head, and consistent with it.
    ///
    /// # Errors
    /// [`ClientError::Rollback`] when it is smaller than the trusted head;
    /// [`ClientError::Fork`] when it is not consistent with it; as
    /// [`Client::fetch_latest`].
    pub async fn latest_head(&mut self) -> Result<VerifiedHead> {
        let head = self.fetch_latest().await?;
        self.check_against_trusted(&head, false).await?;
        self.set_trusted(&head, None)?;
        Ok(head)
    }

    /// Checks `head` (already verified) against the trusted head: the same
    /// size must have the same root, and the smaller of the two trees must
    /// be a prefix of the larger, by a consistency proof fetched from the
    /// log. A head smaller than the trusted one is a rollback unless
    /// `allow_older` (for a head the caller asked for by size).
    ///
    /// # Errors
    /// [`ClientError::Rollback`], [`ClientError::Fork`]; transport and status
    /// errors while fetching the proof.
    pub async fn check_against_trusted(
        &mut self,
        head: &VerifiedHead,
        allow_older: bool,
    ) -> Result<()> {
        let Some(trusted) = self.trusted.clone() else {
            return Ok(());
        };
        if head.tree_size() < trusted.tree_size() && !allow_older {
            return Err(ClientError::Rollback {
                trusted_size: trusted.tree_size(),
                trusted_root: trusted.root_hash(),
                new_size: head.tree_size(),
                new_root: head.root_hash(),
            });
        }
        let (small, large) = if head.tree_size() <= trusted.tree_size() {
            (head.tree_size(), trusted.tree_size())
        } else {
            (trusted.tree_size(), head.tree_size())
        };
        let proof = if small == large {
            Vec::new()
        } else {
            self.consistency_hashes(small, large).await?
        };
        check_heads_consistent(&trusted, head, &proof)
    }

    /// Fetches the proof hashes of `PROOF(m, D[n])`, checking that the log
    /// answered for these sizes.
    async fn consistency_hashes(&mut self, m: u64, n: u64) -> Result<Vec<Hash>> {
        let reply = self
            .rpc
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                first_size: m,
                second_size: n,
            })
            .await?
            .into_inner();
        expect("first_size", m, reply.first_size)?;
        expect("second_size", n, reply.second_size)?;
        Ok(hashes_from_wire(&reply.proof, "proof")?)
    }

    /// Checks a head the log served: signed by the pinned key for the pinned
    /// log, and not dated past this machine's clock by more than the
    /// allowed skew. Every head from the log comes through here.
    fn verify_wire_head(&self, wire: &v1::SignedTreeHead, field: &str) -> Result<VerifiedHead> {
        let sth = merklog_proto::sth_from_wire(wire, field)?;
        let log_id = hash_from_wire(&wire.log_id, &format!("{field}.log_id"))?;
        let head = verify_head(&self.key, &sth, LogId(log_id.0))?;
        check_not_future(&head, self.clock.now_ms(), self.max_clock_skew)?;
        Ok(head)
    }

    /// Checks the head of an append's answer (present, signed, consistent
    /// with the trusted head) and that it answers each of the `sent` items
    /// (`what` names them in the error).
    pub(crate) async fn accept_receipt_head(
        &mut self,
        wire: Option<&v1::SignedTreeHead>,
        what: &str,
        sent: usize,
        answered: usize,
    ) -> Result<VerifiedHead> {
        let wire = wire.ok_or_else(|| ClientError::Malformed {
            field: "tree_head".into(),
            reason: "missing".into(),
        })?;
        let head = self.accept_served_head(wire, "tree_head").await?;
        expect(what, sent as u64, answered as u64)?;
        Ok(head)
    }

    /// Checks a head the log sent along with a proof: signed, and
    /// consistent with the trusted head (which it may move forward).
    async fn accept_served_head(
        &mut self,
        wire: &v1::SignedTreeHead,
        field: &str,
    ) -> Result<VerifiedHead> {
        let head = self.verify_wire_head(wire, field)?;
        self.check_against_trusted(&head, true).await?;
        self.set_trusted(&head, None)?;
        Ok(head)
    }

    /// Returns the log's signed head at exactly `tree_size`, checked against
    /// the trusted head.
    ///
    /// # Errors
    /// [`ClientError::NoSignedHead`] when the log published none at that
    /// size; as [`Client::check_against_trusted`].
    pub async fn head_at(&mut self, tree_size: u64) -> Result<VerifiedHead> {
        if let Some(t) = self.trusted.as_ref().filter(|t| t.tree_size() == tree_size) {
            return Ok(t.clone());
        }
        if tree_size == 0 {
            // Size 0 means "latest" on the wire: the empty tree's head
            // cannot be asked for.
            return Err(ClientError::NoSignedHead { tree_size });
        }
        let reply = self
            .rpc
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                first_size: tree_size,
                second_size: tree_size,
            })
            .await?
            .into_inner();
        let wire = reply
            .tree_head
            .ok_or(ClientError::NoSignedHead { tree_size })?;
        expect("tree_head.tree_size", tree_size, wire.tree_size)?;
        self.accept_served_head(&wire, "tree_head").await
    }

    async fn head_for(&mut self, tree_size: Option<u64>) -> Result<VerifiedHead> {
        match tree_size {
            None => self.latest_head().await,
            Some(size) => self.head_at(size).await,
        }
    }

    /// Appends `entries` and checks the answer: the head is signed and
    /// consistent with the trusted head, each leaf hash is the hash of the
    /// entry given, and each inclusion proof verifies against the head.
    ///
    /// # Errors
    /// Any check that fails, as [`ClientError`] says; transport and status
    /// errors (the log refuses empty or oversized entries).
    pub async fn append(&mut self, entries: Vec<Vec<u8>>) -> Result<AppendReceipt> {
        let hashes: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let reply = self
            .rpc
            .append(v1::AppendRequest { entries })
            .await?
            .into_inner();
        let head = self
            .accept_receipt_head(
                reply.tree_head.as_ref(),
                "number of entries",
                hashes.len(),
                reply.entries.len(),
            )
            .await?;
        let mut out = Vec::with_capacity(hashes.len());
        for (i, (got, want)) in reply.entries.iter().zip(&hashes).enumerate() {
            let field = format!("entries[{i}]");
            let leaf = hash_from_wire(&got.leaf_hash, &format!("{field}.leaf_hash"))?;
            if leaf != *want {
                return Err(ClientError::Unexpected {
                    field: format!("{field}.leaf_hash"),
                    expected: want.to_string(),
                    got: leaf.to_string(),
                });
            }
            let proof =
                checked_inclusion_proof(&head, got.leaf_index, leaf, &got.inclusion_proof, &field)?;
            out.push(AppendedEntry {
                proof,
                duplicate: got.duplicate,
            });
        }
        Ok(AppendReceipt { head, entries: out })
    }

    /// Proves leaf `index` into the latest head (or the signed head at
    /// `tree_size`).
    ///
    /// # Errors
    /// As [`Client::latest_head`] or [`Client::head_at`];
    /// [`ClientError::InclusionProof`] when the proof does not verify.
    pub async fn inclusion_by_index(
        &mut self,
        index: u64,
        tree_size: Option<u64>,
    ) -> Result<ProvenInclusion> {
        self.inclusion(Leaf::LeafIndex(index), tree_size).await
    }

    /// Proves the leaf with `leaf_hash` into the latest head (or the signed
    /// head at `tree_size`).
    ///
    /// # Errors
    /// As [`Client::inclusion_by_index`]; a `NotFound` status when the log
    /// holds no such leaf.
    pub async fn inclusion_by_leaf_hash(
        &mut self,
        leaf_hash: Hash,
        tree_size: Option<u64>,
    ) -> Result<ProvenInclusion> {
        self.inclusion(Leaf::LeafHash(leaf_hash.0.to_vec()), tree_size)
            .await
    }

    /// Proves the entry `data` into the latest head (or the signed head at
    /// `tree_size`), by its leaf hash `SHA-256(0x00 || data)`.
    ///
    /// # Errors
    /// As [`Client::inclusion_by_leaf_hash`].
    pub async fn inclusion_by_entry(
        &mut self,
        data: &[u8],
        tree_size: Option<u64>,
    ) -> Result<ProvenInclusion> {
        self.inclusion_by_leaf_hash(leaf_hash(data), tree_size)
            .await
    }

    async fn inclusion(&mut self, leaf: Leaf, tree_size: Option<u64>) -> Result<ProvenInclusion> {
        let head = self.head_for(tree_size).await?;
        if head.tree_size() == 0 {
            return Err(ClientError::Status {
                code: tonic::Code::OutOfRange,
                message: "the log is empty: no leaf can be proved".into(),
            });
        }
        let reply = self
            .rpc
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                leaf: Some(leaf.clone()),
                tree_size: head.tree_size(),
            })
            .await?
            .into_inner();
        if let Some(wire) = &reply.tree_head {
            self.check_served_head(&head, wire)?;
        }
        let proof = proof_from_reply(&leaf, &head, &reply)?;
        check_inclusion(&head, &proof)?;
        Ok(ProvenInclusion { proof, head })
    }

    /// Proves each leaf of `indexes` into the latest head (or the signed
    /// head at `tree_size`), asking for up to `LogInfo::max_page_size`
    /// proofs per call.
    ///
    /// # Errors
    /// The outer result fails as [`Client::inclusion_by_index`] does for
    /// the head or the call (including a log that answers another leaf or
    /// another number of proofs than asked); each inner result is
    /// [`ClientError::InclusionProof`] (or a head mismatch) for a proof that
    /// does not verify, so one bad proof does not hide the others.
    pub async fn inclusions_by_index(
        &mut self,
        indexes: &[u64],
        tree_size: Option<u64>,
    ) -> Result<Vec<Result<ProvenInclusion>>> {
        let head = self.head_for(tree_size).await?;
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let per_call = self.page_size().await? as usize;
        let mut proven = Vec::with_capacity(indexes.len());
        for chunk in indexes.chunks(per_call) {
            let reply = self
                .rpc
                .get_inclusion_proofs(v1::GetInclusionProofsRequest {
                    leaves: chunk
                        .iter()
                        .map(|&i| v1::LeafRef {
                            leaf: Some(v1::leaf_ref::Leaf::LeafIndex(i)),
                        })
                        .collect(),
                    tree_size: head.tree_size(),
                })
                .await?
                .into_inner();
            if let Some(wire) = &reply.tree_head {
                self.check_served_head(&head, wire)?;
            }
            expect(
                "number of proofs",
                chunk.len() as u64,
                reply.proofs.len() as u64,
            )?;
            for (&index, reply) in chunk.iter().zip(&reply.proofs) {
                let proof = proof_from_reply(&Leaf::LeafIndex(index), &head, reply)?;
                proven.push(check_inclusion(&head, &proof).map(|()| ProvenInclusion {
                    proof,
                    head: head.clone(),
                }));
            }
        }
        Ok(proven)
    }

    /// Checks a head the log sent again with a proof: it must be the tree of
    /// `head`, signed by the log.
    fn check_served_head(&self, head: &VerifiedHead, wire: &v1::SignedTreeHead) -> Result<()> {
        expect("tree_head.tree_size", head.tree_size(), wire.tree_size)?;
        let served = self.verify_wire_head(wire, "tree_head")?;
        check_heads_consistent(head, &served, &[])
    }

    /// Proves that the tree of `first` leaves is a prefix of the latest
    /// tree (or of the tree of `second` leaves). Both trees must have signed
    /// heads, except the empty tree.
    ///
    /// # Errors
    /// [`ClientError::NoSignedHead`]; [`ClientError::ConsistencyProof`] when
    /// the proof does not verify; as [`Client::head_at`].
    pub async fn consistency(
        &mut self,
        first: u64,
        second: Option<u64>,
    ) -> Result<ProvenConsistency> {
        let second_head = self.head_for(second).await?;
        if first > second_head.tree_size() {
            return Err(ClientError::Input {
                what: "first size".into(),
                reason: format!(
                    "{first} is larger than the second tree's size {}",
                    second_head.tree_size()
                ),
            });
        }
        let first_head = if first == 0 {
            None
        } else {
            Some(self.head_at(first).await?)
        };
        let proof = if first == second_head.tree_size() {
            Vec::new()
        } else {
            self.consistency_hashes(first, second_head.tree_size())
                .await?
        };
        let doc = ConsistencyProofJson {
            first_size: first,
            second_size: second_head.tree_size(),
            first_root: first_head
                .as_ref()
                .map_or_else(empty_root, VerifiedHead::root_hash),
            second_root: second_head.root_hash(),
            proof,
        };
        check_consistency(first_head.as_ref(), &second_head, &doc)?;
        Ok(ProvenConsistency {
            proof: doc,
            first_head,
            second_head,
        })
    }

    /// Fetches one page of entries from `start` (up to `end`, at most the
    /// log's page size, fewer if the log decides so), checking that they are
    /// numbered from `start` and that each one's bytes hash to its leaf
    /// hash. An empty page means the log has no entry at `start`.
    ///
    /// # Errors
    /// [`ClientError::LeafHash`] naming the first entry whose bytes do not
    /// match; [`ClientError::Unexpected`] for misnumbered entries; transport
    /// and status errors.
    pub async fn entries_page(&mut self, start: u64, end: u64) -> Result<Vec<LogEntry>> {
        self.served_entries_page(start, end)
            .await?
            .into_iter()
            .map(ServedEntry::check)
            .collect()
    }

    /// Fetches one page of entries as [`Client::entries_page`] does but
    /// leaves the leaf-hash check to the caller ([`ServedEntry::check`]), so
    /// an auditor can report every bad entry rather than stop at the first.
    /// The numbering is checked.
    ///
    /// # Errors
    /// [`ClientError::Unexpected`] for misnumbered entries or too many;
    /// [`ClientError::Malformed`]; transport and status errors.
    pub async fn served_entries_page(&mut self, start: u64, end: u64) -> Result<Vec<ServedEntry>> {
        // The log refuses a longer page than its limit rather than cut it.
        let end = end.min(start.saturating_add(self.page_size().await?));
        let reply = self
            .rpc
            .get_entries(v1::GetEntriesRequest { start, end })
            .await?
            .into_inner();
        if reply.entries.len() as u64 > end.saturating_sub(start) {
            return Err(ClientError::Unexpected {
                field: "number of entries".into(),
                expected: format!("at most {}", end.saturating_sub(start)),
                got: reply.entries.len().to_string(),
            });
        }
        reply
            .entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let index = start + i as u64;
                expect("leaf_index", index, e.leaf_index)?;
                let claimed = hash_from_wire(&e.leaf_hash, &format!("entries[{i}].leaf_hash"))?;
                Ok(ServedEntry {
                    index,
                    claimed_leaf_hash: claimed,
                    data: e.data,
                    integrated_ms: e.integrated_ms,
                })
            })
            .collect()
    }

    /// Returns the most entries or proofs the log answers in one call
    /// (`LogInfo::max_page_size`, at least 1), asking the log once.
    ///
    /// # Errors
    /// As [`Client::log_info`].
    pub async fn page_size(&mut self) -> Result<u64> {
        if let Some(size) = self.page_size {
            return Ok(size);
        }
        let size = u64::from(self.log_info().await?.max_page_size).max(1);
        self.page_size = Some(size);
        Ok(size)
    }

    /// Fetches the entries `[start, end)` and proves each one into `head`
    /// (a head this client verified, e.g. from [`Client::latest_head`]):
    /// its bytes hash to its leaf hash, and that leaf hash is proved into
    /// the head's root with proofs asked many per call. What this returns
    /// is what the log signed, not just what it served.
    ///
    /// # Errors
    /// [`ClientError::Input`] when `end` is past the head's size (entries
    /// past it cannot be proved); [`ClientError::MissingEntries`] when the
    /// log serves fewer; [`ClientError::LeafHash`] for bytes that do not
    /// match the leaf hash served with them or proved into the head;
    /// [`ClientError::InclusionProof`] for a proof that does not verify; as
    /// [`Client::entries_page`].
    pub async fn proven_entries(
        &mut self,
        head: &VerifiedHead,
        start: u64,
        end: u64,
    ) -> Result<Vec<LogEntry>> {
        let size = head.tree_size();
        if end > size {
            return Err(ClientError::Input {
                what: "entries".into(),
                reason: format!(
                    "entries up to index {end} were asked for, but the latest signed tree head \
                     has size {size}: entries past it cannot be proved"
                ),
            });
        }
        let entries = self.entries(start, end).await?;
        let wanted = end.saturating_sub(start);
        if (entries.len() as u64) < wanted {
            return Err(ClientError::MissingEntries {
                tree_size: size,
                served: start + entries.len() as u64,
            });
        }
        let indexes: Vec<u64> = (start..end).collect();
        let proofs = self.inclusions_by_index(&indexes, Some(size)).await?;
        for (entry, proven) in entries.iter().zip(proofs) {
            let proven = proven?;
            if proven.proof.leaf_hash != entry.leaf_hash {
                return Err(ClientError::LeafHash {
                    leaf_index: entry.index,
                    claimed: proven.proof.leaf_hash,
                    computed: entry.leaf_hash,
                });
            }
        }
        Ok(entries)
    }

    /// Fetches the entries `[start, end)`, page by page, each checked as
    /// [`Client::entries_page`] does. Fewer are returned when the log holds
    /// fewer.
    ///
    /// # Errors
    /// As [`Client::entries_page`].
    pub async fn entries(&mut self, start: u64, end: u64) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        let mut at = start;
        while at < end {
            let page = match self.entries_page(at, end).await {
                Ok(page) => page,
                // Past the log's end after a first page: the log holds fewer.
                Err(ClientError::Status {
                    code: tonic::Code::OutOfRange,
                    ..
                }) if at > start => break,
                Err(e) => return Err(e),
            };
            if page.is_empty() {
                break;
            }
            at += page.len() as u64;
            out.extend(page);
        }
        Ok(out)
    }
}

/// Where a page of signed heads starts ([`Client::tree_heads_page`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadsFrom {
    /// At the first head the log signed.
    First,
    /// After the head of this (size, timestamp), in (size, timestamp) order.
    After { tree_size: u64, timestamp_ms: u64 },
    /// At the latest head dated strictly before this time (ms since the
    /// Unix epoch); at the first head when none is.
    LatestBefore(u64),
}

impl Client {
    /// Fetches one page of the log's signed heads in (size, timestamp)
    /// order, each checked as every served head is (signed by the pinned
    /// key, not dated in the future), and checks that the page is in order
    /// and starts where it was asked to. It does not check them against the
    /// trusted head; the caller links the one it keeps.
    ///
    /// # Errors
    /// [`ClientError::BadSignature`], [`ClientError::WrongLog`],
    /// [`ClientError::FutureHead`]; [`ClientError::Unexpected`] for a page
    /// out of order or before its start; transport and status errors.
    pub async fn tree_heads_page(
        &mut self,
        from: HeadsFrom,
        page_size: u32,
    ) -> Result<Vec<VerifiedHead>> {
        use v1::list_tree_heads_request::Start;
        let start = match from {
            HeadsFrom::First => None,
            HeadsFrom::After {
                tree_size,
                timestamp_ms,
            } => Some(Start::After(v1::TreeHeadPosition {
                tree_size,
                timestamp_ms,
            })),
            HeadsFrom::LatestBefore(ms) => Some(Start::LatestBeforeMs(ms)),
        };
        let reply = self
            .rpc
            .list_tree_heads(v1::ListTreeHeadsRequest { start, page_size })
            .await?
            .into_inner();
        let heads = reply
            .tree_heads
            .iter()
            .enumerate()
            .map(|(i, wire)| self.verify_wire_head(wire, &format!("tree_heads[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        let position = |h: &VerifiedHead| (h.tree_size(), h.timestamp_ms());
        if let HeadsFrom::After {
            tree_size,
            timestamp_ms,
        } = from
        {
            if let Some(first) = heads
                .first()
                .filter(|h| position(h) <= (tree_size, timestamp_ms))
            {
                return Err(ClientError::Unexpected {
                    field: "tree_heads[0]".into(),
                    expected: format!("a head after size {tree_size} at {timestamp_ms} ms"),
                    got: format!("size {} at {} ms", first.tree_size(), first.timestamp_ms()),
                });
            }
        }
        if let Some(i) = heads
            .windows(2)
            .position(|w| position(&w[1]) <= position(&w[0]))
        {
            return Err(ClientError::Unexpected {
                field: format!("tree_heads[{}]", i + 1),
                expected: "heads in (size, timestamp) order".into(),
                got: format!(
                    "size {} at {} ms after size {} at {} ms",
                    heads[i + 1].tree_size(),
                    heads[i + 1].timestamp_ms(),
                    heads[i].tree_size(),
                    heads[i].timestamp_ms()
                ),
            });
        }
        Ok(heads)
    }
}

/// Adds the bearer token, when there is one, to each request.
#[derive(Clone)]
struct BearerToken(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

/// Returns the `authorization` header for `token`, marked sensitive, once
/// it may be sent to `url`: over TLS, or in clear text only to this
/// machine, unless `allow_insecure`.
fn token_header(url: &str, token: &str, allow_insecure: bool) -> Result<AsciiMetadataValue> {
    if url.starts_with("http://") && !allow_insecure && !is_loopback(url) {
        return Err(ClientError::InsecureToken {
            endpoint: url.to_owned(),
        });
    }
    let mut value = format!("Bearer {}", token.trim())
        .parse::<AsciiMetadataValue>()
        .map_err(|e| ClientError::Input {
            what: "token".into(),
            reason: format!("not a valid header value: {e}"),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Returns true when `url`'s host is this machine: `localhost`, an address
/// in 127.0.0.0/8, or `::1` (also as `::ffff:127.x.y.z`). A host that does
/// not parse is not loopback.
fn is_loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<tonic::transport::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// Connects to `endpoint` as [`Client::connect_with`] does: returns the
/// URL, the channel and the token header to send.
async fn open_channel(
    endpoint: &str,
    options: &ClientOptions,
) -> Result<(String, Channel, Option<AsciiMetadataValue>)> {
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let token = options
        .token
        .as_deref()
        .map(|t| token_header(&url, t, options.allow_insecure_token))
        .transpose()?;
    let tls = options.tls.as_ref();
    let transport = |reason: String| ClientError::Transport {
        endpoint: url.clone(),
        reason,
    };
    let mut target = Endpoint::from_shared(url.clone())
        .map_err(|e| transport(e.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(10));
    let https = url.starts_with("https://");
    match tls {
        Some(tls) if https => {
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            target = target
                .tls_config(config)
                .map_err(|e| transport(source_chain(&e)))?;
        }
        Some(_) => {
            return Err(ClientError::Input {
                what: "endpoint".into(),
                reason: format!("TLS settings were given, but {url} is not https://"),
            })
        }
        None if https => {
            return Err(ClientError::Input {
                what: "endpoint".into(),
                reason: format!(
                    "{url} needs the CA certificate that signed the log's certificate \
                         (--tls-ca FILE)"
                ),
            })
        }
        None => {}
    }
    let channel = target
        .connect()
        .await
        .map_err(|e| transport(source_chain(&e)))?;
    Ok((url, channel, token))
}

/// Asks the log at `endpoint` to describe itself, pinned to no key: what
/// its server says, checked against nothing. For a user who has no key yet,
/// to compare with one obtained another way (`merklog log-info`). Here
/// `log_id` is the ID the server claims, which may differ from its key's
/// (`public_key.log_id()`); [`Client::log_info`] refuses that.
///
/// # Errors
/// [`ClientError::Malformed`] for a key that cannot be read; as
/// [`Client::connect_with`]; transport and status errors.
pub async fn unpinned_log_info(endpoint: &str, options: ClientOptions) -> Result<LogInfo> {
    let (_, channel, token) = open_channel(endpoint, &options).await?;
    let info = rpc(channel, BearerToken(token))
        .get_log_info(v1::GetLogInfoRequest {})
        .await?
        .into_inner();
    let (mut info, claimed) = log_info_from_wire(info)?;
    info.log_id = claimed;
    Ok(info)
}

/// Reads a `LogInfo` message: the description with `log_id` its key's ID,
/// and the ID the message claims.
fn log_info_from_wire(info: v1::LogInfo) -> Result<(LogInfo, LogId)> {
    let public_key =
        PublicKey::from_der(&info.public_key_der).map_err(|e| ClientError::Malformed {
            field: "public_key_der".into(),
            reason: e.to_string(),
        })?;
    let claimed = LogId(hash_from_wire(&info.log_id, "log_id")?.0);
    Ok((
        LogInfo {
            log_id: public_key.log_id(),
            public_key,
            hash_algorithm: info.hash_algorithm,
            signature_algorithm: info.signature_algorithm,
            max_entry_bytes: info.max_entry_bytes,
            max_entries_per_append: info.max_entries_per_append,
            max_page_size: info.max_page_size,
            max_request_bytes: info.max_request_bytes,
            max_events_per_append: info.max_events_per_append,
            max_events_page_size: info.max_events_page_size,
            max_search_window_seconds: info.max_search_window_seconds,
        },
        claimed,
    ))
}

fn rpc(
    channel: Channel,
    token: BearerToken,
) -> LogClient<InterceptedService<Channel, BearerToken>> {
    // Pages of entries can be large; the log bounds them, not the client.
    LogClient::with_interceptor(channel, token).max_decoding_message_size(256 << 20)
}

/// Checks that the log echoed the number that was asked for.
/// The inclusion proof served for `leaf` at `leaf_index` (in an append's or
/// a search's answer), checked against the answer's `head`; `field` names
/// the answer's item in errors.
pub(crate) fn checked_inclusion_proof(
    head: &VerifiedHead,
    leaf_index: u64,
    leaf: Hash,
    wire_proof: &[Vec<u8>],
    field: &str,
) -> Result<InclusionProofJson> {
    let proof = InclusionProofJson {
        leaf_index,
        tree_size: head.tree_size(),
        leaf_hash: leaf,
        root_hash: head.root_hash(),
        proof: hashes_from_wire(wire_proof, &format!("{field}.inclusion_proof"))?,
    };
    check_inclusion(head, &proof)?;
    Ok(proof)
}

fn expect(field: &str, expected: u64, got: u64) -> Result<()> {
    if expected != got {
        return Err(ClientError::Unexpected {
            field: field.to_owned(),
            expected: expected.to_string(),
            got: got.to_string(),
        });
    }
    Ok(())
}

/// Joins an error and its sources: tonic's transport errors hide the cause
/// ("connection refused") in the chain.
fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    crate::error::append_causes(&mut text, e.source());
    crate::error::with_hint(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_in_clear_text_only_to_this_machine() {
        for url in [
            "http://127.0.0.1:7300",
            "http://127.8.9.10",
            "http://[::1]:7300",
            "http://[::ffff:127.0.0.1]:7300",
            "http://localhost:7300",
            "http://LOCALHOST",
            "https://10.255.255.1:7300",
            "https://log.example",
        ] {
            let value = token_header(url, " secret ", false).unwrap();
            assert_eq!(value.to_str().unwrap(), "Bearer secret", "{url}");
            assert!(value.is_sensitive(), "{url}");
        }
        for url in [
            "http://10.255.255.1:7300",
            "http://log.example:7300",
            "http://localhost.example",
            "http://[::2]:7300",
            "http://128.0.0.1",
            "http://user@",
        ] {
            let err = token_header(url, "secret", false).unwrap_err();
            assert!(
                matches!(&err, ClientError::InsecureToken { endpoint } if endpoint == url),
                "{url}: {err:?}"
            );
            assert!(err.to_string().contains("--allow-insecure-token"), "{err}");
            assert!(!err.is_verification_failure());
            assert!(token_header(url, "secret", true).unwrap().is_sensitive());
        }
        // What goes on the wire is still marked sensitive.
        let header = token_header("http://127.0.0.1:7300", "secret", false).unwrap();
        let request = tonic::service::Interceptor::call(
            &mut BearerToken(Some(header)),
            tonic::Request::new(()),
        )
        .unwrap();
        assert!(request
            .metadata()
            .get("authorization")
            .unwrap()
            .is_sensitive());
    }
}
