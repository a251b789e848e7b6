//! Time windows proved complete, end to end over real gRPC: `merklog
//! export` writes a window's entries and its proof bundle, `merklog
//! verify-export` checks them offline; a bundle with an entry deleted, two
//! entries swapped, a head withheld or a time changed is refused with what
//! is wrong named; a window past the latest head is reported open; a window
//! before the first entry is empty but proven. On PostgreSQL, a store
//! changed behind the log's back (an entry deleted, two swapped, an
//! integration time moved) is caught by the export, `verify-store` and
//! `audit`, naming the index.
//!
//! The server's heads are dated by a clock the test sets, so each batch has
//! a known time: the empty head at `BASE`, then batches at 1 h, 2 h, 3 h and
//! 4 h after it.

mod client_common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use client_common::{config, signer, text, Scratch};
use merklog_cli::client::audit::{audit, AuditOptions, AuditProblem};
use merklog_cli::client::export::{self, ExportArgs};
use merklog_cli::client::verify_export::{self, VerifyExportArgs};
use merklog_cli::client::verify_store::{verify_store, StoreProblem};
use merklog_cli::client::{CommandError, LogArgs, Progress, SafetyArgs};
use merklog_client::{Client, ClientError};
use merklog_server::Clock;
use merklog_sth::LogSigner;
use merklog_storage::AnyStore;
use merklog_tests::{TestDb, TestServer};

/// 2025-12-03T14:00:00Z: in the past, so no head is dated in the future.
const BASE: u64 = 1_764_770_400_000;
const HOUR: u64 = 3_600_000;

/// A clock the test moves.
#[derive(Debug)]
struct SetClock(AtomicU64);

impl Clock for SetClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

struct TimedLog {
    server: TestServer,
    store: Arc<AnyStore>,
    signer: LogSigner,
    clock: Arc<SetClock>,
    _db: TestDb,
}

const BATCHES: [(u64, &[&str]); 4] = [
    (HOUR, &["a0", "a1"]),
    (2 * HOUR, &["b0", "b1", "b2"]),
    (3 * HOUR, &["c0"]),
    (4 * HOUR, &["d0", "d1"]),
];

impl TimedLog {
    /// A log whose empty head is dated `BASE`, with [`BATCHES`] appended.
    async fn start(db: TestDb) -> TimedLog {
        let clock = Arc::new(SetClock(AtomicU64::new(BASE)));
        let store = Arc::new(db.open().await.expect("open the store"));
        let signer = signer();
        let server = TestServer::start_with_clock(
            store.clone(),
            signer.clone(),
            config(),
            clock.clone() as Arc<dyn Clock>,
        )
        .await
        .expect("start the server");
        let log = TimedLog {
            server,
            store,
            signer,
            clock,
            _db: db,
        };
        let mut client = log.client().await;
        for (at, batch) in BATCHES {
            log.clock.0.store(BASE + at, Ordering::SeqCst);
            let entries = batch.iter().map(|e| e.as_bytes().to_vec()).collect();
            client.append(entries).await.expect("append verifies");
        }
        log
    }

    async fn client(&self) -> Client {
        Client::connect(&self.server.url(), self.signer.public_key().clone())
            .await
            .expect("connect")
    }

    fn args(&self, scratch: &Scratch) -> LogArgs {
        LogArgs {
            server: self.server.url(),
            public_key: scratch.key_file(&self.signer),
            state: Some(scratch.path("state.json")),
            token: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            safety: SafetyArgs::default(),
        }
    }

    /// Runs `merklog export` for `[since, until)` and returns its output
    /// and the two files.
    async fn export(
        &self,
        scratch: &Scratch,
        since: &str,
        until: &str,
    ) -> Result<(String, PathBuf, PathBuf), CommandError> {
        let entries = scratch.path("window.jsonl");
        let bundle = scratch.path("window.bundle.json");
        let mut out = Vec::new();
        export::run(
            ExportArgs {
                log: self.args(scratch),
                since: since.into(),
                until: until.into(),
                entries: entries.clone(),
                bundle: bundle.clone(),
                out: text(),
            },
            &mut out,
        )
        .await?;
        Ok((String::from_utf8(out).unwrap(), entries, bundle))
    }
}

fn verify_args(scratch: &Scratch, signer: &LogSigner, bundle: PathBuf) -> VerifyExportArgs {
    VerifyExportArgs {
        public_key: scratch.key_file(signer),
        bundle,
        entries: None,
        out: text(),
    }
}

/// The `data` of each line of an entries file.
fn lines_data(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let e: merklog_client::json::EntryJson = serde_json::from_str(l).unwrap();
            String::from_utf8(e.data).unwrap()
        })
        .collect()
}

/// Checks a mutated bundle offline and returns the client error.
fn refused(scratch: &Scratch, log: &TimedLog, bundle: &serde_json::Value) -> ClientError {
    let path = scratch.save("mutated.bundle.json", bundle);
    match verify_export::check(&verify_args(scratch, &log.signer, path)) {
        Err(CommandError::Client(e)) => {
            assert!(e.is_verification_failure(), "{e}");
            e
        }
        Err(other) => panic!("expected a verification failure, got {other}"),
        Ok(_) => panic!("the mutated bundle verified"),
    }
}

#[tokio::test]
async fn a_complete_window_verifies_online_and_offline() {
    let log = TimedLog::start(TestDb::sqlite()).await;
    let scratch = Scratch::new();
    // 15:30 to 17:30: the batches of 16:00 and 17:00.
    let (out, entries, bundle) = log
        .export(&scratch, "2025-12-03T15:30:00Z", "2025-12-03T17:30:00Z")
        .await
        .expect("the export verifies");
    assert!(out.starts_with("OK: "), "{out}");
    assert!(out.contains("4 entries were integrated"), "{out}");
    assert!(out.contains("30 min 0 s earlier"), "{out}");
    assert!(out.contains("the list is complete"), "{out}");
    assert_eq!(lines_data(&entries), vec!["b0", "b1", "b2", "c0"]);

    let mut args = verify_args(&scratch, &log.signer, bundle.clone());
    args.entries = Some(entries.clone());
    let mut printed = Vec::new();
    verify_export::run(args.clone(), &mut printed).expect("verifies offline");
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.contains("4 entries"), "{printed}");

    // The entries file must be the window, all of it.
    let text = std::fs::read_to_string(&entries).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&entries, lines.join("\n")).unwrap();
    match verify_export::check(&args) {
        Err(CommandError::Client(e @ ClientError::EntryMissing { index: 3, .. })) => {
            assert!(e.to_string().contains("entry 3 missing"), "{e}");
        }
        other => panic!("expected entry 3 missing, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tampered_bundle_is_refused_naming_what_is_wrong() {
    let log = TimedLog::start(TestDb::sqlite()).await;
    let scratch = Scratch::new();
    // 14:30 to 17:30: start head at size 0 (14:00), batches a, b, c, end
    // head at size 7 (18:00).
    let (_, _, bundle) = log
        .export(&scratch, "2025-12-03T14:30:00Z", "2025-12-03T17:30:00Z")
        .await
        .unwrap();
    let good = scratch.load(&bundle);
    assert_eq!(good["heads"].as_array().unwrap().len(), 5);

    // One entry deleted.
    let mut b = good.clone();
    b["entries"].as_array_mut().unwrap().remove(3);
    let err = refused(&scratch, &log, &b);
    assert!(
        matches!(err, ClientError::EntryMissing { index: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("entry 3 missing"), "{err}");

    // Two entries exchanged.
    let mut b = good.clone();
    b["entries"].as_array_mut().unwrap().swap(2, 3);
    let err = refused(&scratch, &log, &b);
    assert!(
        matches!(
            err,
            ClientError::EntryOutOfPlace {
                found: 3,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );
    // Exchanged with their indexes kept: the head over them says so.
    let mut b = good.clone();
    let entries = b["entries"].as_array_mut().unwrap();
    let (x, y) = (entries[2].clone(), entries[3].clone());
    for (slot, other) in [(2, &y), (3, &x)] {
        let index = entries[slot]["leaf_index"].clone();
        entries[slot] = other.clone();
        entries[slot]["leaf_index"] = index;
    }
    let err = refused(&scratch, &log, &b);
    assert!(
        matches!(
            err,
            ClientError::WindowRoot {
                first: 2,
                tree_size: 5,
                ..
            }
        ),
        "{err}"
    );

    // The head at size 5 (16:00) withheld.
    let mut b = good.clone();
    b["heads"].as_array_mut().unwrap().remove(2);
    let err = refused(&scratch, &log, &b);
    assert!(
        matches!(
            err,
            ClientError::HeadWithheld {
                tree_size: 5,
                first: 2
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("head at size 5 withheld: entries 2..5 have no covering head"),
        "{err}"
    );

    // An integration time moved past the head that covers the entry.
    let mut b = good.clone();
    b["entries"][5]["integrated_ms"] = (BASE + 3 * HOUR + 1).into();
    let err = refused(&scratch, &log, &b);
    assert!(
        matches!(err, ClientError::EntryTime { index: 5, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("integrated time of entry 5"),
        "{err}"
    );
}

#[tokio::test]
async fn a_window_past_the_latest_head_is_open_and_one_before_the_log_is_empty() {
    let log = TimedLog::start(TestDb::sqlite()).await;
    let scratch = Scratch::new();
    let (out, entries, bundle) = log
        .export(&scratch, "2025-12-03T18:30:00Z", "2025-12-03T20:00:00Z")
        .await
        .expect("an open window verifies");
    assert!(out.starts_with("OK (OPEN WINDOW)"), "{out}");
    assert!(out.contains("complete only up to"), "{out}");
    assert!(lines_data(&entries).is_empty());
    let window = verify_export::check(&verify_args(&scratch, &log.signer, bundle)).unwrap();
    assert!(!window.closed());

    // Before the first entry: the empty tree's head starts and ends it.
    let (out, entries, bundle) = log
        .export(&scratch, "1764760000000", "1764763000000")
        .await
        .expect("an empty window verifies");
    assert!(out.contains("0 entries were integrated"), "{out}");
    assert!(out.contains("before the log's first entry"), "{out}");
    assert!(lines_data(&entries).is_empty());
    let window = verify_export::check(&verify_args(&scratch, &log.signer, bundle)).unwrap();
    assert!(window.closed());
    assert_eq!(window.end.tree_size(), 0);

    // A bad time is a usage error (exit code 2).
    let err = log
        .export(&scratch, "yesterday", "2025-12-03T20:00:00Z")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}

// ------------------------------------------------ the store, tampered

fn superuser(log: &TimedLog) -> &sqlx::PgPool {
    match log.store.as_ref() {
        AnyStore::Postgres(pg) => pg.pool(),
        AnyStore::Sqlite(_) => panic!("these tests tamper with PostgreSQL"),
    }
}

/// Runs `statements` with the log's triggers disabled, as a database owner
/// can, and enables them again.
async fn behind_the_logs_back(log: &TimedLog, statements: &[&str]) {
    let pool = superuser(log);
    for table in ["leaves", "tree_heads", "leaf_tiles"] {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER ALL"))
            .execute(pool)
            .await
            .unwrap();
    }
    for sql in statements {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    for table in ["leaves", "tree_heads", "leaf_tiles"] {
        sqlx::query(&format!("ALTER TABLE {table} ENABLE TRIGGER ALL"))
            .execute(pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn entries_deleted_or_swapped_in_the_store_are_caught_by_the_export() {
    let log = TimedLog::start(TestDb::postgres().await).await;
    let scratch = Scratch::new();
    behind_the_logs_back(
        &log,
        &[
            // Entries 2 and 3 exchanged, with their leaf hashes (unique, so
            // through a placeholder).
            "UPDATE leaves SET leaf_hash = sha256('placeholder'::bytea), entry = 'x' WHERE idx = 2",
            "UPDATE leaves SET leaf_hash = sha256('\\x00'::bytea || 'b0'::bytea), entry = 'b0' WHERE idx = 3",
            "UPDATE leaves SET leaf_hash = sha256('\\x00'::bytea || 'b1'::bytea), entry = 'b1' WHERE idx = 2",
        ],
    )
    .await;
    let err = log
        .export(&scratch, "2025-12-03T15:30:00Z", "2025-12-03T17:30:00Z")
        .await
        .unwrap_err();
    match &err {
        CommandError::Client(ClientError::WindowRoot {
            first: 2,
            tree_size: 5,
            ..
        }) => {}
        other => panic!("expected a root mismatch over entries 2..5, got {other}"),
    }
    assert_eq!(err.exit_code(), 1);

    behind_the_logs_back(&log, &["DELETE FROM leaves WHERE idx = 4"]).await;
    let err = log
        .export(&scratch, "2025-12-03T15:30:00Z", "2025-12-03T17:30:00Z")
        .await
        .unwrap_err();
    // The log refuses to serve around the hole, naming it.
    assert!(err.to_string().contains("leaf 4 is missing"), "{err}");
}

#[tokio::test]
async fn a_moved_integration_time_is_caught_by_verify_store_and_audit() {
    let log = TimedLog::start(TestDb::postgres().await).await;
    // Entry 3 (batch b, 16:00) moved to 17:30, after the head that first
    // covers it (size 5, 16:00).
    let moved = BASE + 3 * HOUR + HOUR / 2;
    behind_the_logs_back(
        &log,
        &[&format!(
            "UPDATE leaves SET integrated_ms = {moved} WHERE idx = 3"
        )],
    )
    .await;

    let report = verify_store(
        &mut log.store.snapshot().await.unwrap(),
        log.signer.public_key(),
        None,
        4,
        &mut Progress::quiet(),
    )
    .await
    .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, StoreProblem::IntegratedTime { idx: 3, .. })),
        "{:?}",
        report.problems
    );
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter()
            .any(|t| t.contains("leaves row idx=3") && t.contains("integrated time of entry 3")),
        "{text:?}"
    );

    let mut client = log.client().await;
    let report = audit(
        &mut client,
        AuditOptions { proofs: false },
        &mut Progress::quiet(),
    )
    .await
    .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, AuditProblem::IntegratedTime { leaf_index: 3, .. })),
        "{:?}",
        report.problems
    );
}
