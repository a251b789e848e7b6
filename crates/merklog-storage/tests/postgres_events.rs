//! PostgreSQL only, for events: a search that runs past the store's time
//! limit is cancelled and reported as `QueryTimeout`, and the roles may do
//! with `events` what they may do with the log (writer: INSERT and SELECT;
//! reader: SELECT).

use std::time::Duration;

use merklog_event::{EventQuery, TimeField};
use merklog_storage::testing::{assert_denied, sample_event, TempPostgres, TempRole, TestLog};
use merklog_storage::{AnyStore, LogStore, NewLeaf, PgStore, StorageError};
use sqlx::{Connection, Executor, PgConnection};

fn pg(store: &AnyStore) -> &PgStore {
    match store {
        AnyStore::Postgres(s) => s,
        _ => panic!("a PostgreSQL URL opens a PostgreSQL store"),
    }
}

fn everything() -> EventQuery {
    EventQuery {
        page_size: 10,
        ..EventQuery::window(TimeField::OccurredAt, 0, i64::MAX)
    }
}

/// Appends sample events `ids` through `store`.
async fn append_events(store: &AnyStore, log: &mut TestLog, ids: std::ops::Range<u64>) {
    let leaves = ids.map(|i| NewLeaf::event(&sample_event(i))).collect();
    store
        .append_batch(&log.batch_of_leaves(leaves))
        .await
        .unwrap();
}

/// The search waits for a lock that another session holds until the end of
/// the test, so it cannot finish before its time limit whatever the
/// machine's speed: the limit fires, deterministically.
#[tokio::test]
async fn a_search_past_the_time_limit_is_a_query_timeout() {
    let (url, _db) = TempPostgres::create().await;
    let store = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    append_events(&store, &mut log, 0..20).await;
    assert_eq!(
        store.search_events(&everything(), 20).await.unwrap().len(),
        10
    );

    let mut blocker = PgConnection::connect(&url).await.unwrap();
    let mut tx = blocker.begin().await.unwrap();
    tx.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let limited = pg(&store)
        .clone()
        .with_search_timeout(Duration::from_millis(200));
    match limited.search_events(&everything(), 20).await {
        Err(StorageError::QueryTimeout { message }) => {
            assert!(message.contains("statement timeout"), "{message}")
        }
        other => panic!("expected QueryTimeout, got {other:?}"),
    }
    tx.rollback().await.unwrap();
    blocker.close().await.unwrap();

    // The limit was the transaction's: the pooled connections search (and
    // append) without it afterwards.
    assert_eq!(
        limited
            .search_events(&everything(), 20)
            .await
            .unwrap()
            .len(),
        10
    );
    append_events(&store, &mut log, 20..25).await;
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pg(&store).pool())
        .await
        .unwrap();
    assert_eq!(found, 25);
}

#[tokio::test]
async fn the_writer_inserts_and_reads_events_and_changes_none() {
    let (url, _db) = TempPostgres::create().await;
    let owner = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    append_events(&owner, &mut log, 0..4).await;

    let role = TempRole::create("merklog_test_role", "", &["merklog_writer"]).await;
    {
        let store = AnyStore::open(&role.url(&url)).await.unwrap();
        append_events(&store, &mut log, 4..9).await;
        assert_eq!(
            store.search_events(&everything(), 9).await.unwrap().len(),
            9
        );
        let ids = vec!["ev-000002".to_owned(), "ev-000006".to_owned()];
        assert_eq!(store.find_events_by_id(&ids).await.unwrap().len(), 2);
        pg(&store).pool().close().await;

        let mut conn = PgConnection::connect(&role.url(&url)).await.unwrap();
        conn.execute("SELECT count(*) FROM events").await.unwrap();
        for sql in [
            "UPDATE events SET action = action",
            "DELETE FROM events",
            "DELETE FROM events WHERE idx = 1",
            "TRUNCATE events",
            "ALTER TABLE events DISABLE TRIGGER events_no_update",
            "DROP TRIGGER events_no_delete ON events",
            "ALTER TABLE events DROP CONSTRAINT events_event_id_key",
            "DROP INDEX events_actor",
            "DROP TABLE events",
        ] {
            assert_denied(&mut conn, sql).await;
        }
        conn.close().await.unwrap();
    }
    drop(role);
}

#[tokio::test]
async fn the_reader_reads_events_and_inserts_none() {
    let (url, _db) = TempPostgres::create().await;
    let owner = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    append_events(&owner, &mut log, 0..4).await;

    let role = TempRole::create("merklog_test_role", "", &["merklog_reader"]).await;
    {
        let mut conn = PgConnection::connect(&role.url(&url)).await.unwrap();
        conn.execute("SELECT * FROM events").await.unwrap();
        for sql in [
            "INSERT INTO events SELECT idx + 100, event_id || 'x', occurred_ns, integrated_ms, \
             actor_id, actor_kind, action, resource_kind, resource_id, outcome, origin_service, \
             origin_host, source_ip, request_id, trace_id, attributes FROM events",
            "UPDATE events SET action = action",
            "DELETE FROM events",
            "TRUNCATE events",
        ] {
            assert_denied(&mut conn, sql).await;
        }
        conn.close().await.unwrap();
        // Through the store: searches work, an event append is denied.
        let store = AnyStore::open(&role.url(&url)).await.unwrap();
        assert_eq!(
            store.search_events(&everything(), 4).await.unwrap().len(),
            4
        );
        let batch = log.batch_of_leaves(vec![NewLeaf::event(&sample_event(50))]);
        assert!(matches!(
            store.append_batch(&batch).await,
            Err(StorageError::PermissionDenied { .. })
        ));
        pg(&store).pool().close().await;
    }
    drop(role);
}
