//! The client commands as a user runs them, on the embedded SQLite store:
//! text and JSON output, and exit codes.

mod client_common;

use client_common::{signer, text, Log, Scratch};
use merklog_cli::client::audit::{self, AuditArgs};
use merklog_cli::client::entries::{self, EntriesArgs};
use merklog_cli::client::sth::{self, SthArgs};
use merklog_cli::client::verify_store::{self, VerifyStoreArgs};
use merklog_cli::client::OutputArgs;
use merklog_tests::TestDb;

fn json() -> OutputArgs {
    OutputArgs { json: true }
}

#[tokio::test]
async fn cli_sth_entries_audit_and_verify_store_on_a_healthy_log() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[&["hello", "world"], &["binary \u{1}"]])
        .await;
    let scratch = Scratch::new();

    let mut out = Vec::new();
    sth::run(
        SthArgs {
            log: log.args(&scratch, Some(scratch.path("state.json"))),
            out: json(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let head: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(head["tree_size"], 3);
    assert_eq!(head["log_id"], log.signer.public_key().log_id().to_string());
    assert!(scratch.path("state.json").exists());

    let mut out = Vec::new();
    entries::run(
        EntriesArgs {
            log: log.args(&scratch, None),
            start: 1,
            end: None,
            out: text(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(lines[0].starts_with("1\t") && lines[0].ends_with("\tworld"));
    assert!(lines[1].ends_with("\thex:62696e6172792001"), "{printed}");

    let mut out = Vec::new();
    entries::run(
        EntriesArgs {
            log: log.args(&scratch, None),
            start: 0,
            end: Some(1),
            out: json(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(list[0]["data"], "aGVsbG8=");

    // Entries past the signed head cannot be proved: a usage error, not a
    // shorter list.
    let err = entries::run(
        EntriesArgs {
            log: log.args(&scratch, None),
            start: 0,
            end: Some(4),
            out: text(),
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(
        err.to_string()
            .contains("--end 4 is past the log's latest signed tree size 3"),
        "{err}"
    );

    let mut out = Vec::new();
    audit::run(
        AuditArgs {
            log: log.args(&scratch, None),
            no_proofs: false,
            out: json(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["entries_checked"], 3);
    assert_eq!(report["proofs_checked"], 2);
    assert_eq!(report["problems"], serde_json::json!([]));

    let mut out = Vec::new();
    verify_store::run(
        VerifyStoreArgs {
            database_url: log.db.url(),
            public_key: scratch.key_file(&log.signer),
            trusted_head: Some(scratch.path("state.json")),
            page_size: 2,
            out: text(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.starts_with("OK: 3 leaves"), "{printed}");

    // Another key: one problem says so (not one per head), exit code 1.
    let stranger = signer();
    for as_json in [true, false] {
        let mut out = Vec::new();
        let err = verify_store::run(
            VerifyStoreArgs {
                database_url: log.db.url(),
                public_key: scratch.key_file(&stranger),
                trusted_head: None,
                page_size: 1000,
                out: OutputArgs { json: as_json },
            },
            &mut out,
        )
        .await
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        if as_json {
            let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
            assert_eq!(report["problems"][0]["kind"], "other_key");
            assert_eq!(report["problems"][0]["heads"], 3);
        } else {
            let printed = String::from_utf8(out).unwrap();
            let problems: Vec<&str> = printed
                .lines()
                .filter(|l| l.starts_with("PROBLEM"))
                .collect();
            assert_eq!(
                problems,
                [format!(
                    "PROBLEM: none of the 3 signed heads in tree_heads verifies with the public key given (log ID {}): this store is signed by another key; check --public-key (or, if the key is right, every head was replaced)",
                    stranger.public_key().log_id()
                )],
                "{printed}"
            );
        }
    }

    // A database that does not exist is a usage error, and is not created.
    let missing = scratch.path("missing.db");
    let err = verify_store::run(
        VerifyStoreArgs {
            database_url: format!("sqlite://{}", missing.display()),
            public_key: scratch.key_file(&log.signer),
            trusted_head: None,
            page_size: 1000,
            out: text(),
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(!missing.exists());
}

#[tokio::test]
async fn cli_append_splits_what_the_log_takes_per_call() {
    let mut config = client_common::config();
    config.limits.max_entries_per_append = 2;
    let log = Log::start_with(TestDb::sqlite(), signer(), config).await;
    let scratch = Scratch::new();
    let mut out = Vec::new();
    merklog_cli::client::append::run(
        merklog_cli::client::append::AppendArgs {
            log: log.args(&scratch, None),
            entries: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            files: vec![],
            whole: false,
            out: json(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let sizes: Vec<u64> = printed["tree_heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["tree_size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![2, 4, 5]);
    assert_eq!(printed["tree_head"]["tree_size"], 5);
    let entries = printed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[4]["leaf_index"], 4);
    assert_eq!(entries[2]["inclusion_proof"]["tree_size"], 4);
}

/// verify-store compares PostgreSQL's leaf tiles with their leaves and
/// counts them; SQLite keeps none, and none are counted.
#[tokio::test]
async fn verify_store_counts_the_tiles_the_store_keeps() {
    for (db, tiles) in [(TestDb::sqlite(), 0), (TestDb::postgres().await, 2)] {
        let log = Log::start(db, signer()).await;
        let entries: Vec<String> = (0..40).map(|i| format!("entry {i}")).collect();
        let entries: Vec<&str> = entries.iter().map(String::as_str).collect();
        log.append_batches(&[&entries[..17], &entries[17..]]).await;
        let scratch = Scratch::new();
        let mut out = Vec::new();
        verify_store::run(
            VerifyStoreArgs {
                database_url: log.db.url(),
                public_key: scratch.key_file(&log.signer),
                trusted_head: None,
                page_size: 7,
                out: json(),
            },
            &mut out,
        )
        .await
        .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(report["leaves"], 40, "{report}");
        assert_eq!(report["tiles_checked"], tiles, "{report}");
        assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    }
}

/// Messages that name one cause each, and the command that fixes it.
#[tokio::test]
async fn cli_messages_name_the_cause_and_the_fix() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[&["a", "b", "c"]]).await;
    let scratch = Scratch::new();

    // A start past the log, with no --end given.
    let err = entries::run(
        EntriesArgs {
            log: log.args(&scratch, None),
            start: 999_999,
            end: None,
            out: text(),
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        "--start 999999 is past the log's size: its latest signed tree head covers 3 entries"
    );

    // The log's private key where its public key belongs.
    let private = scratch.path("log.key");
    std::fs::write(&private, log.signer.to_pkcs8_pem().as_bytes()).unwrap();
    let mut args = log.args(&scratch, None);
    args.public_key = private.clone();
    let err = sth::run(
        SthArgs {
            log: args,
            out: text(),
        },
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(
        err.to_string(),
        format!(
            "--public-key {0} is a private key, not a public key: print the public key with \
             `merklog public-key --key {0} > log.pub`, pin log.pub, and keep the private key \
             on the log's server only",
            private.display()
        )
    );

    // The time beside the milliseconds.
    let mut out = Vec::new();
    sth::run(
        SthArgs {
            log: log.args(&scratch, None),
            out: text(),
        },
        &mut out,
    )
    .await
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let line = printed
        .lines()
        .find(|l| l.starts_with("timestamp:"))
        .unwrap();
    let ms: i64 = line
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(
        line,
        format!(
            "timestamp:  {} ({ms} ms since the Unix epoch)",
            merklog_event::format_rfc3339(ms * 1_000_000, 3)
        )
    );
}

/// `log-info` prints what the server says, marked as not verified, with
/// no key given.
#[tokio::test]
async fn log_info_prints_the_servers_key_and_limits_unverified() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    let args = |json: bool| merklog_cli::client::log_info::LogInfoArgs {
        server: log.server.url(),
        token: None,
        tls: Default::default(),
        safety: Default::default(),
        out: OutputArgs { json },
    };
    let mut out = Vec::new();
    merklog_cli::client::log_info::run(args(true), &mut out)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let key = log.signer.public_key();
    assert_eq!(doc["verified"], false);
    assert!(doc["warning"].as_str().unwrap().starts_with("NOT VERIFIED"));
    assert_eq!(doc["log_id"], key.log_id().to_string());
    assert_eq!(doc["public_key_log_id"], key.log_id().to_string());
    assert_eq!(doc["public_key_pem"], key.pem());
    let limits = merklog_server::ServerConfig::default().limits;
    assert_eq!(
        doc["limits"]["max_entry_bytes"],
        limits.max_entry_bytes as u64
    );
    assert_eq!(doc["limits"]["max_page_size"], limits.max_page_size as u64);

    let mut out = Vec::new();
    merklog_cli::client::log_info::run(args(false), &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert!(printed.contains("(NOT VERIFIED)"), "{printed}");
    assert!(
        printed.contains(&format!("log ID:               {}", key.log_id())),
        "{printed}"
    );
    assert!(printed.ends_with(&key.pem()), "{printed}");
}
