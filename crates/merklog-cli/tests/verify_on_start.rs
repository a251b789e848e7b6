//! A database changed behind the log's back: the server reports the changed
//! entry instead of serving it, and `serve --verify-on-start` refuses to
//! start, naming the row.

mod common;

use merklog_proto::v1::{self, log_client::LogClient};
use sqlx::Connection;
use tonic::Code;

#[tokio::test]
async fn tampered_entries_are_reported_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = common::new_log_key(dir.path());
    let db_path = dir.path().join("log.db");
    let db = format!("sqlite://{}", db_path.display());
    let log = dir.path().join("server.log");

    let mut server = common::start(&db, &key, &log).await;
    let mut client = LogClient::connect(server.url.clone()).await.unwrap();
    client
        .append(v1::AppendRequest {
            entries: (0..8u8).map(|i| vec![b'a' + i; 16]).collect(),
        })
        .await
        .unwrap();
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    // A superuser of the file drops the guard and rewrites entry 3.
    let mut conn = sqlx::SqliteConnection::connect(&db).await.unwrap();
    sqlx::query("DROP TRIGGER leaves_no_update")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE leaves SET entry = x'00112233' WHERE idx = 3")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    // The quick start-up check cannot see it, but the entry is not served.
    let server = common::start(&db, &key, &log).await;
    let mut client = LogClient::connect(server.url.clone()).await.unwrap();
    let status = client
        .get_entries(v1::GetEntriesRequest { start: 0, end: 8 })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("index 3"), "{status:?}");
    let status = client
        .get_entry_and_proof(v1::GetEntryAndProofRequest {
            leaf_index: 3,
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    drop(server);

    // The full check refuses to start and names the row.
    let output = common::serve_expecting_exit([
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--verify-on-start".as_ref(),
        "--database-url".as_ref(),
        db.as_ref(),
        "--key".as_ref(),
        key.as_os_str(),
    ])
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("leaves row idx=3"), "{stderr}");
}
