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
    let err = AnyStore::open("postgres://postgres@127.0.0.1:1/postgres?connect_timeout=1")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unavailable { .. }), "{err:?}");
}
