//! The monitor catches a log that shows different views (a split view: two
//! servers with the same key whose logs diverge after a common prefix) and a
//! log that goes back (a rollback), on its first look at the bad log.

mod client_common;

use client_common::{signer, Log, Scratch};
use merklog_cli::client::monitor::{self, check_once, MonitorArgs};
use merklog_cli::client::{OutputArgs, Progress, SafetyArgs};
use merklog_client::json::TreeHeadJson;
use merklog_client::{Client, ClientError};
use merklog_sth::LogSigner;
use merklog_tests::TestDb;

async fn monitor_client(log: &Log, state: &std::path::Path) -> Client {
    log.client()
        .await
        .with_state_file(state)
        .expect("state file loads")
}

fn saved_head(state: &std::path::Path) -> TreeHeadJson {
    let text = std::fs::read_to_string(state).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::from_value(v["tree_head"].clone()).unwrap()
}

fn monitor_args(log: &Log, scratch: &Scratch, state: &std::path::Path) -> MonitorArgs {
    MonitorArgs {
        server: log.server.url(),
        public_key: scratch.key_file(&log.signer),
        state: state.to_owned(),
        token: None,
        once: true,
        interval: 1,
        max_age: None,
        check_entries: true,
        tls: Default::default(),
        safety: SafetyArgs::default(),
        out: OutputArgs { json: true },
    }
}

/// Two logs under one key: the same first batch, then different entries.
async fn split_view(key: &LogSigner, a_tail: &[&str], b_tail: &[&str]) -> (Log, Log) {
    let a = Log::start(TestDb::sqlite(), key.clone()).await;
    let b = Log::start(TestDb::sqlite(), key.clone()).await;
    for log in [&a, &b] {
        log.append_batches(&[&["common 0", "common 1", "common 2"]])
            .await;
    }
    a.append_batches(&[a_tail]).await;
    b.append_batches(&[b_tail]).await;
    (a, b)
}

#[tokio::test]
async fn monitor_detects_a_split_view_on_its_first_look_at_the_second_log() {
    let key = signer();
    let (a, b) = split_view(&key, &["only in A"], &["only in B", "and more in B"]).await;
    let scratch = Scratch::new();
    let state = scratch.path("state.json");

    // The monitor follows A, checking every entry.
    let mut client = monitor_client(&a, &state).await;
    let step = check_once(&mut client, true, &mut Progress::quiet())
        .await
        .unwrap();
    assert_eq!(step.tree_head.tree_size, 4);
    assert_eq!(step.entries_checked, 4);
    let trusted = saved_head(&state);
    assert_eq!(trusted, step.tree_head);

    // Its first look at B (larger, same key, valid signatures) is a fork:
    // B cannot prove that A's tree of size 4 is a prefix of its own.
    let mut client = monitor_client(&b, &state).await;
    let err = check_once(&mut client, false, &mut Progress::quiet())
        .await
        .unwrap_err();
    match &err {
        ClientError::Fork {
            trusted_size: 4,
            new_size: 5,
            trusted_root,
            ..
        } => assert_eq!(*trusted_root, trusted.root_hash),
        other => panic!("expected a fork, got {other}"),
    }
    assert!(err.to_string().starts_with("fork: "), "{err}");
    assert!(err.is_verification_failure());
    // The bad head was not trusted.
    assert_eq!(saved_head(&state), trusted);

    // The command fails with exit code 1 and says so in JSON.
    let failure = monitor::run(monitor_args(&b, &scratch, &state), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(failure.exit_code(), 1);
    assert_eq!(failure.to_json()["error"]["kind"], "fork");
    assert_eq!(saved_head(&state), trusted);

    // Following A goes on working.
    a.append_batches(&[&["more in A"]]).await;
    let mut out = Vec::new();
    monitor::run(monitor_args(&a, &scratch, &state), &mut out)
        .await
        .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed["tree_head"]["tree_size"], 5);
    assert_eq!(
        printed["entries_checked"], 1,
        "only the new entry is fetched"
    );
}

#[tokio::test]
async fn monitor_detects_a_split_view_of_the_same_size() {
    let key = signer();
    let (a, b) = split_view(&key, &["only in A"], &["only in B"]).await;
    let scratch = Scratch::new();
    let state = scratch.path("state.json");
    check_once(
        &mut monitor_client(&a, &state).await,
        false,
        &mut Progress::quiet(),
    )
    .await
    .unwrap();
    let err = check_once(
        &mut monitor_client(&b, &state).await,
        false,
        &mut Progress::quiet(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Fork {
                trusted_size: 4,
                new_size: 4,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn monitor_detects_a_rollback() {
    let key = signer();
    let long = Log::start(TestDb::sqlite(), key.clone()).await;
    let short = Log::start(TestDb::sqlite(), key.clone()).await;
    long.append_batches(&[&["e0", "e1", "e2"], &["e3", "e4", "e5"]])
        .await;
    // The same log, as it was before its last batch: a prefix.
    short.append_batches(&[&["e0", "e1", "e2"]]).await;

    let scratch = Scratch::new();
    let state = scratch.path("state.json");
    check_once(
        &mut monitor_client(&long, &state).await,
        false,
        &mut Progress::quiet(),
    )
    .await
    .unwrap();
    let trusted = saved_head(&state);
    assert_eq!(trusted.tree_size, 6);

    let err = check_once(
        &mut monitor_client(&short, &state).await,
        false,
        &mut Progress::quiet(),
    )
    .await
    .unwrap_err();
    match &err {
        ClientError::Rollback {
            trusted_size: 6,
            new_size: 3,
            ..
        } => {}
        other => panic!("expected a rollback, got {other}"),
    }
    assert!(err.to_string().starts_with("rollback: "), "{err}");
    let failure = monitor::run(monitor_args(&short, &scratch, &state), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(failure.exit_code(), 1);
    assert_eq!(failure.to_json()["error"]["kind"], "rollback");
    assert_eq!(saved_head(&state), trusted, "the smaller head is not saved");
}

#[tokio::test]
async fn monitor_rejects_heads_signed_by_another_key() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[&["x"]]).await;
    let scratch = Scratch::new();
    let state = scratch.path("state.json");
    let stranger = signer();
    let mut client = Client::connect(&log.server.url(), stranger.public_key().clone())
        .await
        .unwrap()
        .with_state_file(&state)
        .unwrap();
    let err = check_once(&mut client, false, &mut Progress::quiet())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::WrongLog { .. }), "{err}");
    assert!(
        !state.exists(),
        "nothing is trusted after a failed first look"
    );
}
