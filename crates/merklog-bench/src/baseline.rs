//! The physical limit the service is measured against: raw PostgreSQL
//! batched inserts of rows like the service's (same entry size, 1,000 rows
//! per transaction, `synchronous_commit = on`) into a plain table with a
//! primary key and no triggers, from one connection, as the sequencer
//! writes.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};

/// Rows per transaction, as in issue 6.
pub const ROWS_PER_TX: usize = 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub statement: String,
    pub rows: u64,
    pub transactions: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    /// Mean time of one 1,000-row transaction, in milliseconds.
    pub ms_per_tx: f64,
    pub fsync: String,
    pub synchronous_commit: String,
    pub server_version: String,
}

/// Inserts 1,000-row batches of `entry_bytes`-byte random rows for about
/// `duration` into a table created for the run, then drops it.
///
/// # Errors
/// When the database cannot be reached or a statement fails.
pub async fn run(url: &str, entry_bytes: usize, duration: Duration) -> anyhow::Result<Baseline> {
    let options = PgConnectOptions::from_str(url)
        .context("not a PostgreSQL URL")?
        .options([("synchronous_commit", "on")]);
    let mut conn = PgConnection::connect_with(&options)
        .await
        .context("cannot connect for the baseline")?;
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await?;
    let server_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await?;
    let table = format!("merklog_bench_raw_{}", std::process::id());
    conn.execute(format!("DROP TABLE IF EXISTS {table}").as_str())
        .await?;
    conn.execute(
        format!("CREATE TABLE {table} (idx BIGINT PRIMARY KEY, entry BYTEA NOT NULL)").as_str(),
    )
    .await?;
    let statement = format!("INSERT INTO {table} SELECT * FROM unnest($1::bigint[], $2::bytea[])");

    let mut rng = StdRng::from_entropy();
    let (mut rows, mut transactions) = (0u64, 0u64);
    let mut busy = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < duration {
        let idx: Vec<i64> = (0..ROWS_PER_TX as i64).map(|k| rows as i64 + k).collect();
        let entries: Vec<Vec<u8>> = (0..ROWS_PER_TX)
            .map(|_| {
                let mut e = vec![0u8; entry_bytes];
                rng.fill_bytes(&mut e);
                e
            })
            .collect();
        // Only the statement is timed, not making up its rows; a single
        // statement outside BEGIN is its own transaction and commits (with
        // its WAL flush) before it returns.
        let t = Instant::now();
        sqlx::query(&statement)
            .bind(&idx)
            .bind(&entries)
            .execute(&mut conn)
            .await?;
        busy += t.elapsed();
        rows += ROWS_PER_TX as u64;
        transactions += 1;
    }
    conn.execute(format!("DROP TABLE {table}").as_str()).await?;
    conn.close().await?;
    let seconds = busy.as_secs_f64();
    Ok(Baseline {
        statement: statement.replace(&table, "raw"),
        rows,
        transactions,
        seconds,
        rows_per_s: rows as f64 / seconds,
        ms_per_tx: seconds * 1e3 / transactions.max(1) as f64,
        fsync,
        synchronous_commit,
        server_version,
    })
}
