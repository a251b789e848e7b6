//! SIGTERM stops `merklog serve` cleanly: the batch being written when the
//! signal comes commits, its caller gets its proof, and the process exits
//! with status 0. The batch is held in its write by a table lock the test
//! takes on PostgreSQL, and each step waits for what the server shows (the
//! INSERT waiting on the lock, the shutdown logged), never for a time.

mod common;

use std::time::Duration;

use common::{append_one, new_log_key, start_with};
use merklog_proto::v1::log_client::LogClient;
use merklog_storage::LogStore;
use sqlx::Connection;

/// How many times a wait below checks, 50 ms apart (30 s), before it
/// fails, so that a server that never gets there fails instead of hanging.
const CHECKS: u32 = 600;

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_batch_in_flight_commit_and_answer() {
    let (db, _guard) = merklog_storage::testing::TempPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, signer) = new_log_key(dir.path());
    let key = signer.public_key().clone();
    let log = dir.path().join("serve.log");
    let mut server = start_with(&db, &key_path, &log, &[]).await;

    // Hold the leaves table: the next batch's INSERT waits for it.
    let mut holder = sqlx::PgConnection::connect(&db).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE leaves IN EXCLUSIVE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let url = server.url.clone();
    let append_key = key.clone();
    let append = tokio::spawn(async move {
        let mut client = LogClient::connect(url).await.unwrap();
        append_one(&mut client, &append_key, b"in flight".to_vec()).await
    });
    let mut watcher = sqlx::PgConnection::connect(&db).await.unwrap();
    let mut waiting = false;
    for _ in 0..CHECKS {
        waiting = sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO leaves%')",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting, "the server's INSERT never waited on the lock");

    let pid = server.child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut logged = false;
    for _ in 0..CHECKS {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        logged = text.contains("shutdown requested; finishing the batch in flight");
        if logged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logged, "the server never logged the shutdown");
    assert!(!append.is_finished(), "the batch is still held");

    // Let the write go on: the caller is answered with a proof that
    // verifies under a signed head (append_one checks both).
    held.rollback().await.unwrap();
    let (index, head) = tokio::time::timeout(Duration::from_secs(60), append)
        .await
        .expect("the held append is answered")
        .unwrap()
        .expect("the batch in flight commits during shutdown");
    assert_eq!((index, head.head.tree_size), (0, 1));

    let status = tokio::time::timeout(Duration::from_secs(60), server.child.wait())
        .await
        .expect("the server exits after its batch")
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{status}: {text}");
    assert!(text.contains("shut down cleanly"), "{text}");

    let store = merklog_storage::AnyStore::open(&db).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 1);
    assert_eq!(
        store.latest_tree_head().await.unwrap().unwrap(),
        head,
        "the acknowledged head is the stored one"
    );
    assert_eq!(store.entries(0, 1).await.unwrap()[0].entry, b"in flight");
}
