//! The workers: writers that append random unique entries, readers that ask
//! for inclusion proofs, consistency proofs and entry pages, and the checks
//! they run on a sample of the answers.
//!
//! A fast log that answers wrong is not fast: every answer gets the cheap
//! shape checks, and one in `verify_every` calls per worker is verified in
//! full (the tree head's signature with the key from `GetLogInfo`, every
//! inclusion proof of an append, the consistency proof between two signed
//! heads, the leaf hash of every entry of a page). A failure counts as an
//! error of class [`VERIFICATION_FAILED`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use merklog_merkle::{leaf_hash, verify_consistency, verify_inclusion};
use merklog_proto::v1::get_inclusion_proof_request::Leaf;
use merklog_proto::v1::log_client::LogClient;
use merklog_proto::v1::{
    self, leaf_ref, AppendEventsRequest, AppendRequest, GetConsistencyProofRequest,
    GetEntriesRequest, GetInclusionProofRequest, GetInclusionProofsRequest,
    GetSignedTreeHeadRequest, LeafRef,
};
use merklog_proto::{hashes_from_wire, required_sth};
use merklog_sth::{LogId, PublicKey, SignedTreeHead};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use tokio::time::MissedTickBehavior;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::stats::{Live, Op, Recorder, VERIFICATION_FAILED};

/// How many signed heads the consistency readers pick from.
const HEAD_POOL: usize = 1024;

/// How many heads whose signatures were checked are remembered: the many
/// answers that carry the same head (every append of a batch, every proof
/// until the next batch) then cost one signature check, not one each.
const RECENTLY_VERIFIED: usize = 8;

/// What every worker shares: the log's identity, the latest size seen and a
/// pool of verified signed heads.
pub struct Shared {
    pub key: PublicKey,
    pub log_id: LogId,
    pub size: AtomicU64,
    heads: Mutex<Vec<SignedTreeHead>>,
    /// Heads whose signatures verified, newest last.
    verified: Mutex<VecDeque<SignedTreeHead>>,
    pub live: Live,
    /// `Bearer <token>` for the `authorization` header, when given.
    authorization: Option<MetadataValue<Ascii>>,
    /// Leaf bytes of the events appended, and their count: the mean size
    /// an opaque run compares with.
    pub event_leaf_bytes: AtomicU64,
    pub event_leaves: AtomicU64,
}

impl Shared {
    pub fn new(key: PublicKey, authorization: Option<MetadataValue<Ascii>>) -> Self {
        let log_id = key.log_id();
        Shared {
            key,
            log_id,
            size: AtomicU64::new(0),
            heads: Mutex::new(Vec::new()),
            verified: Mutex::new(VecDeque::with_capacity(RECENTLY_VERIFIED)),
            live: Live::default(),
            authorization,
            event_leaf_bytes: AtomicU64::new(0),
            event_leaves: AtomicU64::new(0),
        }
    }

    /// Wraps `message` in a request carrying the bearer token, if any.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_token(message, self.authorization.as_ref())
    }

    /// Remembers a head whose signature was checked.
    pub fn add_head(&self, head: SignedTreeHead, rng: &mut impl Rng) {
        self.size.fetch_max(head.head.tree_size, Ordering::Relaxed);
        let mut heads = self.heads.lock().expect("head pool lock");
        if heads.len() < HEAD_POOL {
            heads.push(head);
        } else {
            let i = rng.gen_range(0..HEAD_POOL);
            heads[i] = head;
        }
    }

    fn random_head(&self, rng: &mut impl Rng) -> Option<SignedTreeHead> {
        let heads = self.heads.lock().expect("head pool lock");
        if heads.is_empty() {
            return None;
        }
        Some(heads[rng.gen_range(0..heads.len())].clone())
    }

    /// Checks a wire head: present, well formed, of this log, and signed by
    /// its key (a head equal to one of the last few that verified, signature
    /// bytes included, is not checked again).
    pub fn check_head(
        &self,
        wire: Option<&v1::SignedTreeHead>,
        field: &str,
    ) -> Result<SignedTreeHead, String> {
        let sth = required_sth(wire, field).map_err(|e| e.to_string())?;
        let log_id = &wire.expect("required_sth checked presence").log_id;
        if log_id[..] != self.log_id.0[..] {
            return Err(format!("{field}: log ID of another log"));
        }
        if self.verified.lock().expect("verified lock").contains(&sth) {
            return Ok(sth);
        }
        self.key
            .verify(&sth)
            .map_err(|e| format!("{field}: bad signature: {e}"))?;
        let mut verified = self.verified.lock().expect("verified lock");
        if verified.len() == RECENTLY_VERIFIED {
            verified.pop_front();
        }
        verified.push_back(sth.clone());
        Ok(sth)
    }
}

/// Wraps `message` in a request with `authorization` as its header.
pub fn with_token<T>(
    message: T,
    authorization: Option<&MetadataValue<Ascii>>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// What writers append.
#[derive(Debug, Clone, Copy)]
pub enum Payload {
    /// `Append` of random entries of this many bytes.
    Opaque { entry_bytes: usize },
    /// `AppendEvents` of realistic events from this many actors.
    Events { actors: u32 },
}

/// One write call's outcome: the head when checked in full, and the entries
/// appended.
async fn write_once(
    client: &mut LogClient<Channel>,
    shared: &Shared,
    rng: &mut StdRng,
    payload: Payload,
    count: usize,
    full: bool,
) -> Result<Option<SignedTreeHead>, Failure> {
    match payload {
        Payload::Opaque { entry_bytes } => {
            let entries = random_entries(rng, count, entry_bytes);
            let kept = full.then(|| entries.clone());
            let resp = client
                .append(shared.request(AppendRequest { entries }))
                .await?
                .into_inner();
            let head =
                check_append(shared, kept.as_deref(), count, &resp).map_err(Failure::Wrong)?;
            if let Some(h) = &resp.tree_head {
                shared.size.fetch_max(h.tree_size, Ordering::Relaxed);
            }
            Ok(head)
        }
        Payload::Events { actors } => {
            let events = crate::events::random_events(rng, count, actors);
            let resp = client
                .append_events(shared.request(AppendEventsRequest { events }))
                .await?
                .into_inner();
            let (head, bytes) = crate::events::check_append_events(shared, full, count, &resp)
                .map_err(Failure::Wrong)?;
            shared.event_leaf_bytes.fetch_add(bytes, Ordering::Relaxed);
            shared
                .event_leaves
                .fetch_add(count as u64, Ordering::Relaxed);
            if let Some(h) = &resp.tree_head {
                shared.size.fetch_max(h.tree_size, Ordering::Relaxed);
            }
            Ok(head)
        }
    }
}

/// How a worker paces its calls.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The time between two calls of this worker; `None` for as fast as
    /// possible (the next call goes out when the last one is answered).
    pub interval: Option<Duration>,
    pub deadline: Instant,
    /// Verify one call in this many in full, starting with each worker's
    /// first (1 = every call).
    pub verify_every: u64,
}

/// Calls at the worker's pace. With a fixed rate, each call's latency is
/// measured from the time it was *due*, not from when it went out, so a
/// stalled server is charged for the calls it delayed (no coordinated
/// omission).
struct Ticker {
    interval: Option<tokio::time::Interval>,
    deadline: Instant,
}

impl Ticker {
    fn new(pace: &Pace, offset: Duration) -> Self {
        let interval = pace.interval.map(|d| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + offset, d);
            i.set_missed_tick_behavior(MissedTickBehavior::Burst);
            i
        });
        Ticker {
            interval,
            deadline: pace.deadline,
        }
    }

    /// The start of the next call, or `None` once the run is over.
    async fn next(&mut self) -> Option<Instant> {
        let due = match &mut self.interval {
            Some(i) => i.tick().await.into_std(),
            None => Instant::now(),
        };
        (due < self.deadline && Instant::now() < self.deadline).then_some(due)
    }
}

fn rng() -> StdRng {
    StdRng::from_entropy()
}

fn random_entries(rng: &mut StdRng, count: usize, bytes: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let mut e = vec![0u8; bytes];
            rng.fill_bytes(&mut e);
            e
        })
        .collect()
}

/// Checks an append's answer. `sent` is given for a call to verify in full.
fn check_append(
    shared: &Shared,
    sent: Option<&[Vec<u8>]>,
    count: usize,
    resp: &v1::AppendResponse,
) -> Result<Option<SignedTreeHead>, String> {
    if resp.entries.len() != count {
        return Err(format!(
            "{} entries sent, {} answered",
            count,
            resp.entries.len()
        ));
    }
    if let Some(e) = resp.entries.iter().find(|e| e.duplicate) {
        return Err(format!(
            "random entry at {} reported as a duplicate",
            e.leaf_index
        ));
    }
    let head_size = resp.tree_head.as_ref().map_or(0, |h| h.tree_size);
    if let Some(e) = resp.entries.iter().find(|e| e.leaf_index >= head_size) {
        return Err(format!(
            "entry {} outside the returned head of size {head_size}",
            e.leaf_index
        ));
    }
    let Some(sent) = sent else {
        return Ok(None);
    };
    let head = shared.check_head(resp.tree_head.as_ref(), "tree_head")?;
    for (i, (entry, answer)) in sent.iter().zip(&resp.entries).enumerate() {
        let hash = leaf_hash(entry);
        if answer.leaf_hash[..] != hash.0[..] {
            return Err(format!(
                "entries[{i}]: leaf hash is not SHA-256(0x00 || entry)"
            ));
        }
        let proof = hashes_from_wire(&answer.inclusion_proof, "inclusion_proof")
            .map_err(|e| e.to_string())?;
        verify_inclusion(
            answer.leaf_index,
            head.head.tree_size,
            &hash,
            &proof,
            &head.head.root_hash,
        )
        .map_err(|e| format!("entries[{i}] at {}: {e}", answer.leaf_index))?;
    }
    Ok(Some(head))
}

/// The class of a gRPC failure: its code's name.
pub fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// Appends `entries_per_call` entries of `payload` per call.
pub async fn writer(
    mut client: LogClient<Channel>,
    shared: Arc<Shared>,
    pace: Pace,
    offset: Duration,
    entries_per_call: usize,
    payload: Payload,
) -> Recorder {
    let mut rec = Recorder::new();
    let mut rng = rng();
    let mut ticker = Ticker::new(&pace, offset);
    let mut n = 0u64;
    while let Some(start) = ticker.next().await {
        n += 1;
        let full = (n - 1).is_multiple_of(pace.verify_every);
        let outcome = write_once(
            &mut client,
            &shared,
            &mut rng,
            payload,
            entries_per_call,
            full,
        )
        .await;
        let latency = start.elapsed();
        match outcome {
            Ok(head) => {
                rec.ok(&shared.live, Op::Append, latency, entries_per_call as u64);
                if let Some(head) = head {
                    rec.verified += 1;
                    shared.live.verified.fetch_add(1, Ordering::Relaxed);
                    shared.add_head(head, &mut rng);
                }
            }
            Err(Failure::Status(status)) => {
                rec.error(&shared.live, Op::Append, &code_name(&status))
            }
            Err(Failure::Wrong(e)) => {
                eprintln!("append: verification failed: {e}");
                rec.error(&shared.live, Op::Append, VERIFICATION_FAILED);
            }
        }
    }
    rec
}

/// Which reads a reader issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// `per_call` proofs of random leaves per call.
    Inclusion {
        per_call: usize,
    },
    Consistency,
    Entries {
        page: u64,
    },
    /// `SearchEvents` for 100 hits.
    Search {
        kind: crate::events::SearchKind,
        actors: u32,
    },
}

/// Asks for reads of `kind` at random places of the log.
pub async fn reader(
    mut client: LogClient<Channel>,
    shared: Arc<Shared>,
    pace: Pace,
    offset: Duration,
    kind: ReadKind,
) -> Recorder {
    let mut rec = Recorder::new();
    let mut rng = rng();
    let mut ticker = Ticker::new(&pace, offset);
    let mut n = 0u64;
    while let Some(start) = ticker.next().await {
        let size = shared.size.load(Ordering::Relaxed);
        if size == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        n += 1;
        let full = (n - 1).is_multiple_of(pace.verify_every);
        let (op, outcome) = match kind {
            ReadKind::Inclusion { per_call: 1 } => (
                Op::Inclusion,
                inclusion(&mut client, &shared, rng.gen_range(0..size), full).await,
            ),
            ReadKind::Inclusion { per_call } => {
                let indexes = (0..per_call).map(|_| rng.gen_range(0..size)).collect();
                (
                    Op::Inclusion,
                    inclusions(&mut client, &shared, indexes, full).await,
                )
            }
            ReadKind::Consistency => {
                let Some(first) = shared.random_head(&mut rng) else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                (
                    Op::Consistency,
                    consistency(&mut client, &shared, first, full).await,
                )
            }
            ReadKind::Entries { page } => (
                Op::Entries,
                entries(&mut client, &shared, rng.gen_range(0..size), page, full).await,
            ),
            ReadKind::Search { kind, actors } => (
                Op::Search,
                crate::events::search(&mut client, &shared, &mut rng, kind, actors, full).await,
            ),
        };
        let latency = start.elapsed();
        match outcome {
            Ok(items) => {
                rec.ok(&shared.live, op, latency, items);
                if full {
                    rec.verified += 1;
                    shared.live.verified.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(Failure::Status(s)) => rec.error(&shared.live, op, &code_name(&s)),
            Err(Failure::Wrong(e)) => {
                eprintln!("{}: verification failed: {e}", op.name());
                rec.error(&shared.live, op, VERIFICATION_FAILED);
            }
        }
    }
    rec
}

/// Why a call did not count: the server's status, or an answer that failed
/// a check.
pub enum Failure {
    Status(tonic::Status),
    Wrong(String),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Status(s)
    }
}

async fn inclusion(
    client: &mut LogClient<Channel>,
    shared: &Shared,
    index: u64,
    full: bool,
) -> Result<u64, Failure> {
    let resp = client
        .get_inclusion_proof(shared.request(GetInclusionProofRequest {
            leaf: Some(Leaf::LeafIndex(index)),
            tree_size: 0,
        }))
        .await?
        .into_inner();
    if resp.leaf_index != index || resp.tree_size <= index {
        return Err(Failure::Wrong(format!(
            "asked for leaf {index}, got leaf {} in a tree of {}",
            resp.leaf_index, resp.tree_size
        )));
    }
    if full {
        verify_proofs(shared, resp.tree_head.as_ref(), resp.tree_size, [&resp])
            .map_err(Failure::Wrong)?;
    }
    Ok(1)
}

/// Verifies inclusion proofs of one tree size in full: `head` is this
/// log's, signed, of `tree_size`, and each proof leads from its leaf hash to
/// the head's root.
fn verify_proofs<'a>(
    shared: &Shared,
    head: Option<&v1::SignedTreeHead>,
    tree_size: u64,
    proofs: impl IntoIterator<Item = &'a v1::InclusionProof>,
) -> Result<(), String> {
    let head = shared.check_head(head, "tree_head")?;
    if head.head.tree_size != tree_size {
        return Err("the head is not at the proofs' tree size".into());
    }
    for p in proofs {
        let leaf =
            merklog_proto::hash_from_wire(&p.leaf_hash, "leaf_hash").map_err(|e| e.to_string())?;
        let proof = hashes_from_wire(&p.proof, "proof").map_err(|e| e.to_string())?;
        verify_inclusion(p.leaf_index, tree_size, &leaf, &proof, &head.head.root_hash)
            .map_err(|e| format!("leaf {} in {tree_size}: {e}", p.leaf_index))?;
    }
    Ok(())
}

async fn inclusions(
    client: &mut LogClient<Channel>,
    shared: &Shared,
    indexes: Vec<u64>,
    full: bool,
) -> Result<u64, Failure> {
    let resp = client
        .get_inclusion_proofs(
            shared.request(GetInclusionProofsRequest {
                leaves: indexes
                    .iter()
                    .map(|&i| LeafRef {
                        leaf: Some(leaf_ref::Leaf::LeafIndex(i)),
                    })
                    .collect(),
                tree_size: 0,
            }),
        )
        .await?
        .into_inner();
    if resp.proofs.len() != indexes.len() {
        return Err(Failure::Wrong(format!(
            "asked for {} proofs, got {}",
            indexes.len(),
            resp.proofs.len()
        )));
    }
    let tree_size = resp.proofs[0].tree_size;
    if let Some((index, p)) = indexes
        .iter()
        .zip(&resp.proofs)
        .find(|(&index, p)| p.leaf_index != index || p.tree_size != tree_size || index >= tree_size)
    {
        return Err(Failure::Wrong(format!(
            "asked for leaf {index} in one tree of {tree_size}, got leaf {} in a tree of {}",
            p.leaf_index, p.tree_size
        )));
    }
    if full {
        verify_proofs(shared, resp.tree_head.as_ref(), tree_size, &resp.proofs)
            .map_err(Failure::Wrong)?;
    }
    Ok(indexes.len() as u64)
}

async fn consistency(
    client: &mut LogClient<Channel>,
    shared: &Shared,
    first: SignedTreeHead,
    full: bool,
) -> Result<u64, Failure> {
    let m = first.head.tree_size;
    let resp = client
        .get_consistency_proof(shared.request(GetConsistencyProofRequest {
            first_size: m,
            second_size: 0,
        }))
        .await?
        .into_inner();
    if resp.first_size != m || resp.second_size < m {
        return Err(Failure::Wrong(format!(
            "asked from {m}, got {} to {}",
            resp.first_size, resp.second_size
        )));
    }
    if full {
        let check = || -> Result<(), String> {
            let second = shared.check_head(resp.tree_head.as_ref(), "tree_head")?;
            if second.head.tree_size != resp.second_size {
                return Err("the head is not at the proof's second size".into());
            }
            let proof = hashes_from_wire(&resp.proof, "proof").map_err(|e| e.to_string())?;
            verify_consistency(
                m,
                resp.second_size,
                &first.head.root_hash,
                &second.head.root_hash,
                &proof,
            )
            .map_err(|e| format!("{m} to {}: {e}", resp.second_size))
        };
        check().map_err(Failure::Wrong)?;
    }
    Ok(1)
}

async fn entries(
    client: &mut LogClient<Channel>,
    shared: &Shared,
    start: u64,
    page: u64,
    full: bool,
) -> Result<u64, Failure> {
    let resp = client
        .get_entries(shared.request(GetEntriesRequest {
            start,
            end: start + page,
        }))
        .await?
        .into_inner();
    if resp.entries.is_empty() || resp.entries.len() as u64 > page {
        return Err(Failure::Wrong(format!(
            "asked for {page} entries from {start}, got {}",
            resp.entries.len()
        )));
    }
    if full {
        for (k, e) in resp.entries.iter().enumerate() {
            if e.leaf_index != start + k as u64 {
                return Err(Failure::Wrong(format!(
                    "entry {k} of a page from {start} has index {}",
                    e.leaf_index
                )));
            }
            if e.leaf_hash[..] != leaf_hash(&e.data).0[..] {
                return Err(Failure::Wrong(format!(
                    "entry {}: leaf hash is not SHA-256(0x00 || data)",
                    e.leaf_index
                )));
            }
        }
    }
    Ok(resp.entries.len() as u64)
}

/// Polls the latest signed head until `deadline`, feeding the size and the
/// head pool; every polled head's signature is checked.
pub async fn poll_heads(
    mut client: LogClient<Channel>,
    shared: Arc<Shared>,
    every: Duration,
    deadline: Instant,
) -> u64 {
    let mut rng = rng();
    let mut bad = 0;
    while Instant::now() < deadline {
        if let Ok(resp) = client
            .get_signed_tree_head(shared.request(GetSignedTreeHeadRequest {}))
            .await
        {
            let wire = resp.into_inner();
            match shared.check_head(Some(&wire), "signed_tree_head") {
                Ok(head) => shared.add_head(head, &mut rng),
                Err(e) => {
                    eprintln!("get_signed_tree_head: verification failed: {e}");
                    bad += 1;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
    bad
}

/// Appends `total` entries as fast as `writers` concurrent calls of
/// `per_call` entries go, retrying failed calls. Returns the entries
/// appended and the failed calls.
pub async fn prefill(
    clients: &[LogClient<Channel>],
    shared: Arc<Shared>,
    total: u64,
    writers: usize,
    per_call: usize,
    payload: Payload,
) -> (u64, u64) {
    let remaining = Arc::new(AtomicU64::new(total));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut client = clients[w % clients.len()].clone();
        let remaining = remaining.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = rng();
            let (mut done, mut failed) = (0u64, 0u64);
            loop {
                let want = remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                        r.checked_sub(r.min(per_call as u64)).filter(|_| r > 0)
                    })
                    .map(|r| r.min(per_call as u64));
                let Ok(count) = want else { break };
                loop {
                    match write_once(
                        &mut client,
                        &shared,
                        &mut rng,
                        payload,
                        count as usize,
                        false,
                    )
                    .await
                    {
                        Ok(_) => break,
                        Err(Failure::Status(s)) => {
                            failed += 1;
                            eprintln!("prefill: append failed ({}), retrying", code_name(&s));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(Failure::Wrong(e)) => {
                            failed += 1;
                            eprintln!("prefill: verification failed: {e}");
                            break;
                        }
                    }
                }
                done += count;
                shared.live.prefilled.fetch_add(count, Ordering::Relaxed);
            }
            (done, failed)
        }));
    }
    let (mut done, mut failed) = (0, 0);
    for t in tasks {
        let (d, f) = t.await.expect("prefill task panicked");
        done += d;
        failed += f;
    }
    (done, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_merkle::Hash;
    use merklog_proto::sth_to_wire;
    use merklog_sth::{LogSigner, TreeHead};

    fn head(size: u64) -> TreeHead {
        TreeHead {
            tree_size: size,
            timestamp_ms: 1_700_000_000_000 + size,
            root_hash: Hash([size as u8; 32]),
        }
    }

    #[test]
    fn a_remembered_head_does_not_vouch_for_other_signature_bytes() {
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let shared = Shared::new(signer.public_key().clone(), None);
        let log_id = shared.log_id;
        let good = sth_to_wire(&signer.sign(head(5)), &log_id);
        assert!(shared.check_head(Some(&good), "h").is_ok());
        // Checked again from memory: still accepted.
        assert!(shared.check_head(Some(&good), "h").is_ok());

        // The same head with a signature over another head: refused, even
        // though its tree head equals a remembered one.
        let mut forged = good.clone();
        forged.signature = signer.sign(head(6)).signature;
        let e = shared.check_head(Some(&forged), "h").unwrap_err();
        assert!(e.contains("bad signature"), "{e}");

        // Another key's signature over a remembered head: refused.
        let other = LogSigner::generate(&mut rand_core::OsRng);
        let mut foreign = good.clone();
        foreign.signature = other.sign(head(5)).signature;
        assert!(shared.check_head(Some(&foreign), "h").is_err());

        // Pushed out of memory by newer heads, the first is checked afresh.
        for size in 10..10 + RECENTLY_VERIFIED as u64 {
            let h = sth_to_wire(&signer.sign(head(size)), &log_id);
            assert!(shared.check_head(Some(&h), "h").is_ok());
        }
        assert_eq!(shared.verified.lock().unwrap().len(), RECENTLY_VERIFIED);
        assert!(shared.check_head(Some(&good), "h").is_ok());
    }
}
