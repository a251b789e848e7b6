//! The verifying client against a log that lies (issue 22): every public
//! method of `merklog_client::Client` that talks to a log refuses each lie
//! that concerns it, with the documented error variant; with no lie, the
//! same calls succeed through the same liar, so the liar is not simply
//! refusing everything.
//!
//! The table of what is refused how is in `docs/TESTING.md`; the commands of
//! the `merklog` binary are tested against the same liar in
//! `crates/merklog-cli/tests/lying_server.rs`.

mod client_common;

use client_common::{signer, Log};
use merklog_client::{Client, ClientError, VerifiedHead};
use merklog_merkle::leaf_hash;
use merklog_tests::liar::{Lie, LyingLog};
use merklog_tests::TestDb;

/// A public method of the client that talks to the log, called the way a
/// user would: a client that trusts the head of size 4 while the log has
/// grown past it (to 6, and further with each append).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    LogInfo,
    FetchLatest,
    LatestHead,
    /// `head_at(2)`: a head older than the trusted one.
    HeadAt,
    /// The latest head as `fetch_latest` serves it, then
    /// `check_against_trusted`.
    CheckAgainstTrusted,
    Append,
    /// Leaf 1 ("b") into the latest head, by index, leaf hash and entry.
    InclusionByIndex,
    InclusionByLeafHash,
    InclusionByEntry,
    /// Leaves 0..4 into the latest head; every inner result must verify.
    InclusionsByIndex,
    /// From the head of size 2 to the latest.
    Consistency,
    /// Entries 0..4.
    EntriesPage,
    Entries,
    /// Entries 0..4 proved into the trusted head of size 4.
    ProvenEntries,
}

use Call::*;

const ALL_CALLS: [Call; 14] = [
    LogInfo,
    FetchLatest,
    LatestHead,
    HeadAt,
    CheckAgainstTrusted,
    Append,
    InclusionByIndex,
    InclusionByLeafHash,
    InclusionByEntry,
    InclusionsByIndex,
    Consistency,
    EntriesPage,
    Entries,
    ProvenEntries,
];

/// Every call that reads a signed head from the log.
const HEAD_READERS: [Call; 10] = [
    FetchLatest,
    LatestHead,
    HeadAt,
    Append,
    InclusionByIndex,
    InclusionByLeafHash,
    InclusionByEntry,
    InclusionsByIndex,
    Consistency,
    ProvenEntries,
];

/// Every call that checks the latest head against the trusted one.
const LATEST_CHECKERS: [Call; 8] = [
    LatestHead,
    CheckAgainstTrusted,
    Append,
    InclusionByIndex,
    InclusionByLeafHash,
    InclusionByEntry,
    InclusionsByIndex,
    Consistency,
];

/// Every call that reads an inclusion proof.
const PROOF_READERS: [Call; 6] = [
    Append,
    InclusionByIndex,
    InclusionByLeafHash,
    InclusionByEntry,
    InclusionsByIndex,
    ProvenEntries,
];

/// `(lie, calls that must refuse it, the error kind they must refuse it
/// with)`. A lie a call cannot see (a tampered entry to `latest_head`) is
/// left out; the ones a call is documented not to catch are in
/// `docs/TESTING.md`.
fn table() -> Vec<(Lie, Vec<Call>, &'static str)> {
    let with = |calls: &[Call], more: &[Call]| [calls, more].concat();
    vec![
        (
            Lie::BadInclusionProof,
            PROOF_READERS.to_vec(),
            "bad_inclusion_proof",
        ),
        (
            Lie::NeighbourProof,
            PROOF_READERS.to_vec(),
            "bad_inclusion_proof",
        ),
        // A receipt that names another leaf's index and proof cannot place
        // the entry given; the other answers fail the echo of what was
        // asked.
        (Lie::NeighbourAnswer, vec![Append], "bad_inclusion_proof"),
        (
            Lie::NeighbourAnswer,
            vec![
                InclusionByIndex,
                InclusionByLeafHash,
                InclusionByEntry,
                InclusionsByIndex,
                EntriesPage,
                Entries,
                ProvenEntries,
            ],
            "unexpected",
        ),
        // Every call asks the log info (for its page size) or a head.
        (
            Lie::ForeignKey,
            with(&HEAD_READERS, &[LogInfo, EntriesPage, Entries]),
            "wrong_log",
        ),
        (
            Lie::ForeignLogId,
            with(&HEAD_READERS, &[LogInfo, EntriesPage, Entries]),
            "wrong_log",
        ),
        (Lie::ForgedSignature, HEAD_READERS.to_vec(), "bad_signature"),
        (Lie::FutureHead, HEAD_READERS.to_vec(), "future_head"),
        (
            Lie::BackDatedHead,
            LATEST_CHECKERS.to_vec(),
            "time_went_back",
        ),
        (
            Lie::Fork,
            with(&LATEST_CHECKERS, &[HeadAt, ProvenEntries]),
            "fork",
        ),
        // A consistency proof that does not link the trusted head to a new
        // one is a fork (check_against_trusted), wherever it is asked.
        (
            Lie::BadConsistencyProof,
            with(&LATEST_CHECKERS, &[HeadAt]),
            "fork",
        ),
        (
            Lie::Rollback(2),
            LATEST_CHECKERS
                .iter()
                .copied()
                .filter(|c| *c != Append)
                .collect(),
            "rollback",
        ),
        // A receipt under an older head (consistent with the trusted one)
        // cannot hold the new entry.
        (Lie::Rollback(2), vec![Append], "bad_inclusion_proof"),
        (
            Lie::TamperedEntry,
            vec![EntriesPage, Entries, ProvenEntries],
            "bad_entry",
        ),
        // Substituted entries hash to the leaf hashes served with them:
        // only a proof into the signed head shows they are not the log's.
        (Lie::SubstitutedEntry, vec![ProvenEntries], "bad_entry"),
        (Lie::SubstitutedEntry, vec![Append], "unexpected"),
    ]
}

/// An honest log with heads at sizes 2, 4 and 6, the liar in front of it,
/// and the head of size 4, which every client starts from.
struct World {
    log: Log,
    liar: LyingLog,
    trusted: VerifiedHead,
    appends: u32,
}

impl World {
    async fn new() -> World {
        let log = Log::start(TestDb::sqlite(), signer()).await;
        log.append_batches(&[&["a", "b"], &["c", "d"], &["e", "f"]])
            .await;
        let trusted = log.client().await.head_at(4).await.expect("honest head");
        let liar = LyingLog::start(&log.server.url(), log.signer.clone())
            .await
            .expect("start the liar");
        World {
            log,
            liar,
            trusted,
            appends: 0,
        }
    }

    /// Makes `call` through the liar with a new client that trusts the head
    /// of size 4.
    async fn call(&mut self, call: Call) -> Result<(), ClientError> {
        let mut c = Client::connect(&self.liar.url(), self.log.signer.public_key().clone())
            .await?
            .with_trusted_head(self.trusted.clone());
        match call {
            LogInfo => c.log_info().await.map(drop),
            FetchLatest => c.fetch_latest().await.map(drop),
            LatestHead => c.latest_head().await.map(drop),
            HeadAt => c.head_at(2).await.map(drop),
            CheckAgainstTrusted => {
                let head = c.fetch_latest().await?;
                c.check_against_trusted(&head, false).await
            }
            Append => {
                self.appends += 1;
                let entry = format!("appended {}", self.appends).into_bytes();
                c.append(vec![entry]).await.map(drop)
            }
            InclusionByIndex => c.inclusion_by_index(1, None).await.map(drop),
            InclusionByLeafHash => c
                .inclusion_by_leaf_hash(leaf_hash(b"b"), None)
                .await
                .map(drop),
            InclusionByEntry => c.inclusion_by_entry(b"b", None).await.map(drop),
            InclusionsByIndex => {
                for proven in c.inclusions_by_index(&[0, 1, 2, 3], None).await? {
                    proven?;
                }
                Ok(())
            }
            Consistency => c.consistency(2, None).await.map(drop),
            EntriesPage => c.entries_page(0, 4).await.map(drop),
            Entries => c.entries(0, 4).await.map(drop),
            ProvenEntries => c.proven_entries(&self.trusted, 0, 4).await.map(drop),
        }
    }
}

#[tokio::test]
async fn every_client_method_refuses_every_lie_that_concerns_it() {
    let mut world = World::new().await;
    let mut failures = Vec::new();

    // The liar telling the truth: everything passes through it.
    world.liar.tell(Lie::None);
    for call in ALL_CALLS {
        if let Err(e) = world.call(call).await {
            failures.push(format!("{call:?} with no lie: refused: {e:?}"));
        }
    }

    let mut pairs = 0;
    for (lie, calls, kind) in table() {
        world.liar.tell(lie);
        for call in calls {
            pairs += 1;
            match world.call(call).await {
                Ok(()) => failures.push(format!("{call:?} accepted the lie {lie:?}")),
                Err(e) if e.kind() != kind => failures.push(format!(
                    "{call:?} refused the lie {lie:?} as {} (expected {kind}): {e}",
                    e.kind()
                )),
                Err(e) if !e.is_verification_failure() => failures.push(format!(
                    "{call:?} refused the lie {lie:?} but not as a verification failure: {e}"
                )),
                Err(_) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {pairs} (method, lie) pairs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The liar itself ran without fault.
    world.liar.stop().await.expect("the liar stops cleanly");
    world
        .log
        .server
        .stop()
        .await
        .expect("the log stops cleanly");
}

/// What the client is documented not to check, shown so that a change in
/// it is a decision: `fetch_latest` checks a head's signature and log but
/// not its place in history, and a page of entries that hash to their
/// leaf hashes is all `entries_page` can know without proofs.
#[tokio::test]
async fn documented_limits_of_the_unproved_calls() {
    let world = World::new().await;
    for lie in [Lie::Fork, Lie::Rollback(2), Lie::BackDatedHead] {
        world.liar.tell(lie);
        let mut c = Client::connect(&world.liar.url(), world.log.signer.public_key().clone())
            .await
            .unwrap()
            .with_trusted_head(world.trusted.clone());
        let head = c.fetch_latest().await.unwrap_or_else(|e| {
            panic!("fetch_latest checks only signature and log ({lie:?}): {e}")
        });
        // Fetching is not trusting.
        assert_eq!(c.trusted_head(), Some(&world.trusted), "{lie:?}: {head:?}");
    }
    world.liar.tell(Lie::SubstitutedEntry);
    let mut c = Client::connect(&world.liar.url(), world.log.signer.public_key().clone())
        .await
        .unwrap();
    let page = c.entries_page(0, 4).await.unwrap();
    assert!(page.iter().all(|e| e.data.starts_with(b"substituted ")));
    // An auditor that takes pages unchecked sees the tampering itself.
    world.liar.tell(Lie::TamperedEntry);
    let served = c.served_entries_page(0, 4).await.unwrap();
    for e in served {
        let index = e.index;
        assert!(
            matches!(e.check(), Err(ClientError::LeafHash { leaf_index, .. }) if leaf_index == index),
            "served entry {index}"
        );
    }
    world.liar.stop().await.unwrap();
    world.log.server.stop().await.unwrap();
}
