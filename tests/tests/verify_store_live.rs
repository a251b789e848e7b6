//! `verify-store` against a log that is being appended to: it reads one
//! consistent snapshot of the store, so the leaves, tiles and heads that
//! commit between its reads cannot seem to disagree (no false alarm), and
//! damage is still caught while appends run.
//!
//! The checker's reads are interleaved with appends deterministically: a
//! wrapper waits, before each read but the first, until the appender has
//! committed another batch. The same interleaving over the live store (the
//! checker before it read a snapshot) raises the false alarms, which shows
//! that the test bites.

mod client_common;

use std::sync::Arc;

use client_common::{signer, text, Log, Scratch};
use merklog_cli::client::verify_store::{self, verify_store, StoreProblem, VerifyStoreArgs};
use merklog_cli::client::Progress;
use merklog_sth::{SignedTreeHead, TreeHead};
use merklog_storage::{
    AnyStore, Entry, LeafNodes, LeafTile, LogSnapshot, LogStore, Result, TILE_LEAVES,
};
use merklog_tests::TestDb;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Appends a batch of 16 entries (one tile) each time it is asked, and
/// says when it is committed.
struct Appender {
    requests: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<u64>,
}

impl Appender {
    async fn start(log: &Log) -> Appender {
        let mut client = log.client().await;
        let (requests, mut asked) = mpsc::channel::<oneshot::Sender<()>>(1);
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(done) = asked.recv().await {
                let entries = (0..TILE_LEAVES)
                    .map(|i| format!("live {n} {i}").into_bytes())
                    .collect();
                client.append(entries).await.expect("append verifies");
                n += 1;
                let _ = done.send(());
            }
            n
        });
        Appender { requests, task }
    }

    /// Returns how many batches were appended.
    async fn stop(self) -> u64 {
        drop(self.requests);
        self.task.await.expect("the appender did not panic")
    }
}

/// Reads through `inner`, but before each of its first [`INTERLEAVED`]
/// reads (other than the pages of tree heads, read first) has the appender
/// commit one more batch: each of those reads meets a store that has grown
/// since the read before. (Past them the appender rests, so that a checker
/// of the live store, which reads up to the last leaf, catches up.)
struct Interleaved<S> {
    inner: S,
    appender: mpsc::Sender<oneshot::Sender<()>>,
    /// Batches committed while the checker read.
    appended: u64,
}

/// How many of a checker's reads are each preceded by an append.
const INTERLEAVED: u64 = 8;

impl<S> Interleaved<S> {
    fn new(inner: S, appender: &Appender) -> Self {
        Interleaved {
            inner,
            appender: appender.requests.clone(),
            appended: 0,
        }
    }

    async fn between_reads(&mut self) {
        if self.appended == INTERLEAVED {
            return;
        }
        let (done, committed) = oneshot::channel();
        self.appender.send(done).await.expect("the appender runs");
        committed.await.expect("the appender appended");
        self.appended += 1;
    }
}

impl<S: LogSnapshot> LogSnapshot for Interleaved<S> {
    async fn leaf_count(&mut self) -> Result<u64> {
        self.between_reads().await;
        self.inner.leaf_count().await
    }
    async fn latest_tree_head(&mut self) -> Result<Option<SignedTreeHead>> {
        self.between_reads().await;
        self.inner.latest_tree_head().await
    }
    async fn tree_heads(
        &mut self,
        after: Option<TreeHead>,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>> {
        // Not here: the checker pages through the heads until a page is
        // empty, which a head per page would never let happen.
        self.inner.tree_heads(after, limit).await
    }
    async fn entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>> {
        self.between_reads().await;
        self.inner.entries(start, end).await
    }
    async fn leaves_with_nodes(&mut self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        self.between_reads().await;
        self.inner.leaves_with_nodes(start, end).await
    }
    async fn leaf_tiles(&mut self, first: u64, end: u64) -> Result<Option<Vec<LeafTile>>> {
        self.between_reads().await;
        self.inner.leaf_tiles(first, end).await
    }
}

/// The live store, each read on its own: how `verify-store` read before it
/// took a snapshot.
struct Live(Arc<AnyStore>);

impl LogSnapshot for Live {
    async fn leaf_count(&mut self) -> Result<u64> {
        self.0.leaf_count().await
    }
    async fn latest_tree_head(&mut self) -> Result<Option<SignedTreeHead>> {
        self.0.latest_tree_head().await
    }
    async fn tree_heads(
        &mut self,
        after: Option<TreeHead>,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>> {
        self.0.tree_heads(after, limit).await
    }
    async fn entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>> {
        self.0.entries(start, end).await
    }
    async fn leaves_with_nodes(&mut self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        self.0.leaves_with_nodes(start, end).await
    }
    async fn leaf_tiles(&mut self, first: u64, end: u64) -> Result<Option<Vec<LeafTile>>> {
        self.0.leaf_tiles(first, end).await
    }
}

fn describe(problems: &[StoreProblem]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// A log of 5 batches of 16 entries, with a checker's own connection to its
/// database (as `verify-store` opens one).
async fn live_log(db: TestDb) -> (Log, Arc<AnyStore>) {
    let log = Log::start(db, signer()).await;
    let mut client = log.client().await;
    for b in 0..5 {
        let entries = (0..TILE_LEAVES)
            .map(|i| format!("first {b} {i}").into_bytes())
            .collect();
        client.append(entries).await.expect("append verifies");
    }
    let checker = Arc::new(log.db.open().await.expect("open the store"));
    (log, checker)
}

/// Three passes of the checker on a snapshot, each read interleaved with
/// an append; returns the problems each found.
async fn passes_on_a_snapshot(
    checker: &AnyStore,
    log: &Log,
    appender: &Appender,
    page_size: u64,
) -> Vec<Vec<StoreProblem>> {
    let mut found = Vec::new();
    for _ in 0..3 {
        let mut snapshot =
            Interleaved::new(checker.snapshot().await.expect("a snapshot"), appender);
        let report = verify_store(
            &mut snapshot,
            log.signer.public_key(),
            None,
            page_size,
            &mut Progress::quiet(),
        )
        .await
        .expect("the store can be read");
        assert_eq!(
            snapshot.appended, INTERLEAVED,
            "batches committed during the pass"
        );
        // The pass checked the store as it was at its first read, before
        // the appends: its leaf count is its latest head's size, and the
        // appends came after both.
        assert_eq!(
            report.latest_tree_head.as_ref().map(|h| h.tree_size),
            Some(report.leaves),
        );
        assert_eq!(
            checker.leaf_count().await.unwrap(),
            report.leaves + INTERLEAVED * TILE_LEAVES
        );
        found.push(report.problems);
    }
    found
}

async fn checks_a_store_that_is_appended_to(db: TestDb) {
    let (log, checker) = live_log(db).await;
    let appender = Appender::start(&log).await;

    for problems in passes_on_a_snapshot(&checker, &log, &appender, 64).await {
        assert!(problems.is_empty(), "{}", describe(&problems));
    }

    // The same interleaving over the live store raises a false alarm: the
    // head read after the leaf count covers more leaves than were counted.
    let mut live = Interleaved::new(Live(checker.clone()), &appender);
    let report = verify_store(
        &mut live,
        log.signer.public_key(),
        None,
        64,
        &mut Progress::quiet(),
    )
    .await
    .expect("the store can be read");
    assert_eq!(live.appended, INTERLEAVED);
    drop(live);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, StoreProblem::LeafCount { .. })),
        "{}",
        describe(&report.problems)
    );
    // The command itself, with appends running beside it.
    let scratch = Scratch::new();
    let mut client = log.client().await;
    for pass in 0..3 {
        let mut out = Vec::new();
        let appends = async {
            for b in 0..8 {
                let entries = (0..TILE_LEAVES)
                    .map(|i| format!("beside {pass} {b} {i}").into_bytes())
                    .collect();
                client.append(entries).await.expect("append verifies");
            }
        };
        let (checked, ()) = tokio::join!(
            verify_store::run(
                VerifyStoreArgs {
                    database_url: log.db.url(),
                    public_key: scratch.key_file(&log.signer),
                    trusted_head: None,
                    page_size: 16,
                    out: text(),
                },
                &mut out,
            ),
            appends
        );
        let printed = String::from_utf8(out).unwrap();
        checked.unwrap_or_else(|e| panic!("{e}: {printed}"));
        assert!(printed.starts_with("OK: "), "{printed}");
    }
    assert!(appender.stop().await > 0);
}

#[tokio::test]
async fn verify_store_reads_one_snapshot_of_a_postgres_log_while_appends_run() {
    checks_a_store_that_is_appended_to(TestDb::postgres().await).await;
}

#[tokio::test]
async fn verify_store_reads_one_snapshot_of_a_sqlite_log_while_appends_run() {
    checks_a_store_that_is_appended_to(TestDb::sqlite()).await;
}

#[tokio::test]
async fn verify_store_still_catches_damage_while_appends_run() {
    let (log, checker) = live_log(TestDb::postgres().await).await;
    let superuser = match log.store.as_ref() {
        AnyStore::Postgres(pg) => pg.pool().clone(),
        AnyStore::Sqlite(_) => unreachable!("a PostgreSQL log"),
    };
    let appender = Appender::start(&log).await;
    // Entry 5 changed behind the log's back (triggers off for the UPDATE).
    let mut tx = superuser.begin().await.unwrap();
    for sql in [
        "ALTER TABLE leaves DISABLE TRIGGER ALL",
        "UPDATE leaves SET entry = 'forged' WHERE idx = 5",
        "ALTER TABLE leaves ENABLE TRIGGER ALL",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();

    for problems in passes_on_a_snapshot(&checker, &log, &appender, 64).await {
        assert!(
            matches!(problems.as_slice(), [StoreProblem::LeafHash { idx: 5, .. }]),
            "{}",
            describe(&problems)
        );
    }
    assert!(appender.stop().await > 0);
}
