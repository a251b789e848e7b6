//! The embedded SQLite backend: the same tables and triggers as PostgreSQL,
//! in one file, nothing to install.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use merklog_event::{EventQuery, SealedEvent};
use merklog_merkle::{Hash, NodeId};
use merklog_sth::{SignedTreeHead, TreeHead};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteExecutor, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::Row;
use tracing::instrument;

use crate::batch::{
    clamp_range, from_i64, hash_from_db, leaf_nodes_from_row, node_from_row, node_location, rows,
    to_i64, MAX_STORED,
};
use crate::events::{
    cursor_after, hit_from_row, needs_recheck, search_sql, After, Bind, Dialect, EventRow,
    EVENT_COLUMNS,
};
use crate::{
    Batch, Entry, EventHit, LeaderLease, LeafNodes, LogSnapshot, LogStore, Result, StorageError,
    StoredEventRef,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Where the embedded store lives when no database is configured.
pub const DEFAULT_SQLITE_PATH: &str = "./data/merklog.db";

/// How many values one `IN (...)` list binds; SQLite allows 32,766.
const IN_LIST_CHUNK: usize = 1000;

/// How many leaf rows one INSERT carries (5 binds each).
const INSERT_CHUNK: usize = 100;

/// How many event rows one INSERT carries (16 binds each).
const EVENT_INSERT_CHUNK: usize = 100;

/// How many candidate rows one read of a re-checked search fetches at
/// least (a page's worth when pages are larger).
const RECHECK_READ: u32 = 200;

/// A log stored in one SQLite file. Cheap to clone: clones share one pool.
///
/// Opening a store does not lock it, so that readers (`verify-store`, a
/// backup check) may open a file a server is appending to; the one process
/// that sequences takes the lock file beside it through
/// [`LogStore::try_lead`] (docs/STORAGE.md, "One process per SQLite file").
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file and its lock file, `<database>.lock`; `None` for
    /// an in-memory database, which no other store can open.
    files: Option<(PathBuf, PathBuf)>,
}

impl SqliteStore {
    /// Opens (creating it and its directory if needed) the store in the file
    /// at `path`, and brings the schema up to date.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the directory or file cannot be
    /// created or opened; [`StorageError::Migration`].
    pub async fn open_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        create_private_file(path)?;
        let files = Some(lock_file_of(path));
        Self::open_with(SqliteConnectOptions::new().filename(path), files).await
    }

    /// Opens the store at a `sqlite:` URL (`sqlite://path/to/file.db`,
    /// `sqlite::memory:`), creating the file if needed.
    ///
    /// # Errors
    /// [`StorageError::Config`] for a malformed URL; otherwise as
    /// [`SqliteStore::open_path`].
    pub async fn open_url(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url).map_err(|e| StorageError::Config {
            reason: format!("not a SQLite URL: {e}"),
        })?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let files = if in_memory {
            None
        } else {
            create_private_file(options.get_filename())?;
            Some(lock_file_of(options.get_filename()))
        };
        Self::open_with(options, files).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        files: Option<(PathBuf, PathBuf)>,
    ) -> Result<Self> {
        let in_memory = files.is_none();
        let options = options
            .create_if_missing(true)
            // WAL lets readers run beside the appender; FULL syncs the WAL at
            // every commit, so a returned append survives a power loss.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // 64 MiB of page cache per connection instead of 2 MiB: the
            // leaf-hash index is written at random places, and past ~100,000
            // leaves a 2 MiB cache turns every insert into disk reads.
            .pragma("cache_size", "-65536")
            .busy_timeout(Duration::from_secs(5));
        // Each connection to `:memory:` would be a database of its own.
        let max = if in_memory { 1 } else { 4 };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(if in_memory {
                None
            } else {
                Some(Duration::from_secs(600))
            })
            .max_lifetime(if in_memory {
                None
            } else {
                Some(Duration::from_secs(1800))
            })
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, files })
    }

    /// Returns the connection pool, for tools that query the tables
    /// directly (tests, `verify-store`).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn head_from_row(row: &SqliteRow) -> Result<SignedTreeHead> {
    Ok(SignedTreeHead {
        head: TreeHead {
            tree_size: from_i64(row.try_get("tree_size")?, "tree_size")?,
            timestamp_ms: from_i64(row.try_get("timestamp_ms")?, "timestamp_ms")?,
            root_hash: hash_from_db(row.try_get("root_hash")?, "root_hash")?,
        },
        signature: row.try_get("signature")?,
    })
}

/// Returns the database file `path` (resolved through symbolic links, so
/// that every way of naming the file finds the same lock file) and its lock
/// file, `<database>.lock` beside it.
fn lock_file_of(path: &Path) -> (PathBuf, PathBuf) {
    let database = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut lock = database.clone().into_os_string();
    lock.push(".lock");
    (database, PathBuf::from(lock))
}

/// Returns `?, ?, …` with `n` placeholders.
fn placeholders(n: usize) -> String {
    let mut s = "?, ".repeat(n);
    s.truncate(s.len().saturating_sub(2));
    s
}

/// Creates the store's file, and the directories above it, readable by
/// their owner only (0600 and 0700 on Unix) when they do not exist yet: the
/// log's entries are its users' audit records. SQLite gives the `-wal` and
/// `-shm` files it creates beside the database the database file's mode. An
/// existing file keeps its mode (it is the operator's), with a warning when
/// others may read it.
fn create_private_file(path: &Path) -> Result<()> {
    let io = |e: std::io::Error| StorageError::Unavailable {
        source: sqlx::Error::Io(e),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(
                        path = %path.display(),
                        mode = format_args!("{:o}", mode & 0o777),
                        "the log's database file may be read by others than its owner: chmod 600 it"
                    );
                }
            }
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

impl LogStore for SqliteStore {
    // Refusals are the caller's to judge (a duplicate is how the sequencer
    // learns of a resubmitted entry, and it logs real failures): debug here.
    #[instrument(skip_all, fields(first_index = batch.first_index, leaves = batch.leaves.len()), err(level = "debug"))]
    async fn append_batch(&self, batch: &Batch) -> Result<()> {
        let rows = rows(batch)?;
        let integrated_ms = to_i64(batch.integrated_ms, "integrated_ms")?;
        let head = &batch.tree_head;
        // IMMEDIATE takes the write lock up front, so a concurrent writer
        // waits (busy_timeout) instead of failing half-way.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Multi-row VALUES: a third of the time of one statement per row,
        // which pays a hop to sqlx's SQLite worker thread each (measured in
        // examples/storage_bench.rs). The order trigger still runs per row.
        for chunk in rows.chunks(INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) VALUES {}",
                vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for row in chunk {
                query = query
                    .bind(row.idx)
                    .bind(row.leaf_hash.as_bytes().as_slice())
                    .bind(row.entry)
                    .bind(integrated_ms)
                    .bind(row.nodes.as_slice());
            }
            query.execute(&mut *tx).await?;
        }
        let events: Vec<(i64, &EventRow)> = rows
            .iter()
            .filter_map(|row| row.event.map(|event| (row.idx, event)))
            .collect();
        for chunk in events.chunks(EVENT_INSERT_CHUNK) {
            let sql = format!(
                "INSERT INTO events ({EVENT_COLUMNS}) VALUES {}",
                vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (idx, e) in chunk {
                query = query
                    .bind(*idx)
                    .bind(e.event_id.as_str())
                    .bind(e.occurred_ns)
                    .bind(integrated_ms)
                    .bind(e.actor_id.as_str())
                    .bind(e.actor_kind.as_str())
                    .bind(e.action.as_str())
                    .bind(e.resource_kind.as_deref())
                    .bind(e.resource_id.as_deref())
                    .bind(e.outcome)
                    .bind(e.origin_service.as_deref())
                    .bind(e.origin_host.as_deref())
                    .bind(e.source_ip.as_deref())
                    .bind(e.request_id.as_deref())
                    .bind(e.trace_id.as_deref())
                    .bind(e.attributes.as_str());
            }
            if let Err(err) = query.execute(&mut *tx).await {
                return Err(match StorageError::from(err) {
                    // SQLite names the column, not the value: find it
                    // while the transaction still holds the write lock
                    // (ids are distinct within a batch, checked by rows()).
                    StorageError::DuplicateEvent { .. } => {
                        let ids: Vec<String> =
                            chunk.iter().map(|(_, e)| e.event_id.clone()).collect();
                        let stored = find_events(&mut tx, &ids).await?;
                        StorageError::DuplicateEvent {
                            event_id: stored
                                .into_iter()
                                .next()
                                .map(|found| found.event_id)
                                .unwrap_or_default(),
                        }
                    }
                    other => other,
                });
            }
        }
        sqlx::query(
            "INSERT INTO tree_heads (tree_size, timestamp_ms, root_hash, signature) VALUES (?, ?, ?, ?)",
        )
        .bind(to_i64(head.head.tree_size, "tree_size")?)
        .bind(to_i64(head.head.timestamp_ms, "timestamp_ms")?)
        .bind(head.head.root_hash.as_bytes().as_slice())
        .bind(head.signature.as_slice())
        .execute(&mut *tx)
        .await?;
        // With synchronous=FULL the WAL is synced before COMMIT returns.
        tx.commit().await?;
        Ok(())
    }

    #[instrument(skip_all, fields(ids = ids.len()))]
    async fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        let mut wanted = Vec::with_capacity(ids.len());
        for id in ids {
            let (row, _) = node_location(*id).ok_or(StorageError::NodeMissing { id: *id })?;
            wanted.push(row as i64);
        }
        wanted.sort_unstable();
        wanted.dedup();
        let mut by_idx: HashMap<i64, (Vec<u8>, Vec<u8>)> = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT idx, leaf_hash, nodes FROM leaves WHERE idx IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_as::<_, (i64, Vec<u8>, Vec<u8>)>(&sql);
            for idx in chunk {
                query = query.bind(idx);
            }
            for (i, h, n) in query.fetch_all(&self.pool).await? {
                by_idx.insert(i, (h, n));
            }
        }
        ids.iter()
            .map(|id| {
                let (row, _) = node_location(*id).expect("checked above");
                let (leaf_hash, nodes) = by_idx
                    .get(&(row as i64))
                    .ok_or(StorageError::NodeMissing { id: *id })?;
                node_from_row(*id, leaf_hash, nodes)
            })
            .collect()
    }

    #[instrument(skip(self))]
    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        read_entries(&self.pool, start, end).await
    }

    #[instrument(skip_all, fields(hashes = hashes.len()))]
    async fn find_by_leaf_hash(&self, hashes: &[Hash]) -> Result<Vec<(Hash, u64)>> {
        let mut found = Vec::new();
        for chunk in hashes.chunks(IN_LIST_CHUNK) {
            let sql = format!(
                "SELECT leaf_hash, idx FROM leaves WHERE leaf_hash IN ({})",
                placeholders(chunk.len())
            );
            let mut query = sqlx::query_as::<_, (Vec<u8>, i64)>(&sql);
            for h in chunk {
                query = query.bind(h.as_bytes().as_slice());
            }
            for (h, i) in query.fetch_all(&self.pool).await? {
                found.push((hash_from_db(&h, "leaf_hash")?, from_i64(i, "idx")?));
            }
        }
        Ok(found)
    }

    #[instrument(skip(self))]
    async fn leaf_count(&self) -> Result<u64> {
        read_leaf_count(&self.pool).await
    }

    #[instrument(skip(self))]
    async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>> {
        read_latest_tree_head(&self.pool).await
    }

    #[instrument(skip(self))]
    async fn tree_head_at_size(&self, tree_size: u64) -> Result<Option<SignedTreeHead>> {
        let Ok(size) = i64::try_from(tree_size) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT tree_size, timestamp_ms, root_hash, signature FROM tree_heads \
             WHERE tree_size = ? ORDER BY timestamp_ms DESC LIMIT 1",
        )
        .bind(size)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(head_from_row).transpose()
    }

    #[instrument(skip(self))]
    async fn tree_heads(&self, after: Option<TreeHead>, limit: u32) -> Result<Vec<SignedTreeHead>> {
        read_tree_heads(&self.pool, after, limit).await
    }

    #[instrument(skip(self))]
    async fn tree_head_before(&self, timestamp_ms: u64) -> Result<Option<SignedTreeHead>> {
        // By the index on (timestamp_ms, tree_size), whose order is the
        // (tree_size, timestamp_ms) order once times do not go back
        // (migration 20261203000010).
        let row = sqlx::query(
            "SELECT tree_size, timestamp_ms, root_hash, signature FROM tree_heads \
             WHERE timestamp_ms < ? ORDER BY timestamp_ms DESC, tree_size DESC LIMIT 1",
        )
        .bind(timestamp_ms.min(MAX_STORED) as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(head_from_row).transpose()
    }

    #[instrument(skip(self))]
    async fn leaves_with_nodes(&self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        read_leaves_with_nodes(&self.pool, start, end).await
    }

    /// Takes the exclusive lock on the lock file beside the database, held
    /// until the lease is released or dropped (or the process exits); never
    /// `None`: waiting would not end another process's hold.
    ///
    /// # Errors
    /// [`StorageError::StoreLocked`] when another process or store holds
    /// it; [`StorageError::Unsupported`] for an in-memory database (no
    /// other store can reach it, so there is nothing to lock).
    async fn try_lead(&self, _address: &str) -> Result<Option<LeaderLease>> {
        let Some((database, lock_file)) = &self.files else {
            return Err(crate::unsupported_leadership());
        };
        LeaderLease::lock_file(database, lock_file).map(Some)
    }

    #[instrument(skip_all, fields(ids = ids.len()))]
    async fn find_events_by_id(&self, ids: &[String]) -> Result<Vec<StoredEventRef>> {
        let mut conn = self.pool.acquire().await?;
        find_events(&mut conn, ids).await
    }

    #[instrument(skip_all, fields(tree_size, page_size = query.page_size), err)]
    async fn search_events(&self, query: &EventQuery, tree_size: u64) -> Result<Vec<EventHit>> {
        let page = query.page_size as usize;
        let recheck = needs_recheck(query, Dialect::Sqlite);
        // Without an attribute filter the statement is exact: one read of a
        // page. With one, candidates are read in order and re-checked
        // until a page is full or the window is exhausted.
        let read = if recheck {
            query.page_size.max(RECHECK_READ)
        } else {
            query.page_size
        };
        let mut after = cursor_after(query);
        let mut hits = Vec::new();
        let mut conn = self.pool.acquire().await?;
        while let Some(search) = search_sql(query, tree_size, after, read, Dialect::Sqlite) {
            let mut statement = sqlx::query_as::<_, (i64, i64, Vec<u8>, Vec<u8>, i64)>(&search.sql);
            for bind in search.binds {
                statement = match bind {
                    Bind::Int(v) => statement.bind(v),
                    Bind::Text(v) => statement.bind(v),
                };
            }
            let rows = statement.fetch_all(&mut *conn).await?;
            let exhausted = rows.len() < read as usize;
            if let Some(&(idx, time, ..)) = rows.last() {
                after = Some(After { time, idx });
            }
            for row in rows {
                let hit = hit_from_row(row)?;
                if !recheck || rechecked(query, &hit) {
                    hits.push(hit);
                }
                if hits.len() == page {
                    return Ok(hits);
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(hits)
    }
}

/// One consistent, read-only view of a [`SqliteStore`]: a read
/// transaction on one connection. In WAL mode it reads the database as it
/// was at its first read, whatever is appended meanwhile. Rolled back when
/// dropped.
#[derive(Debug)]
pub struct SqliteSnapshot {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
}

impl SqliteStore {
    /// Opens a [`SqliteSnapshot`] of the store. It takes no lock that
    /// keeps the appender waiting; it holds one of the pool's connections
    /// while it lives.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when no connection can be had.
    pub async fn snapshot(&self) -> Result<SqliteSnapshot> {
        // A deferred BEGIN: the snapshot starts at the first read.
        let tx = self.pool.begin().await?;
        Ok(SqliteSnapshot { tx })
    }
}

impl LogSnapshot for SqliteSnapshot {
    async fn leaf_count(&mut self) -> Result<u64> {
        read_leaf_count(&mut *self.tx).await
    }

    async fn latest_tree_head(&mut self) -> Result<Option<SignedTreeHead>> {
        read_latest_tree_head(&mut *self.tx).await
    }

    async fn tree_heads(
        &mut self,
        after: Option<TreeHead>,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>> {
        read_tree_heads(&mut *self.tx, after, limit).await
    }

    async fn entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>> {
        read_entries(&mut *self.tx, start, end).await
    }

    async fn leaves_with_nodes(&mut self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        read_leaves_with_nodes(&mut *self.tx, start, end).await
    }
}

// The reads a store and its snapshot share, on the pool or on the
// snapshot's transaction.

async fn read_entries<'e>(db: impl SqliteExecutor<'e>, start: u64, end: u64) -> Result<Vec<Entry>> {
    let (start, end) = clamp_range(start, end);
    let rows: Vec<(i64, Vec<u8>, Vec<u8>, i64)> = sqlx::query_as(
        "SELECT idx, leaf_hash, entry, integrated_ms FROM leaves \
         WHERE idx >= ? AND idx < ? ORDER BY idx",
    )
    .bind(start)
    .bind(end)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(idx, hash, entry, ms)| {
            Ok(Entry {
                index: from_i64(idx, "idx")?,
                leaf_hash: hash_from_db(&hash, "leaf_hash")?,
                entry,
                integrated_ms: from_i64(ms, "integrated_ms")?,
            })
        })
        .collect()
}

async fn read_leaf_count<'e>(db: impl SqliteExecutor<'e>) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT coalesce(max(idx) + 1, 0) FROM leaves")
        .fetch_one(db)
        .await?;
    from_i64(count, "leaf count")
}

async fn read_latest_tree_head<'e>(db: impl SqliteExecutor<'e>) -> Result<Option<SignedTreeHead>> {
    let row = sqlx::query(
        "SELECT tree_size, timestamp_ms, root_hash, signature FROM tree_heads \
         ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    row.as_ref().map(head_from_row).transpose()
}

async fn read_tree_heads<'e>(
    db: impl SqliteExecutor<'e>,
    after: Option<TreeHead>,
    limit: u32,
) -> Result<Vec<SignedTreeHead>> {
    let (size, ts) = match after {
        None => (-1i64, -1i64),
        Some(h) => (
            h.tree_size.min(MAX_STORED) as i64,
            h.timestamp_ms.min(MAX_STORED) as i64,
        ),
    };
    let rows = sqlx::query(
        "SELECT tree_size, timestamp_ms, root_hash, signature FROM tree_heads \
         WHERE (tree_size, timestamp_ms) > (?, ?) \
         ORDER BY tree_size, timestamp_ms LIMIT ?",
    )
    .bind(size)
    .bind(ts)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter().map(head_from_row).collect()
}

async fn read_leaves_with_nodes<'e>(
    db: impl SqliteExecutor<'e>,
    start: u64,
    end: u64,
) -> Result<Vec<LeafNodes>> {
    let (start, end) = clamp_range(start, end);
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT idx, leaf_hash, nodes FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
    )
    .bind(start)
    .bind(end)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(leaf_nodes_from_row).collect()
}

/// Whether the event in `hit`'s entry matches `query`, by the reference
/// semantics; a leaf that is not an event leaf matches nothing.
fn rechecked(query: &EventQuery, hit: &EventHit) -> bool {
    SealedEvent::parse(&hit.entry)
        .is_ok_and(|sealed| query.matches(&sealed.event, hit.index, hit.integrated_ms))
}

/// [`LogStore::find_events_by_id`] on `conn` (a transaction's, too).
async fn find_events(
    conn: &mut sqlx::SqliteConnection,
    ids: &[String],
) -> Result<Vec<StoredEventRef>> {
    let mut found = Vec::new();
    for chunk in ids.chunks(IN_LIST_CHUNK) {
        let sql = format!(
            "SELECT e.event_id, e.idx, l.leaf_hash FROM events e JOIN leaves l ON l.idx = e.idx \
             WHERE e.event_id IN ({})",
            placeholders(chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64, Vec<u8>)>(&sql);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        for (event_id, idx, hash) in query.fetch_all(&mut *conn).await? {
            found.push(StoredEventRef {
                event_id,
                index: from_i64(idx, "idx")?,
                leaf_hash: hash_from_db(&hash, "leaf_hash")?,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_are_comma_separated() {
        assert_eq!(super::placeholders(0), "");
        assert_eq!(super::placeholders(3), "?, ?, ?");
    }
}
