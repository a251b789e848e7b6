//! Conformance (issue 22, item 6): a returned append is durable only if
//! every connection commits synchronously. The stores set that themselves
//! (`synchronous_commit = on` on PostgreSQL; WAL with `synchronous = FULL`
//! on SQLite); these tests read the settings back from pooled connections
//! and fail if a database URL, a role or a database default overrides them.

use merklog_storage::testing::{admin_url, temp_sqlite, TempPostgres, TempRole};
use merklog_storage::{PgStore, SqliteStore};
use sqlx::{Connection, Executor};

/// Reads `synchronous_commit` on as many pooled connections as the test
/// holds at once (each a different session).
async fn synchronous_commit_of_pooled(store: &PgStore) -> Vec<String> {
    let mut held = Vec::new();
    let mut values = Vec::new();
    for _ in 0..4 {
        let mut conn = store.pool().acquire().await.unwrap();
        let value: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        values.push(value);
        held.push(conn);
    }
    values
}

#[tokio::test]
async fn postgres_commits_synchronously_whatever_the_url_role_or_database_say() {
    let role = TempRole::create("merklog_sync", "NOSUPERUSER CREATEROLE", &[]).await;
    let (db, guard) = TempPostgres::create_owned_by(&role).await;
    // The database's and the role's defaults both turn it off.
    let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
    let database = guard.name();
    admin
        .execute(
            format!(
                "ALTER DATABASE \"{database}\" SET synchronous_commit = off; \
                 ALTER ROLE \"{}\" SET synchronous_commit = off",
                role.name()
            )
            .as_str(),
        )
        .await
        .unwrap();
    admin.close().await.unwrap();

    let as_role = role.url(&db);
    let sep = if as_role.contains('?') { '&' } else { '?' };
    let overriding_url = format!("{as_role}{sep}options=-c%20synchronous_commit%3Doff");
    for url in [as_role.clone(), overriding_url] {
        // What a plain session of this role gets: the override is real.
        let mut plain = sqlx::PgConnection::connect(&url).await.unwrap();
        let default: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut plain)
            .await
            .unwrap();
        assert_eq!(default, "off", "the test's override took effect ({url})");
        plain.close().await.unwrap();

        let store = PgStore::connect(&url).await.unwrap();
        for value in synchronous_commit_of_pooled(&store).await {
            assert_eq!(value, "on", "a pooled connection of the store ({url})");
        }
        store.pool().close().await;
    }
}

#[tokio::test]
async fn sqlite_uses_wal_with_full_sync_whatever_the_url_says() {
    let (path, _dir) = temp_sqlite();
    for url in [
        format!("sqlite://{}", path.display()),
        format!("sqlite://{}?mode=rwc", path.display()),
    ] {
        let store = SqliteStore::open_url(&url).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..4 {
            let mut conn = store.pool().acquire().await.unwrap();
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(journal, "wal", "{url}");
            // 2 is FULL: the WAL is synced at every commit.
            assert_eq!(synchronous, 2, "{url}");
            held.push(conn);
        }
        drop(held);
        store.pool().close().await;
    }
}
