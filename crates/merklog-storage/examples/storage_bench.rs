//! Measures the storage layer against a raw insert of the same rows, and
//! bytes on disk per leaf (results go in docs/STORAGE.md, "Measurements").
//!
//! ```sh
//! cargo run --release -p merklog-storage --example storage_bench -- \
//!     [--leaves 200000] [--size-leaves 1000000] [--only postgres|sqlite]
//! ```
//!
//! Rate: `--leaves` leaves of 256 bytes in batches of 1,000 go through
//! `LogStore::append_batch` (leaves with their nodes, the signed head,
//! triggers, one transaction), interleaved batch by batch with a plain
//! batched insert of the very same rows into a table with the same columns
//! and keys but no triggers, CHECKs or head, one commit per batch as well.
//! Interleaving gives both the same conditions (checkpoints, cache).
//!
//! Size: `--size-leaves` leaves of 256 bytes appended through the store into
//! a fresh database; then the tables' total size (heap, TOAST, indexes) on
//! PostgreSQL and the file size after a WAL checkpoint on SQLite.
//!
//! PostgreSQL comes from `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a temporary database is
//! created there and dropped afterwards.

use std::time::{Duration, Instant};

use merklog_merkle::Hash;
use merklog_storage::testing::{temp_sqlite, TempPostgres, TestLog};
use merklog_storage::{AnyStore, Batch, LogStore};
use sqlx::{Executor, Row};

const BATCH: u64 = 1_000;
const ENTRY_BYTES: usize = 256;

/// The columns of one batch, laid out as the `leaves` table stores them.
struct Columns {
    idx: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    entries: Vec<Vec<u8>>,
    integrated_ms: i64,
    nodes: Vec<Vec<u8>>,
}

fn columns(batch: &Batch) -> Columns {
    let n = batch.leaves.len();
    let mut nodes: Vec<Vec<u8>> = (0..n)
        .map(|k| vec![0; 32 * (batch.first_index + k as u64).trailing_ones() as usize])
        .collect();
    for (id, hash) in &batch.nodes {
        let row = (id.last_leaf() - batch.first_index) as usize;
        let at = (id.level as usize - 1) * Hash::LEN;
        nodes[row][at..at + Hash::LEN].copy_from_slice(hash.as_bytes());
    }
    Columns {
        idx: (0..n as i64)
            .map(|k| batch.first_index as i64 + k)
            .collect(),
        hashes: batch
            .leaves
            .iter()
            .map(|l| l.leaf_hash().0.to_vec())
            .collect(),
        entries: batch.leaves.iter().map(|l| l.entry().to_vec()).collect(),
        integrated_ms: batch.integrated_ms as i64,
        nodes,
    }
}

const RAW_TABLE: &str = "CREATE TABLE raw_leaves (
    idx BIGINT PRIMARY KEY, leaf_hash BYTEA NOT NULL UNIQUE, entry BYTEA NOT NULL,
    integrated_ms BIGINT NOT NULL, nodes BYTEA NOT NULL)";

const RAW_TABLE_SQLITE: &str = "CREATE TABLE raw_leaves (
    idx INTEGER PRIMARY KEY, leaf_hash BLOB NOT NULL UNIQUE, entry BLOB NOT NULL,
    integrated_ms INTEGER NOT NULL, nodes BLOB NOT NULL) STRICT";

struct Rates {
    store: Duration,
    raw: Duration,
    leaves: u64,
}

/// Inserts `cols` into `raw_leaves` with multi-row `VALUES` statements of
/// up to `chunk` rows.
async fn sqlite_multi_row(
    tx: &mut sqlx::SqliteConnection,
    cols: &Columns,
    chunk: usize,
) -> anyhow::Result<()> {
    for start in (0..cols.idx.len()).step_by(chunk) {
        let end = (start + chunk).min(cols.idx.len());
        let values = vec!["(?, ?, ?, ?, ?)"; end - start].join(", ");
        let sql = format!(
            "INSERT INTO raw_leaves (idx, leaf_hash, entry, integrated_ms, nodes) VALUES {values}"
        );
        let mut q = sqlx::query(&sql);
        for k in start..end {
            q = q
                .bind(cols.idx[k])
                .bind(&cols.hashes[k])
                .bind(&cols.entries[k])
                .bind(cols.integrated_ms)
                .bind(&cols.nodes[k]);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

impl Rates {
    fn print(&self, backend: &str, raw_kind: &str) {
        let store = self.leaves as f64 / self.store.as_secs_f64();
        let raw = self.leaves as f64 / self.raw.as_secs_f64();
        println!(
            "{backend}: {} leaves in batches of {BATCH}, {ENTRY_BYTES}-byte entries\n  \
             store (append_batch): {store:>9.0} leaves/s ({:.1} ms/batch)\n  \
             raw ({raw_kind}): {raw:>9.0} leaves/s ({:.1} ms/batch)\n  \
             store / raw = {:.0}%",
            self.leaves,
            self.store.as_secs_f64() * 1e3 / (self.leaves / BATCH) as f64,
            self.raw.as_secs_f64() * 1e3 / (self.leaves / BATCH) as f64,
            100.0 * store / raw
        );
    }
}

async fn postgres_rate(leaves: u64) -> anyhow::Result<()> {
    let (url, _db) = TempPostgres::create().await;
    let store = AnyStore::open(&url).await?;
    let AnyStore::Postgres(pg) = &store else {
        unreachable!()
    };
    let pool = pg.pool().clone();
    for setting in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_sync_method",
        "server_version",
    ] {
        let row = sqlx::query(&format!("SHOW {setting}"))
            .fetch_one(&pool)
            .await?;
        println!("postgres {setting} = {}", row.get::<String, _>(0));
    }
    // What the store's own connections run with.
    let mut conn = pool.acquire().await?;
    let sc: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *conn)
        .await?;
    println!("store connection synchronous_commit = {sc}");
    drop(conn);
    pool.execute(RAW_TABLE).await?;

    let mut log = TestLog::new();
    let mut rates = Rates {
        store: Duration::ZERO,
        raw: Duration::ZERO,
        leaves: 0,
    };
    for _ in 0..leaves / BATCH {
        let batch = log.next_batch(BATCH, ENTRY_BYTES);
        let cols = columns(&batch);

        let t = Instant::now();
        store.append_batch(&batch).await?;
        rates.store += t.elapsed();

        let t = Instant::now();
        sqlx::query(
            "INSERT INTO raw_leaves (idx, leaf_hash, entry, integrated_ms, nodes) \
             SELECT i, h, e, $4, n FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $5::bytea[]) AS t(i, h, e, n)",
        )
        .bind(&cols.idx)
        .bind(&cols.hashes)
        .bind(&cols.entries)
        .bind(cols.integrated_ms)
        .bind(&cols.nodes)
        .execute(&pool)
        .await?;
        rates.raw += t.elapsed();
        rates.leaves += BATCH;
    }
    rates.print(
        "postgres",
        "INSERT ... SELECT unnest(...) into a table without triggers, autocommit",
    );
    pool.close().await;
    Ok(())
}

async fn sqlite_rate(leaves: u64) -> anyhow::Result<()> {
    let (path, _dir) = temp_sqlite();
    let store = AnyStore::open(path.to_str().expect("utf-8 path")).await?;
    let AnyStore::Sqlite(lite) = &store else {
        unreachable!()
    };
    let pool = lite.pool().clone();
    for pragma in ["journal_mode", "synchronous"] {
        let v: sqlx::sqlite::SqliteRow = sqlx::query(&format!("PRAGMA {pragma}"))
            .fetch_one(&pool)
            .await?;
        println!(
            "sqlite {pragma} = {:?}",
            v.try_get::<String, _>(0)
                .or_else(|_| v.try_get::<i64, _>(0).map(|i| i.to_string()))?
        );
    }
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&pool)
        .await?;
    println!("sqlite version = {version}");
    // The raw tables get files of their own, opened like the store's (WAL,
    // synchronous=FULL), so no one pays for another's WAL checkpoints.
    let raw_pool = raw_sqlite_pool(&path.with_file_name("raw.db")).await?;
    raw_pool.execute(RAW_TABLE_SQLITE).await?;
    let per_row_pool = raw_sqlite_pool(&path.with_file_name("raw2.db")).await?;
    per_row_pool
        .execute(
            RAW_TABLE_SQLITE
                .replace("raw_leaves", "raw_leaves2")
                .as_str(),
        )
        .await?;
    let mut per_row = Duration::ZERO;

    let mut log = TestLog::new();
    let mut rates = Rates {
        store: Duration::ZERO,
        raw: Duration::ZERO,
        leaves: 0,
    };
    for _ in 0..leaves / BATCH {
        let batch = log.next_batch(BATCH, ENTRY_BYTES);
        let cols = columns(&batch);

        let t = Instant::now();
        store.append_batch(&batch).await?;
        rates.store += t.elapsed();

        let t = Instant::now();
        let mut tx = raw_pool.begin().await?;
        sqlite_multi_row(&mut tx, &cols, 100).await?;
        tx.commit().await?;
        rates.raw += t.elapsed();
        rates.leaves += BATCH;

        // For comparison: one prepared statement per row.
        let t = Instant::now();
        let mut tx = per_row_pool.begin().await?;
        for k in 0..cols.idx.len() {
            sqlx::query(
                "INSERT INTO raw_leaves2 (idx, leaf_hash, entry, integrated_ms, nodes) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(cols.idx[k])
            .bind(&cols.hashes[k])
            .bind(&cols.entries[k])
            .bind(cols.integrated_ms)
            .bind(&cols.nodes[k])
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        per_row += t.elapsed();
    }
    rates.print(
        "sqlite",
        "multi-row INSERT ... VALUES of 100 rows in one transaction into a table without triggers",
    );
    println!(
        "  raw, one prepared INSERT per row instead: {:>9.0} leaves/s",
        rates.leaves as f64 / per_row.as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

async fn raw_sqlite_pool(path: &std::path::Path) -> anyhow::Result<sqlx::SqlitePool> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .pragma("cache_size", "-65536");
    Ok(sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?)
}

async fn append_many(store: &AnyStore, leaves: u64) -> anyhow::Result<Duration> {
    let mut log = TestLog::new();
    let t = Instant::now();
    for _ in 0..leaves / BATCH {
        store
            .append_batch(&log.next_batch(BATCH, ENTRY_BYTES))
            .await?;
    }
    Ok(t.elapsed())
}

async fn postgres_size(leaves: u64) -> anyhow::Result<()> {
    let (url, _db) = TempPostgres::create().await;
    let store = AnyStore::open(&url).await?;
    let took = append_many(&store, leaves).await?;
    let AnyStore::Postgres(pg) = &store else {
        unreachable!()
    };
    let pool = pg.pool();
    pool.execute("VACUUM ANALYZE leaves, tree_heads").await?;
    let mut total = 0i64;
    for (name, sql) in [
        ("leaves heap", "SELECT pg_relation_size('leaves')"),
        ("leaves toast", "SELECT coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class WHERE relname = 'leaves'"),
        ("leaves indexes", "SELECT pg_indexes_size('leaves')"),
        ("leaves total", "SELECT pg_total_relation_size('leaves')"),
        ("tree_heads total", "SELECT pg_total_relation_size('tree_heads')"),
    ] {
        let bytes: i64 = sqlx::query_scalar(sql).fetch_one(pool).await?;
        if name.ends_with("total") {
            total += bytes;
        }
        println!("postgres {name}: {bytes} bytes = {:.1} bytes/leaf", bytes as f64 / leaves as f64);
    }
    println!(
        "postgres {leaves} leaves: {total} bytes in both tables = {:.1} bytes/leaf (appended in {:.1} s, {:.0} leaves/s)",
        total as f64 / leaves as f64,
        took.as_secs_f64(),
        leaves as f64 / took.as_secs_f64()
    );
    pool.close().await;
    Ok(())
}

async fn sqlite_size(leaves: u64) -> anyhow::Result<()> {
    let (path, _dir) = temp_sqlite();
    let store = AnyStore::open(path.to_str().expect("utf-8 path")).await?;
    let took = append_many(&store, leaves).await?;
    let AnyStore::Sqlite(lite) = &store else {
        unreachable!()
    };
    lite.pool()
        .execute("PRAGMA wal_checkpoint(TRUNCATE)")
        .await?;
    lite.pool().close().await;
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "sqlite {leaves} leaves: file {bytes} bytes = {:.1} bytes/leaf (appended in {:.1} s, {:.0} leaves/s)",
        bytes as f64 / leaves as f64,
        took.as_secs_f64(),
        leaves as f64 / took.as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut leaves = 200_000u64;
    let mut size_leaves = 1_000_000u64;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--leaves" => leaves = value()?.parse()?,
            "--size-leaves" => size_leaves = value()?.parse()?,
            "--only" => only = Some(value()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("postgres") {
        postgres_rate(leaves).await?;
        if size_leaves > 0 {
            postgres_size(size_leaves).await?;
        }
    }
    if run("sqlite") {
        sqlite_rate(leaves).await?;
        if size_leaves > 0 {
            sqlite_size(size_leaves).await?;
        }
    }
    Ok(())
}
