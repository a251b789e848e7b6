//! The tamper drill, on PostgreSQL (`DATABASE_URL`, each test its own
//! database): a superuser disables the append-only triggers and
//! (a) changes one entry's bytes, (b) changes one stored node hash,
//! (c) deletes the newest entries and head, (d) inserts a head with another
//! root, (e) changes a leaf tile, from which proofs take their lower nodes,
//! and forges one. `verify-store` (reading through a read-only role with a
//! password, created and dropped per check) and `audit`
//! (through a server that was running when the rows changed) catch each one
//! and name it; the server refuses to start on (b)–(d).
//!
//! Each log is three batches of three entries: heads at sizes 0, 3, 6, 9
//! (for (e), two more batches take it to 40, so that it has tiles).

mod client_common;

use std::sync::Arc;

use client_common::{signer, Log, Scratch};
use merklog_cli::client::audit::AuditArgs;
use merklog_cli::client::audit::{audit, AuditOptions, AuditProblem, AuditReport};
use merklog_cli::client::entries::{self, EntriesArgs};
use merklog_cli::client::monitor::{self, MonitorArgs};
use merklog_cli::client::verify_store::{verify_store, StoreProblem, StoreReport};
use merklog_cli::client::{CommandError, OutputArgs, Progress, SafetyArgs};
use merklog_client::json::TreeHeadJson;
use merklog_client::{Client, ClientError, TrustState};
use merklog_merkle::Hash;
use merklog_server::{Sequencer, SequencerConfig, StartupError, SystemClock};
use merklog_storage::testing::{assert_denied, TempRole};
use merklog_storage::AnyStore;
use merklog_tests::TestDb;
use sqlx::PgPool;

const BATCHES: [&[&str]; 3] = [
    &["e0", "e1", "e2"],
    &["e3", "e4", "e5"],
    &["e6", "e7", "e8"],
];

/// A log of nine entries on a fresh PostgreSQL database, with a monitor's
/// state saved at its latest head (as a client that saw it would have).
async fn log_of_nine() -> (Log, Scratch, std::path::PathBuf) {
    // Without a node cache, the drill's server serves every node as stored,
    // as a restarted server does: a running one keeps serving the upper
    // levels it cached before the damage (docs/OPERATIONS.md).
    let mut config = client_common::config();
    config.limits.node_cache_bytes = 0;
    let log = Log::start_with(TestDb::postgres().await, signer(), config).await;
    log.append_batches(&BATCHES).await;
    let scratch = Scratch::new();
    let state = scratch.path("monitor-state.json");
    let mut client = log.client().await.with_state_file(&state).unwrap();
    assert_eq!(client.latest_head().await.unwrap().tree_size(), 9);
    (log, scratch, state)
}

fn superuser(log: &Log) -> &PgPool {
    match log.store.as_ref() {
        AnyStore::Postgres(pg) => pg.pool(),
        AnyStore::Sqlite(_) => panic!("the tamper drill runs on PostgreSQL"),
    }
}

/// The tables whose triggers keep the log append-only.
const LOG_TABLES: [&str; 3] = ["leaves", "tree_heads", "leaf_tiles"];

/// Disables every trigger on the log's tables, as a superuser can.
async fn disable_triggers(log: &Log) {
    for table in LOG_TABLES {
        sqlx::query(&format!("ALTER TABLE {table} DISABLE TRIGGER ALL"))
            .execute(superuser(log))
            .await
            .unwrap();
    }
}

/// Enables the triggers again, as an attacker covering their tracks would.
async fn enable_triggers(log: &Log) {
    for table in LOG_TABLES {
        sqlx::query(&format!("ALTER TABLE {table} ENABLE TRIGGER ALL"))
            .execute(superuser(log))
            .await
            .unwrap();
    }
}

/// A login role that holds `merklog_reader` only (SELECT), as an auditor's
/// would, with a password; dropped with the guard, also when the test fails.
async fn auditor() -> TempRole {
    TempRole::create("merklog_test_auditor", "", &["merklog_reader"]).await
}

/// Opens the log's database as `auditor`, and checks that the role really
/// cannot write: PostgreSQL refuses for want of privilege (SQLSTATE 42501),
/// not for some other reason.
async fn open_read_only(log: &Log, auditor: &TempRole) -> AnyStore {
    let store = AnyStore::open(&auditor.url(&url_of(log)))
        .await
        .expect("a read-only role opens the store");
    let AnyStore::Postgres(pg) = &store else {
        panic!("the tamper drill runs on PostgreSQL");
    };
    let mut conn = pg.pool().acquire().await.unwrap();
    for sql in [
        "DELETE FROM tree_heads",
        "UPDATE leaves SET entry = entry",
        "INSERT INTO leaf_tiles (tile, hashes) SELECT tile + 1000, hashes FROM leaf_tiles",
    ] {
        assert_denied(&mut conn, sql).await;
    }
    store
}

fn url_of(log: &Log) -> String {
    log.db.url()
}

async fn check_store(log: &Log, trusted: Option<&TreeHeadJson>) -> StoreReport {
    let auditor = auditor().await;
    let store = open_read_only(log, &auditor).await;
    let mut snapshot = store.snapshot().await.expect("a snapshot of the store");
    let report = verify_store(
        &mut snapshot,
        log.signer.public_key(),
        trusted,
        4,
        &mut Progress::quiet(),
    )
    .await
    .expect("the store can be read");
    drop(snapshot);
    // Its sessions end before the role is dropped.
    if let AnyStore::Postgres(pg) = &store {
        pg.pool().close().await;
    }
    report
}

async fn audit_log(log: &Log) -> AuditReport {
    let mut client = log.client().await;
    audit(
        &mut client,
        AuditOptions { proofs: true },
        &mut Progress::quiet(),
    )
    .await
    .expect("the audit runs")
}

/// Runs the start-up checks a restarted server runs on the tampered
/// database (the sequencer's: latest head signed by the key, covering
/// exactly the stored leaves, matching the stored right edge) and returns
/// why they refused, or `None` when they passed. The drill's own server
/// keeps running and holds the leader lock, so a whole second `serve` would
/// be refused for that reason before these checks.
async fn restart(log: &Log) -> Option<String> {
    let store = Arc::new(AnyStore::open(&url_of(log)).await.unwrap());
    let started = Sequencer::start(
        store,
        log.signer.clone(),
        Arc::new(SystemClock),
        SequencerConfig::default(),
        Arc::default(),
    )
    .await;
    match started {
        Err(StartupError::Inconsistent(reason)) => Some(reason),
        Err(other) => panic!("the checks failed for another reason: {other}"),
        Ok((sequencer, task)) => {
            // No append was sent: dropping the handle stops it at once.
            drop(sequencer);
            task.await.unwrap();
            None
        }
    }
}

fn describe(problems: &[impl std::fmt::Display]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// The entries the audit found the log refusing to serve (`DATA_LOSS`),
/// in the order reported; fails on one whose message from the log does not
/// name it.
fn refused_entries(report: &AuditReport) -> Vec<u64> {
    report
        .problems
        .iter()
        .filter_map(|p| match p {
            AuditProblem::RefusedEntry { leaf_index, error } => {
                assert!(
                    error.contains(&format!("entry at index {leaf_index} "))
                        || error.contains(&format!("leaf {leaf_index} is missing")),
                    "{error} does not name entry {leaf_index}"
                );
                Some(*leaf_index)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn untouched_log_passes_every_check() {
    let (log, _scratch, state) = log_of_nine().await;
    let trusted = TrustState::load(&state, log.signer.public_key())
        .unwrap()
        .unwrap()
        .0
        .to_json();
    let report = check_store(&log, Some(&trusted)).await;
    assert!(report.ok(), "{}", describe(&report.problems));
    assert_eq!(report.leaves, 9);
    assert_eq!(report.heads_checked, 4);
    // Rows 1, 3, 5, 7 hold 1, 2, 1, 3 nodes.
    assert_eq!(report.nodes_checked, 7);
    let report = audit_log(&log).await;
    assert!(report.ok(), "{}", describe(&report.problems));
    assert_eq!(report.entries_checked, 9);
    assert_eq!(report.proofs_checked, 5);
    assert!(restart(&log).await.is_none());
}

#[tokio::test]
async fn tamper_a_changed_entry_is_caught_and_named() {
    let (log, _scratch, _) = log_of_nine().await;
    disable_triggers(&log).await;
    sqlx::query("UPDATE leaves SET entry = $1 WHERE idx = 4")
        .bind(b"forged".to_vec())
        .execute(superuser(&log))
        .await
        .unwrap();
    enable_triggers(&log).await;

    let report = check_store(&log, None).await;
    assert!(
        matches!(
            report.problems.as_slice(),
            [StoreProblem::LeafHash { idx: 4, .. }]
        ),
        "{}",
        describe(&report.problems)
    );
    assert!(report.problems[0]
        .to_string()
        .starts_with("leaves row idx=4:"));

    // The server rechecks each entry against its leaf hash before serving
    // it, so it refuses with DATA_LOSS naming the row; the audit reports the
    // refusal as a finding, and checks every other entry.
    let report = audit_log(&log).await;
    assert_eq!(refused_entries(&report), [4]);
    assert_eq!(report.entries_checked, 8);

    // A monitor that checks entries fails on its first catch-up: evidence
    // of tampering, exit code 1.
    let mut client = log.client().await;
    let err = merklog_cli::client::monitor::check_once(&mut client, true, &mut Progress::quiet())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { code: tonic::Code::DataLoss, message } if message.contains("index 4")),
        "{err}"
    );
    assert_eq!(CommandError::from(err).exit_code(), 1);

    // The server's start-up check reads the tree's right edge, not the
    // entries' bytes: it starts on (a). verify-store and audit are the
    // detectors for this one.
    assert!(restart(&log).await.is_none());
}

#[tokio::test]
async fn tamper_a_several_changed_entries_are_each_named_and_exit_1_everywhere() {
    let (log, scratch, state) = log_of_nine().await;
    disable_triggers(&log).await;
    // One entry in each batch.
    for idx in [1i64, 4, 7] {
        sqlx::query("UPDATE leaves SET entry = $1 WHERE idx = $2")
            .bind(format!("forged {idx}").into_bytes())
            .bind(idx)
            .execute(superuser(&log))
            .await
            .unwrap();
    }
    enable_triggers(&log).await;

    let report = check_store(&log, None).await;
    let rows: Vec<u64> = report
        .problems
        .iter()
        .map(|p| match p {
            StoreProblem::LeafHash { idx, .. } => *idx,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(rows, [1, 4, 7]);

    // The audit goes on past each refused entry and checks the others.
    let report = audit_log(&log).await;
    assert_eq!(refused_entries(&report), [1, 4, 7]);
    assert_eq!(report.problems.len(), 3, "{}", describe(&report.problems));
    assert_eq!(report.entries_checked, 6);
    // The command lists them, one line each, and exits 1.
    let mut out = Vec::new();
    let err = merklog_cli::client::audit::run(
        AuditArgs {
            log: log.args(&scratch, None),
            no_proofs: false,
            out: OutputArgs { json: false },
        },
        &mut out,
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    let printed = String::from_utf8(out).unwrap();
    for idx in [1, 4, 7] {
        assert!(
            printed.contains(&format!(
                "PROBLEM: entry {idx}: the log refuses to serve it"
            )),
            "{printed}"
        );
    }
    assert!(printed.contains("FAILED: 6 entries"), "{printed}");

    // Evidence of tampering is exit code 1 in every command that meets it.
    let err = entries::run(
        EntriesArgs {
            log: log.args(&scratch, None),
            start: 0,
            end: None,
            out: OutputArgs { json: false },
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("DataLoss"), "{err}");
    for once in [true, false] {
        // A fresh state file: the monitor catches up from the first entry.
        let fresh = scratch.path(&format!("fresh-{once}.json"));
        let err = monitor::run(
            MonitorArgs {
                server: log.server.url(),
                public_key: scratch.key_file(&log.signer),
                state: fresh,
                token: None,
                once,
                interval: 1,
                max_age: None,
                check_entries: true,
                tls: Default::default(),
                safety: SafetyArgs::default(),
                out: OutputArgs { json: true },
            },
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 1, "once={once}: {err}");
    }
    drop(state);
}

#[tokio::test]
async fn tamper_a_an_entry_changed_with_its_leaf_hash_is_not_printed() {
    let (log, _scratch, _) = log_of_nine().await;
    disable_triggers(&log).await;
    // A forger who knows the scheme rewrites the leaf hash too, so the row
    // checks out on its own; only the tree above it does not.
    sqlx::query("UPDATE leaves SET entry = $1, leaf_hash = $2 WHERE idx = 4")
        .bind(b"forged".to_vec())
        .bind(merklog_merkle::leaf_hash(b"forged").as_bytes().to_vec())
        .execute(superuser(&log))
        .await
        .unwrap();
    enable_triggers(&log).await;

    // The server serves the forged row (its bytes match its leaf hash)...
    let mut client = log.client().await;
    let served = client.entries(0, 9).await.unwrap();
    assert_eq!(served[4].data, b"forged");
    // ...but `merklog entries` proves every entry into the signed head
    // before printing it, and the forged one does not prove.
    let head = client.latest_head().await.unwrap();
    let err = client.proven_entries(&head, 0, 9).await.unwrap_err();
    assert!(
        matches!(err, ClientError::InclusionProof { leaf_index: 4, .. }),
        "{err}"
    );
    assert!(err.is_verification_failure());
}

/// Flips one bit of the stored node `(level, index)`, kept in row
/// `((index + 1) << level) - 1` at byte offset `(level - 1) * 32`.
async fn flip_node(log: &Log, level: u8, index: u64) -> i64 {
    let row = (((index + 1) << level) - 1) as i64;
    let nodes: Vec<u8> = sqlx::query_scalar("SELECT nodes FROM leaves WHERE idx = $1")
        .bind(row)
        .fetch_one(superuser(log))
        .await
        .unwrap();
    let mut nodes = nodes;
    nodes[(level as usize - 1) * Hash::LEN] ^= 0x01;
    sqlx::query("UPDATE leaves SET nodes = $1 WHERE idx = $2")
        .bind(nodes)
        .bind(row)
        .execute(superuser(log))
        .await
        .unwrap();
    row
}

#[tokio::test]
async fn tamper_b_a_changed_node_on_the_right_edge_is_caught_and_named() {
    let (log, _scratch, _) = log_of_nine().await;
    disable_triggers(&log).await;
    // Node (3, 0) = MTH(D[0:8]) is on the right edge of the tree of 9.
    let row = flip_node(&log, 3, 0).await;
    assert_eq!(row, 7);
    enable_triggers(&log).await;

    let report = check_store(&log, None).await;
    assert!(
        matches!(
            report.problems.as_slice(),
            [StoreProblem::Node {
                idx: 7,
                level: 3,
                index: 0,
                ..
            }]
        ),
        "{}",
        describe(&report.problems)
    );

    let report = audit_log(&log).await;
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            AuditProblem::BadProofNode {
                first: 0,
                end: 8,
                node: Some((3, 0)),
                seen_in_proof_of: 8,
                ..
            }
        )),
        "{}",
        describe(&report.problems)
    );

    let reason = restart(&log).await.expect("the server refuses to start");
    assert!(reason.contains("root"), "{reason}");
}

#[tokio::test]
async fn tamper_b_a_changed_node_inside_the_tree_is_caught_by_the_tools() {
    let (log, _scratch, _) = log_of_nine().await;
    disable_triggers(&log).await;
    // Node (1, 0) = MTH(D[0:2]) is not on the right edge.
    flip_node(&log, 1, 0).await;
    enable_triggers(&log).await;

    let report = check_store(&log, None).await;
    assert!(
        matches!(
            report.problems.as_slice(),
            [StoreProblem::Node {
                idx: 1,
                level: 1,
                index: 0,
                ..
            }]
        ),
        "{}",
        describe(&report.problems)
    );
    let report = audit_log(&log).await;
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            AuditProblem::BadProofNode {
                first: 0,
                end: 2,
                node: Some((1, 0)),
                ..
            }
        )),
        "{}",
        describe(&report.problems)
    );
    // The start-up check folds only the right edge, so this one goes
    // unnoticed by the server: it starts and would serve bad proofs.
    assert!(restart(&log).await.is_none());
}

#[tokio::test]
async fn tamper_c_deleted_newest_entries_and_head_are_caught() {
    let (log, _scratch, _) = log_of_nine().await;
    disable_triggers(&log).await;
    // The newest entry and the newest head: the store now says 8 leaves
    // but its latest head (size 6) covers 6.
    for sql in [
        "DELETE FROM leaves WHERE idx = 8",
        "DELETE FROM tree_heads WHERE tree_size = 9",
    ] {
        sqlx::query(sql).execute(superuser(&log)).await.unwrap();
    }
    enable_triggers(&log).await;

    let report = check_store(&log, None).await;
    assert!(
        report.problems.contains(&StoreProblem::LeafCount {
            leaves: 8,
            latest_head_size: 6
        }),
        "{}",
        describe(&report.problems)
    );

    // The server that signed size 9 still serves that head, and refuses to
    // serve the entries under it, naming the one that is gone.
    let report = audit_log(&log).await;
    assert_eq!(refused_entries(&report), [8]);

    let reason = restart(&log).await.expect("the server refuses to start");
    assert!(reason.contains("8 leaves"), "{reason}");
}

#[tokio::test]
async fn tamper_c_a_clean_rollback_is_caught_against_a_saved_head() {
    let (mut log, _scratch, state) = log_of_nine().await;
    disable_triggers(&log).await;
    // The whole last batch and its head: what is left is a consistent log
    // of six entries, which only a head published earlier can expose.
    for sql in [
        "DELETE FROM leaves WHERE idx >= 6",
        "DELETE FROM tree_heads WHERE tree_size = 9",
    ] {
        sqlx::query(sql).execute(superuser(&log)).await.unwrap();
    }
    enable_triggers(&log).await;

    let trusted = TrustState::load(&state, log.signer.public_key())
        .unwrap()
        .unwrap()
        .0
        .to_json();
    let report = check_store(&log, Some(&trusted)).await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, StoreProblem::TrustedHead { tree_size: 9, .. })),
        "{}",
        describe(&report.problems)
    );
    assert!(
        check_store(&log, None).await.ok(),
        "without a saved head it looks like a smaller log"
    );

    // The server that signed size 9 is still running: it names the first
    // entry under that head that is gone.
    let report = audit_log(&log).await;
    assert_eq!(refused_entries(&report), [6, 7, 8]);

    // A restarted server cannot know; an auditor with the saved head does.
    assert!(restart(&log).await.is_none());
    log.server.shutdown().await.unwrap();
    let store = Arc::new(AnyStore::open(&url_of(&log)).await.unwrap());
    let again =
        merklog_tests::TestServer::start(store, log.signer.clone(), client_common::config())
            .await
            .unwrap();
    let mut client = Client::connect(&again.url(), log.signer.public_key().clone())
        .await
        .unwrap()
        .with_state_file(&state)
        .unwrap();
    let err = audit(
        &mut client,
        AuditOptions { proofs: true },
        &mut Progress::quiet(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Rollback {
                trusted_size: 9,
                new_size: 6,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn tamper_d_an_inserted_head_with_another_root_is_caught() {
    let (log, _scratch, _) = log_of_nine().await;
    let latest = log.client().await.latest_head().await.unwrap();
    disable_triggers(&log).await;
    // A later head for the same size with another root; the attacker has no
    // key, so the signature is copied from the real head.
    sqlx::query(
        "INSERT INTO tree_heads (tree_size, timestamp_ms, root_hash, signature) VALUES ($1, $2, $3, $4)",
    )
    // Dated 1 ms after the real head: the time-order triggers then let the
    // server append after it (its leaves must not be dated before the
    // latest stored head, forged or not).
    .bind(9i64)
    .bind(latest.timestamp_ms() as i64 + 1)
    .bind(vec![0x42u8; 32])
    .bind(latest.sth().signature.clone())
    .execute(superuser(&log))
    .await
    .unwrap();
    enable_triggers(&log).await;
    let ts = latest.timestamp_ms() + 1;

    let report = check_store(&log, None).await;
    let problems = &report.problems;
    assert!(
        problems.iter().any(|p| matches!(p, StoreProblem::HeadSignature { tree_size: 9, timestamp_ms, .. } if *timestamp_ms == ts)),
        "{}",
        describe(problems)
    );
    assert!(problems.iter().any(|p| matches!(p, StoreProblem::HeadRoot { tree_size: 9, timestamp_ms, .. } if *timestamp_ms == ts)));
    assert!(problems[0]
        .to_string()
        .contains(&format!("tree_heads row (tree_size=9, timestamp_ms={ts})")));

    let reason = restart(&log).await.expect("the server refuses to start");
    assert!(reason.contains("not signed"), "{reason}");

    // The running server keeps its own head in memory; once the log grows,
    // the inserted head is what it serves for size 9, and the audit checks
    // the head at each batch boundary.
    log.append_batches(&[&["e9"]]).await;
    // The server checks a stored head's signature before serving it, so
    // it refuses with DATA_LOSS; the audit reports that refusal.
    let report = audit_log(&log).await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, AuditProblem::LogError { during, error }
            if during.contains("size 9") && error.contains("signature does not verify"))),
        "{}",
        describe(&report.problems)
    );
}

/// The log of nine grown to 40 entries in batches that end at sizes 29
/// and 40: tiles 0 and 1 complete.
async fn log_of_forty() -> (Log, Scratch) {
    let (log, scratch, _) = log_of_nine().await;
    let more: Vec<String> = (9..40).map(|i| format!("e{i}")).collect();
    let more: Vec<&str> = more.iter().map(String::as_str).collect();
    log.append_batches(&[&more[..20], &more[20..]]).await;
    (log, scratch)
}

#[tokio::test]
async fn tamper_e_a_changed_or_forged_leaf_tile_is_caught() {
    let (log, _scratch) = log_of_forty().await;
    let db = superuser(&log);
    disable_triggers(&log).await;
    // Tile 1 (leaves 16..31): its 4th hash, leaf 19's, changed.
    sqlx::query("UPDATE leaf_tiles SET hashes = set_byte(hashes, 3 * 32, get_byte(hashes, 3 * 32) # 1) WHERE tile = 1")
        .execute(db)
        .await
        .unwrap();
    // A tile for leaves 48..63, which are not in the log.
    sqlx::query(
        "INSERT INTO leaf_tiles (tile, hashes) SELECT 3, hashes FROM leaf_tiles WHERE tile = 0",
    )
    .execute(db)
    .await
    .unwrap();
    enable_triggers(&log).await;

    let report = check_store(&log, None).await;
    assert_eq!(report.tiles_checked, 2);
    assert!(
        matches!(
            report.problems.as_slice(),
            [
                StoreProblem::Tile { tile: 1, detail },
                StoreProblem::Tile { tile: 3, .. },
            ] if detail.contains("hash 3") && detail.contains("leaf 19")
        ),
        "{}",
        describe(&report.problems)
    );
    // Proofs in that block now carry a node computed from the bad tile.
    let report = audit_log(&log).await;
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            AuditProblem::BadProofNode { first, end, .. } if *first >= 16 && *end <= 32
        )),
        "{}",
        describe(&report.problems)
    );
}

#[tokio::test]
async fn tamper_e_a_truncated_leaf_tile_is_refused_and_named_per_leaf() {
    let (log, _scratch) = log_of_forty().await;
    let db = superuser(&log);
    disable_triggers(&log).await;
    // Tile 1 (leaves 16..31) cut to 31 bytes, past its CHECK.
    for statement in [
        "ALTER TABLE leaf_tiles DROP CONSTRAINT leaf_tiles_hashes_check",
        "UPDATE leaf_tiles SET hashes = substring(hashes from 1 for 31) WHERE tile = 1",
    ] {
        sqlx::query(statement).execute(db).await.unwrap();
    }
    enable_triggers(&log).await;

    // The server refuses what needs the tile (DATA_LOSS): the head at size
    // 29, a batch boundary, and the proofs of leaves 16..31, so a call
    // asking for many proofs is refused whole; the audit asks again leaf by
    // leaf and names exactly the even leaves of that block.
    let report = audit_log(&log).await;
    let refused: Vec<String> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            AuditProblem::LogError { during, error } if error.contains("DataLoss") => {
                Some(during.clone())
            }
            _ => None,
        })
        .collect();
    let mut expected = vec!["its signed head at size 29".to_owned()];
    expected.extend(
        (16..32)
            .step_by(2)
            .map(|m| format!("the inclusion proof of leaf {m}")),
    );
    assert_eq!(refused, expected, "{}", describe(&report.problems));
    assert_eq!(report.problems.len(), expected.len());
    assert_eq!(report.proofs_checked, 20);
}
