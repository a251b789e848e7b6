//! Least privilege on PostgreSQL: a login role granted `merklog_writer` can
//! append and read through the store and in SQL, and nothing else; one
//! granted `merklog_reader` can only read.

use merklog_storage::testing::{TempPostgres, TestLog};
use merklog_storage::{AnyStore, LogStore, StorageError};
use sqlx::{Connection, Executor, PgConnection};

/// A LOGIN role for one test, granted `granted`, dropped at the end.
struct TestRole {
    admin_url: String,
    name: String,
}

impl TestRole {
    async fn create(admin_url: &str, granted: &str) -> TestRole {
        let name = format!(
            "merklog_test_role_{}_{:x}",
            std::process::id(),
            rand_suffix()
        );
        let mut admin = PgConnection::connect(admin_url).await.unwrap();
        admin
            .execute(format!("CREATE ROLE {name} LOGIN; GRANT {granted} TO {name}").as_str())
            .await
            .unwrap();
        admin.close().await.unwrap();
        TestRole {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    /// Returns `db_url` with this role as the user.
    fn url(&self, db_url: &str) -> String {
        let mut url = url::Url::parse(db_url).unwrap();
        url.set_username(&self.name).unwrap();
        url.to_string()
    }
}

impl Drop for TestRole {
    /// Drops the role even when the test panicked; from a thread of its own
    /// because Drop cannot await.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.unwrap();
                admin
                    .execute(format!("DROP ROLE IF EXISTS {name}").as_str())
                    .await
                    .unwrap();
                admin.close().await.unwrap();
            });
        })
        .join();
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

/// Asserts that `sql` fails with SQLSTATE 42501 (insufficient privilege).
async fn denied(conn: &mut PgConnection, sql: &str) {
    let err = conn
        .execute(sql)
        .await
        .expect_err(&format!("{sql} must be denied"));
    let db = err.as_database_error().expect("a database error");
    assert_eq!(
        db.code().as_deref(),
        Some("42501"),
        "{sql}: {}",
        db.message()
    );
    assert!(
        matches!(
            StorageError::from(err),
            StorageError::PermissionDenied { .. }
        ),
        "{sql}"
    );
}

#[tokio::test]
async fn writer_can_insert_and_select_only() {
    let (url, db) = TempPostgres::create().await;
    // The owner (a superuser here) creates the schema.
    let owner = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    owner.append_batch(&log.next_batch(4, 40)).await.unwrap();

    let role = TestRole::create(db.admin_url(), "merklog_writer").await;
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
            denied(&mut conn, sql).await;
        }
        conn.close().await.unwrap();
    }
    drop(role);
}

#[tokio::test]
async fn reader_can_only_select() {
    let (url, db) = TempPostgres::create().await;
    let owner = AnyStore::open(&url).await.unwrap();
    let mut log = TestLog::new();
    owner.append_batch(&log.next_batch(4, 40)).await.unwrap();

    let role = TestRole::create(db.admin_url(), "merklog_reader").await;
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
            denied(&mut conn, sql).await;
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
