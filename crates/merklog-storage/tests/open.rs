//! Choosing and opening a backend from a URL or path.

use merklog_storage::testing::{temp_sqlite, TestLog};
use merklog_storage::{AnyStore, LogStore, StorageError};

#[tokio::test]
async fn sqlite_url_creates_directories_and_reopens() {
    let (path, _dir) = temp_sqlite();
    let nested = path.parent().unwrap().join("a/b/log.db");
    let url = format!("sqlite://{}", nested.display());
    let mut log = TestLog::new();
    {
        let store = AnyStore::open(&url).await.unwrap();
        assert_eq!(store.backend(), "sqlite");
        store.append_batch(&log.next_batch(3, 10)).await.unwrap();
    }
    assert!(nested.exists());
    // Opening again applies no migration twice and keeps the data; a plain
    // path names the same file.
    let store = AnyStore::open(nested.to_str().unwrap()).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 3);
    store.append_batch(&log.next_batch(2, 10)).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 5);
}

#[tokio::test]
async fn in_memory_sqlite_is_one_database() {
    let store = AnyStore::open("sqlite::memory:").await.unwrap();
    let mut log = TestLog::new();
    store.append_batch(&log.next_batch(4, 10)).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 4);
    assert_eq!(store.entries(0, 4).await.unwrap().len(), 4);
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    for url in [
        "mysql://root@localhost/db",
        "postgres://user@host:notaport/db",
    ] {
        assert!(
            matches!(AnyStore::open(url).await, Err(StorageError::Config { .. })),
            "{url}"
        );
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let err = AnyStore::open("postgres://merklog@127.0.0.1:1/merklog?connect_timeout=1")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err:?}");
}

/// The log's records are its users' audit trail: a new store and the
/// directories made for it are its owner's alone, and so are the WAL files
/// SQLite creates beside it.
#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (path, _dir) = temp_sqlite();
    let nested = path.parent().unwrap().join("data/log.db");
    let mut log = TestLog::new();
    let store = AnyStore::open(&format!("sqlite://{}", nested.display()))
        .await
        .unwrap();
    store.append_batch(&log.next_batch(3, 10)).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(nested.parent().unwrap()), 0o700);
    assert_eq!(mode(&nested), 0o600);
    for suffix in ["-wal", "-shm"] {
        let side = nested.with_file_name(format!("log.db{suffix}"));
        assert!(side.exists(), "{} missing", side.display());
        assert_eq!(mode(&side), 0o600, "{}", side.display());
    }
    // An existing store keeps the mode its operator gave it.
    drop(store);
    std::fs::set_permissions(&nested, std::fs::Permissions::from_mode(0o640)).unwrap();
    let store = AnyStore::open(nested.to_str().unwrap()).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 3);
    assert_eq!(mode(&nested), 0o640);
}
