//! Least privilege on PostgreSQL: a login role granted `merklog_writer` can
//! append and read through the store and in SQL, and nothing else; one
//! granted `merklog_reader` can only read.

use merklog_storage::testing::{assert_denied, TempPostgres, TempRole, TestLog};
use merklog_storage::{AnyStore, LogStore, StorageError};
use sqlx::{Connection, Executor, PgConnection};

#[tokio::test]
async fn writer_can_insert_and_select_only() {
    let (url, _db) = TempPostgres::create().await;
    // The owner (a superuser here) creates the schema.
    let owner = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    owner.append_batch(&log.next_batch(4, 40)).await.unwrap();

    let role = TempRole::create("merklog_test_role", "", &["merklog_writer"]).await;
    {
        // The service's own path: open (migrations are current, so none is
        // run), append, read.
        let store = AnyStore::open(&role.url(&url)).await.unwrap();
        store.append_batch(&log.next_batch(13, 40)).await.unwrap();
        assert_eq!(store.leaf_count().await.unwrap(), 17);
        assert_eq!(store.entries(0, 17).await.unwrap().len(), 17);
        assert_eq!(
            store
                .latest_tree_head()
                .await
                .unwrap()
                .unwrap()
                .head
                .tree_size,
            17
        );
        if let AnyStore::Postgres(s) = &store {
            s.pool().close().await;
        }

        let mut conn = PgConnection::connect(&role.url(&url)).await.unwrap();
        conn.execute("SELECT count(*) FROM leaves").await.unwrap();
        conn.execute("SELECT count(*) FROM tree_heads")
            .await
            .unwrap();
        // The tile of leaves [0, 16) was added by the trigger as the owner.
        let tiles: i64 = sqlx::query_scalar("SELECT count(*) FROM leaf_tiles")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(tiles, 1);
        for sql in [
            "INSERT INTO leaf_tiles (tile, hashes) VALUES (5, decode(repeat('00', 512), 'hex'))",
            "UPDATE leaf_tiles SET hashes = hashes",
            "DELETE FROM leaf_tiles",
            "TRUNCATE leaf_tiles",
            "UPDATE leaves SET entry = entry",
            "DELETE FROM leaves",
            "TRUNCATE leaves",
            "UPDATE tree_heads SET signature = signature",
            "DELETE FROM tree_heads",
            "TRUNCATE tree_heads",
            "ALTER TABLE leaves ADD COLUMN note text",
            "ALTER TABLE leaves DISABLE TRIGGER leaves_in_order",
            "ALTER TABLE leaves DISABLE TRIGGER ALL",
            "ALTER TABLE tree_heads DISABLE TRIGGER USER",
            "ALTER TABLE leaves DROP CONSTRAINT leaves_nodes_shape",
            "DROP TRIGGER leaves_no_delete ON leaves",
            "DROP TABLE tree_heads",
            "DROP TABLE leaves",
            "DROP FUNCTION merklog_reject_change()",
            "CREATE TABLE shadow (x int)",
            "DELETE FROM _sqlx_migrations",
            "INSERT INTO _sqlx_migrations (version, description, checksum, execution_time, success) \
             VALUES (1, 'x', '\\x00', 0, true)",
            "SET session_replication_role = replica",
            "GRANT merklog_writer TO merklog_reader",
        ] {
            assert_denied(&mut conn, sql).await;
        }
        conn.close().await.unwrap();
    }
    drop(role);
}

#[tokio::test]
async fn reader_can_only_select() {
    let (url, _db) = TempPostgres::create().await;
    let owner = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    owner.append_batch(&log.next_batch(4, 40)).await.unwrap();

    let role = TempRole::create("merklog_test_role", "", &["merklog_reader"]).await;
    {
        let mut conn = PgConnection::connect(&role.url(&url)).await.unwrap();
        conn.execute("SELECT idx, leaf_hash, nodes FROM leaves")
            .await
            .unwrap();
        conn.execute("SELECT * FROM tree_heads").await.unwrap();
        conn.execute("SELECT * FROM leaf_tiles").await.unwrap();
        for sql in [
            "INSERT INTO leaf_tiles (tile, hashes) VALUES (5, decode(repeat('00', 512), 'hex'))",
            "INSERT INTO tree_heads (tree_size, timestamp_ms, root_hash, signature) \
             SELECT tree_size, timestamp_ms + 1, root_hash, signature FROM tree_heads",
            "UPDATE leaves SET entry = entry",
            "DELETE FROM leaves",
            "TRUNCATE tree_heads",
            "DROP TABLE leaves",
        ] {
            assert_denied(&mut conn, sql).await;
        }
        conn.close().await.unwrap();
        // Through the store too: reads work, the append is denied.
        let store = AnyStore::open(&role.url(&url)).await.unwrap();
        assert_eq!(store.leaf_count().await.unwrap(), 4);
        assert!(matches!(
            store.append_batch(&log.next_batch(1, 40)).await,
            Err(StorageError::PermissionDenied { .. })
        ));
        if let AnyStore::Postgres(s) = &store {
            s.pool().close().await;
        }
    }
    drop(role);
}
