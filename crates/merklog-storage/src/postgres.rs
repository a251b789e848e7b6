//! The PostgreSQL backend.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use merklog_event::EventQuery;
use merklog_merkle::{Hash, NodeId};
use merklog_sth::{SignedTreeHead, TreeHead};
use sqlx::postgres::{PgConnectOptions, PgExecutor, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tracing::instrument;

use crate::batch::{
    clamp_range, from_i64, hash_from_db, leaf_nodes_from_row, node_from_row, node_from_tile,
    node_location, rows, tile_hashes, tile_of, to_i64, MAX_STORED,
};
use crate::events::{cursor_after, hit_from_row, search_sql, Bind, Dialect, EVENT_COLUMNS};
use crate::{
    Batch, Entry, EventHit, LeaderLease, LeaderTerm, LeafNodes, LeafTile, LogSnapshot, LogStore,
    Result, StorageError, StoredEventRef,
};

/// The migrations, as embedded; [`PgStore::migrate`] may run migration 3
/// without its role creation.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long one [`LogStore::search_events`] statement may run on
/// PostgreSQL before it is cancelled ([`StorageError::QueryTimeout`]),
/// unless [`PgStore::with_search_timeout`] says otherwise.
pub const DEFAULT_SEARCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A log stored in PostgreSQL. Cheap to clone: clones share one pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    search_timeout: Duration,
}

impl PgStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) and brings the
    /// schema up to date.
    ///
    /// Every connection runs with `synchronous_commit = on`, whatever the
    /// server's default, so a returned append is on disk (as long as the
    /// server itself keeps `fsync = on`).
    ///
    /// When every migration is already applied (checked by reading
    /// `_sqlx_migrations`), none is run, so the service can connect as
    /// `merklog_writer`, which may not create tables; otherwise the pending
    /// ones are applied, which needs the tables' owner.
    ///
    /// # Errors
    /// [`StorageError::Config`] for a malformed URL;
    /// [`StorageError::Unavailable`] when the server cannot be reached;
    /// [`StorageError::Migration`] when the schema cannot be brought up to
    /// date (or was changed: a checksum differs).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StorageError::Config {
                reason: format!("not a PostgreSQL URL: {e}"),
            })?
            // Point reads by primary key must never be planned as parallel
            // scans with JIT: right after a bulk load, before statistics
            // exist, that made a one-row read take 73 ms (docs/BENCHMARKS.md).
            .options([
                ("synchronous_commit", "on"),
                ("jit", "off"),
                ("max_parallel_workers_per_gather", "0"),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        let store = PgStore::from_pool(pool);
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps an existing pool without touching the schema.
    pub fn from_pool(pool: PgPool) -> Self {
        PgStore {
            pool,
            search_timeout: DEFAULT_SEARCH_TIMEOUT,
        }
    }

    /// Returns the store with searches cancelled after `timeout` (at least
    /// 1 ms, PostgreSQL's unit; 0 would mean no limit).
    pub fn with_search_timeout(mut self, timeout: Duration) -> Self {
        self.search_timeout = timeout;
        self
    }

    /// The time limit of one search statement.
    pub fn search_timeout(&self) -> Duration {
        self.search_timeout
    }

    /// Returns the connection pool, for tools that query the tables
    /// directly (tests, `verify-store`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the pending migrations, if any.
    ///
    /// The cluster-wide roles the migrations use need CREATEROLE only to
    /// be created: an owner without it migrates a database once they exist
    /// (and it is a member of `merklog_tiler`), and is told what is missing
    /// otherwise, before any migration runs. Migration 3 creates its two
    /// roles without checking whether they exist (PostgreSQL checks
    /// CREATEROLE first), and a landed migration is never edited (its
    /// checksum is recorded): when both exist, the migrator runs it without
    /// those two statements, under its recorded checksum, which has the
    /// same effect.
    async fn migrate(&self) -> Result<()> {
        let applied = self.applied_migrations().await?;
        if migrations_current(&applied) {
            return Ok(());
        }
        let pending = |version: i64| !applied.get(&version).is_some_and(|(_, ok)| *ok);
        let needs: Vec<RoleNeed> = ROLE_NEEDS
            .iter()
            .filter(|need| pending(need.migration))
            .copied()
            .collect();
        let missing = role_prerequisites(&self.pool, &needs).await?;
        let roles_exist = !ROLE_NEEDS
            .iter()
            .any(|need| need.migration == ROLES_MIGRATION && missing.contains(&need.role));
        let migrations: Vec<sqlx::migrate::Migration> = MIGRATOR
            .iter()
            .map(|m| {
                if m.version == ROLES_MIGRATION && roles_exist {
                    sqlx::migrate::Migration {
                        sql: without_role_creation(&m.sql).into(),
                        ..m.clone()
                    }
                } else {
                    m.clone()
                }
            })
            .collect();
        let migrator = sqlx::migrate::Migrator {
            migrations: migrations.into(),
            ignore_missing: MIGRATOR.ignore_missing,
            locking: MIGRATOR.locking,
            no_tx: MIGRATOR.no_tx,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Returns each applied migration's checksum and success by version
    /// (none when the bookkeeping table does not exist yet).
    async fn applied_migrations(&self) -> Result<HashMap<i64, (Vec<u8>, bool)>> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        if !exists {
            return Ok(HashMap::new());
        }
        let applied: Vec<(i64, Vec<u8>, bool)> =
            sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations")
                .fetch_all(&self.pool)
                .await?;
        Ok(applied.into_iter().map(|(v, c, s)| (v, (c, s))).collect())
    }
}

/// Whether every embedded migration is applied with the same checksum.
fn migrations_current(applied: &HashMap<i64, (Vec<u8>, bool)>) -> bool {
    MIGRATOR.iter().all(|m| {
        applied
            .get(&m.version)
            .is_some_and(|(checksum, ok)| *ok && checksum[..] == m.checksum[..])
    })
}

/// The migration that creates `merklog_writer` and `merklog_reader`.
const ROLES_MIGRATION: i64 = 20261123000003;

/// A cluster-wide role a migration creates when it is missing, and
/// whether the migrating user must also be a member of it.
#[derive(Debug, Clone, Copy)]
struct RoleNeed {
    migration: i64,
    role: &'static str,
    membership: bool,
}

/// The roles of migration 3 and migration 7 (the owner of the tile
/// function, which the migrating user hands the function to).
const ROLE_NEEDS: [RoleNeed; 3] = [
    RoleNeed {
        migration: ROLES_MIGRATION,
        role: "merklog_writer",
        membership: false,
    },
    RoleNeed {
        migration: ROLES_MIGRATION,
        role: "merklog_reader",
        membership: false,
    },
    RoleNeed {
        migration: 20261203000007,
        role: "merklog_tiler",
        membership: true,
    },
];

/// Checks that the current user can run migrations that need the roles of
/// `needs`: each exists (or the user may create it: CREATEROLE or
/// superuser) and the user is a member where `membership` says so (or may
/// grant it to itself: CREATEROLE). Returns the roles that do not exist.
///
/// # Errors
/// [`StorageError::PermissionDenied`] naming the missing roles or
/// memberships, CREATEROLE, and the statements an administrator runs.
async fn role_prerequisites(pool: &PgPool, needs: &[RoleNeed]) -> Result<Vec<&'static str>> {
    if needs.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = needs.iter().map(|n| n.role).collect();
    let (user, may_create): (String, bool) = sqlx::query_as(
        "SELECT current_user::text, rolcreaterole OR rolsuper FROM pg_roles \
         WHERE rolname = current_user",
    )
    .fetch_one(pool)
    .await?;
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "SELECT rolname::text, pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles \
         WHERE rolname = ANY($1)",
    )
    .bind(&names)
    .fetch_all(pool)
    .await?;
    let existing: HashMap<String, bool> = rows.into_iter().collect();
    let missing: Vec<&'static str> = needs
        .iter()
        .filter(|n| !existing.contains_key(n.role))
        .map(|n| n.role)
        .collect();
    if may_create {
        return Ok(missing);
    }
    let not_member: Vec<&'static str> = needs
        .iter()
        .filter(|n| n.membership && existing.get(n.role) == Some(&false))
        .map(|n| n.role)
        .collect();
    if missing.is_empty() && not_member.is_empty() {
        return Ok(missing);
    }
    let mut fixes: Vec<String> = missing
        .iter()
        .map(|role| format!("CREATE ROLE {role} NOLOGIN;"))
        .collect();
    fixes.extend(
        needs
            .iter()
            .filter(|n| n.membership && (missing.contains(&n.role) || not_member.contains(&n.role)))
            .map(|n| format!("GRANT {} TO \"{user}\";", n.role)),
    );
    let mut wants = Vec::new();
    if !missing.is_empty() {
        wants.push(format!("the roles {} do not exist", missing.join(", ")));
    }
    if !not_member.is_empty() {
        wants.push(format!(
            "{user} is not a member of {}",
            not_member.join(", ")
        ));
    }
    Err(StorageError::PermissionDenied {
        message: format!(
            "the migrations cannot run as {user}: {}, and {user} lacks CREATEROLE to fix \
             that itself. Have an administrator run once per cluster: {} (or grant {user} \
             CREATEROLE), then start again (docs/STORAGE.md, \"Roles\")",
            wants.join(" and "),
            fixes.join(" ")
        ),
    })
}

/// The two statements of migration 3 that create its roles, each in a
/// block that ignores a role another session created meanwhile.
const ROLE_CREATION: [&str; 2] = [
    "DO $$\nBEGIN\n    CREATE ROLE merklog_writer NOLOGIN;\nEXCEPTION WHEN duplicate_object OR unique_violation THEN\n    NULL;\nEND;\n$$;\n",
    "DO $$\nBEGIN\n    CREATE ROLE merklog_reader NOLOGIN;\nEXCEPTION WHEN duplicate_object OR unique_violation THEN\n    NULL;\nEND;\n$$;\n",
];

/// Returns migration 3's SQL without [`ROLE_CREATION`], for a cluster
/// where both roles exist.
fn without_role_creation(sql: &str) -> String {
    ROLE_CREATION
        .iter()
        .fold(sql.to_owned(), |sql, block| sql.replacen(block, "", 1))
}

fn head_from_row(row: &PgRow) -> Result<SignedTreeHead> {
    Ok(SignedTreeHead {
        head: TreeHead {
            tree_size: from_i64(row.try_get("tree_size")?, "tree_size")?,
            timestamp_ms: from_i64(row.try_get("timestamp_ms")?, "timestamp_ms")?,
            root_hash: hash_from_db(row.try_get("root_hash")?, "root_hash")?,
        },
        signature: row.try_get("signature")?,
    })
}

impl LogStore for PgStore {
    // Refusals are the caller's to judge (a duplicate is how the sequencer
    // learns of a resubmitted entry, and it logs real failures): debug here.
    #[instrument(skip_all, fields(first_index = batch.first_index, leaves = batch.leaves.len()), err(level = "debug"))]
    async fn append_batch(&self, batch: &Batch) -> Result<()> {
        let rows = rows(batch)?;
        let mut idx = Vec::with_capacity(rows.len());
        let mut hashes = Vec::with_capacity(rows.len());
        let mut entries = Vec::with_capacity(rows.len());
        let mut nodes = Vec::with_capacity(rows.len());
        for row in &rows {
            idx.push(row.idx);
            hashes.push(row.leaf_hash.as_bytes().as_slice());
            entries.push(row.entry);
            nodes.push(row.nodes.as_slice());
        }
        let head = &batch.tree_head;

        let mut tx = self.pool.begin().await?;
        if !rows.is_empty() {
            // One statement for the whole batch: the order trigger then runs
            // once over its transition table.
            sqlx::query(
                "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) \
                 SELECT i, h, e, $4, n FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $5::bytea[]) AS t(i, h, e, n)",
            )
            .bind(&idx)
            .bind(&hashes)
            .bind(&entries)
            .bind(to_i64(batch.integrated_ms, "integrated_ms")?)
            .bind(&nodes)
            .execute(&mut *tx)
            .await?;
        }
        insert_events(&mut tx, &rows, batch.integrated_ms).await?;
        // The head's trigger sees the leaves above: same transaction.
        sqlx::query(
            "INSERT INTO tree_heads (tree_size, timestamp_ms, root_hash, signature) VALUES ($1, $2, $3, $4)",
        )
        .bind(to_i64(head.head.tree_size, "tree_size")?)
        .bind(to_i64(head.head.timestamp_ms, "timestamp_ms")?)
        .bind(head.head.root_hash.as_bytes().as_slice())
        .bind(&head.signature)
        .execute(&mut *tx)
        .await?;
        // Crash window: if the connection drops after COMMIT is sent but
        // before its answer arrives, the batch may or may not be stored; the
        // caller learns which from leaf_count() (see the trait's contract).
        tx.commit().await?;
        Ok(())
    }

    #[instrument(skip_all, fields(ids = ids.len()))]
    async fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        // Nodes below the tile height come from their block's tile when the
        // block is complete; the rest, from the rows that store them.
        let mut tiles: Vec<i64> = ids.iter().filter_map(|id| tile_of(*id)).collect();
        tiles.sort_unstable();
        tiles.dedup();
        let by_tile: HashMap<i64, Vec<Hash>> = if tiles.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as::<_, (i64, Vec<u8>)>(
                "SELECT tile, hashes FROM leaf_tiles WHERE tile = ANY($1)",
            )
            .bind(&tiles)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(tile, bytes)| Ok((tile, tile_hashes(from_i64(tile, "tile")?, &bytes)?)))
            .collect::<Result<_>>()?
        };
        let stored_tile = |id: &NodeId| tile_of(*id).and_then(|tile| by_tile.get(&tile));
        let mut wanted = Vec::new();
        for id in ids.iter().filter(|id| stored_tile(id).is_none()) {
            let (row, _) = node_location(*id).ok_or(StorageError::NodeMissing { id: *id })?;
            wanted.push(row as i64);
        }
        wanted.sort_unstable();
        wanted.dedup();
        let by_idx: HashMap<i64, (Vec<u8>, Vec<u8>)> = if wanted.is_empty() {
            HashMap::new()
        } else {
            sqlx::query_as::<_, (i64, Vec<u8>, Vec<u8>)>(
                "SELECT idx, leaf_hash, nodes FROM leaves WHERE idx = ANY($1)",
            )
            .bind(&wanted)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(i, h, n)| (i, (h, n)))
            .collect()
        };
        ids.iter()
            .map(|id| {
                if let Some(tile) = stored_tile(id) {
                    return node_from_tile(*id, tile);
                }
                let (row, _) = node_location(*id).expect("checked above");
                let (leaf_hash, nodes) = by_idx
                    .get(&(row as i64))
                    .ok_or(StorageError::NodeMissing { id: *id })?;
                node_from_row(*id, leaf_hash, nodes)
            })
            .collect()
    }

    #[instrument(skip(self))]
    async fn leaf_tiles(&self, first_tile: u64, end_tile: u64) -> Result<Option<Vec<LeafTile>>> {
        read_leaf_tiles(&self.pool, first_tile, end_tile)
            .await
            .map(Some)
    }

    #[instrument(skip(self))]
    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        read_entries(&self.pool, start, end).await
    }

    #[instrument(skip_all, fields(hashes = hashes.len()))]
    async fn find_by_leaf_hash(&self, hashes: &[Hash]) -> Result<Vec<(Hash, u64)>> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
        let rows: Vec<(Vec<u8>, i64)> =
            sqlx::query_as("SELECT leaf_hash, idx FROM leaves WHERE leaf_hash = ANY($1::bytea[])")
                .bind(&wanted)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(h, i)| Ok((hash_from_db(&h, "leaf_hash")?, from_i64(i, "idx")?)))
            .collect()
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
             WHERE tree_size = $1 ORDER BY timestamp_ms DESC LIMIT 1",
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
             WHERE timestamp_ms < $1 ORDER BY timestamp_ms DESC, tree_size DESC LIMIT 1",
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

    async fn try_lead(&self, address: &str) -> Result<Option<LeaderLease>> {
        crate::leader::try_lead(&self.pool, address).await
    }

    async fn leader_term(&self) -> Result<Option<LeaderTerm>> {
        crate::leader::latest_term(&self.pool).await
    }

    #[instrument(skip_all, fields(ids = ids.len()))]
    async fn find_events_by_id(&self, ids: &[String]) -> Result<Vec<StoredEventRef>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT e.event_id, e.idx, l.leaf_hash FROM events e JOIN leaves l ON l.idx = e.idx \
             WHERE e.event_id = ANY($1::text[])",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(event_id, idx, hash)| {
                Ok(StoredEventRef {
                    event_id,
                    index: from_i64(idx, "idx")?,
                    leaf_hash: hash_from_db(&hash, "leaf_hash")?,
                })
            })
            .collect()
    }

    #[instrument(skip_all, fields(tree_size, page_size = query.page_size), err)]
    async fn search_events(&self, query: &EventQuery, tree_size: u64) -> Result<Vec<EventHit>> {
        let Some(search) = search_sql(
            query,
            tree_size,
            cursor_after(query),
            query.page_size,
            Dialect::Postgres,
        ) else {
            return Ok(Vec::new());
        };
        let mut statement = sqlx::query_as::<_, (i64, i64, Vec<u8>, Vec<u8>, i64)>(&search.sql);
        for bind in search.binds {
            statement = match bind {
                Bind::Int(v) => statement.bind(v),
                Bind::Text(v) => statement.bind(v),
            };
        }
        // SET LOCAL (is_local = true): the settings end with this
        // transaction, so the pooled connection goes back without them.
        // Custom plans: a plan made for the bound values picks the index
        // that suits them (an action prefix matching half the log is best
        // read in time order, a rare one from the action index), where a
        // cached generic plan took 1 s for a page that takes 0.4 ms.
        let limit_ms = self.search_timeout.as_millis().clamp(1, i64::MAX as u128);
        let mut tx = self.pool.begin_with("BEGIN READ ONLY").await?;
        sqlx::query(
            "SELECT set_config('statement_timeout', $1, true), \
                    set_config('plan_cache_mode', 'force_custom_plan', true)",
        )
        .bind(format!("{limit_ms}ms"))
        .execute(&mut *tx)
        .await?;
        let rows = statement.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        rows.into_iter().map(hit_from_row).collect()
    }
}

/// One consistent, read-only view of a [`PgStore`]: a `REPEATABLE READ,
/// READ ONLY` transaction on one connection, so that every read sees the
/// log as it was at the first one, whatever is appended meanwhile (an
/// append's leaves, tiles and head commit together). Rolled back when
/// dropped.
///
/// The transaction holds one of the pool's connections for as long as the
/// snapshot lives. It also keeps PostgreSQL from vacuuming rows deleted
/// after it began, which an append-only log barely has.
#[derive(Debug)]
pub struct PgSnapshot {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl PgStore {
    /// Opens a [`PgSnapshot`] of the store.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when no connection can be had.
    pub async fn snapshot(&self) -> Result<PgSnapshot> {
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        Ok(PgSnapshot { tx })
    }
}

impl LogSnapshot for PgSnapshot {
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

    async fn leaf_tiles(
        &mut self,
        first_tile: u64,
        end_tile: u64,
    ) -> Result<Option<Vec<LeafTile>>> {
        read_leaf_tiles(&mut *self.tx, first_tile, end_tile)
            .await
            .map(Some)
    }
}

// The reads a store and its snapshot share, on the pool or on the
// snapshot's transaction.

async fn read_leaf_tiles<'e>(
    db: impl PgExecutor<'e>,
    first_tile: u64,
    end_tile: u64,
) -> Result<Vec<LeafTile>> {
    let (first, end) = clamp_range(first_tile, end_tile);
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT tile, hashes FROM leaf_tiles WHERE tile >= $1 AND tile < $2 ORDER BY tile",
    )
    .bind(first)
    .bind(end)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(tile, bytes)| {
            let tile = from_i64(tile, "tile")?;
            Ok((tile, tile_hashes(tile, &bytes)?))
        })
        .collect()
}

async fn read_entries<'e>(db: impl PgExecutor<'e>, start: u64, end: u64) -> Result<Vec<Entry>> {
    let (start, end) = clamp_range(start, end);
    let rows: Vec<(i64, Vec<u8>, Vec<u8>, i64)> = sqlx::query_as(
        "SELECT idx, leaf_hash, entry, integrated_ms FROM leaves \
         WHERE idx >= $1 AND idx < $2 ORDER BY idx",
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

async fn read_leaf_count<'e>(db: impl PgExecutor<'e>) -> Result<u64> {
    let count: i64 = sqlx::query_scalar("SELECT coalesce(max(idx) + 1, 0) FROM leaves")
        .fetch_one(db)
        .await?;
    from_i64(count, "leaf count")
}

async fn read_latest_tree_head<'e>(db: impl PgExecutor<'e>) -> Result<Option<SignedTreeHead>> {
    let row = sqlx::query(
        "SELECT tree_size, timestamp_ms, root_hash, signature FROM tree_heads \
         ORDER BY tree_size DESC, timestamp_ms DESC LIMIT 1",
    )
    .fetch_optional(db)
    .await?;
    row.as_ref().map(head_from_row).transpose()
}

async fn read_tree_heads<'e>(
    db: impl PgExecutor<'e>,
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
         WHERE (tree_size, timestamp_ms) > ($1, $2) \
         ORDER BY tree_size, timestamp_ms LIMIT $3",
    )
    .bind(size)
    .bind(ts)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    rows.iter().map(head_from_row).collect()
}

async fn read_leaves_with_nodes<'e>(
    db: impl PgExecutor<'e>,
    start: u64,
    end: u64,
) -> Result<Vec<LeafNodes>> {
    let (start, end) = clamp_range(start, end);
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT idx, leaf_hash, nodes FROM leaves WHERE idx >= $1 AND idx < $2 ORDER BY idx",
    )
    .bind(start)
    .bind(end)
    .fetch_all(db)
    .await?;
    rows.into_iter().map(leaf_nodes_from_row).collect()
}

/// Inserts the `events` rows of the batch's event leaves with one
/// statement, in the batch's transaction.
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[crate::batch::LeafRow<'_>],
    integrated_ms: u64,
) -> Result<()> {
    let events: Vec<(i64, &crate::events::EventRow)> = rows
        .iter()
        .filter_map(|row| row.event.map(|event| (row.idx, event)))
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&crate::events::EventRow) -> &str| -> Vec<&str> {
        events.iter().map(|(_, e)| f(e)).collect()
    };
    let optional = |f: fn(&crate::events::EventRow) -> Option<&str>| -> Vec<Option<&str>> {
        events.iter().map(|(_, e)| f(e)).collect()
    };
    let idx: Vec<i64> = events.iter().map(|(i, _)| *i).collect();
    let occurred: Vec<i64> = events.iter().map(|(_, e)| e.occurred_ns).collect();
    sqlx::query(&format!(
        "INSERT INTO events ({EVENT_COLUMNS}) \
         SELECT i, id, o, $4, ai, ak, ac, rk, ri, oc, os, oh, ip, rq, tr, at::jsonb \
         FROM unnest($1::bigint[], $2::text[], $3::bigint[], $5::text[], $6::text[], $7::text[], \
                     $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                     $14::text[], $15::text[], $16::text[]) \
              AS t(i, id, o, ai, ak, ac, rk, ri, oc, os, oh, ip, rq, tr, at)"
    ))
    .bind(&idx)
    .bind(column(|e| &e.event_id))
    .bind(&occurred)
    .bind(to_i64(integrated_ms, "integrated_ms")?)
    .bind(column(|e| &e.actor_id))
    .bind(column(|e| &e.actor_kind))
    .bind(column(|e| &e.action))
    .bind(optional(|e| e.resource_kind.as_deref()))
    .bind(optional(|e| e.resource_id.as_deref()))
    .bind(column(|e| e.outcome))
    .bind(optional(|e| e.origin_service.as_deref()))
    .bind(optional(|e| e.origin_host.as_deref()))
    .bind(optional(|e| e.source_ip.as_deref()))
    .bind(optional(|e| e.request_id.as_deref()))
    .bind(optional(|e| e.trace_id.as_deref()))
    .bind(column(|e| &e.attributes))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn migration_3_runs_without_creating_roles_once_they_exist() {
        let roles = MIGRATOR
            .iter()
            .find(|m| m.version == ROLES_MIGRATION)
            .expect("migration 3 is embedded");
        assert_eq!(roles.sql.matches("CREATE ROLE").count(), 2);
        let stripped = without_role_creation(&roles.sql);
        assert!(!stripped.contains("CREATE ROLE"), "{stripped}");
        // Everything else stays: the grants and the revocation.
        assert_eq!(
            stripped.len(),
            roles.sql.len() - ROLE_CREATION.iter().map(|b| b.len()).sum::<usize>()
        );
        assert!(stripped.contains("GRANT SELECT, INSERT ON leaves, tree_heads TO merklog_writer"));
        assert!(stripped.contains("REVOKE ALL ON leaves, tree_heads FROM PUBLIC"));
    }

    #[test]
    fn every_role_a_migration_creates_is_checked_first() {
        for m in MIGRATOR.iter() {
            for role in ["merklog_writer", "merklog_reader", "merklog_tiler"] {
                if m.sql.contains(&format!("CREATE ROLE {role}")) {
                    assert!(
                        ROLE_NEEDS
                            .iter()
                            .any(|n| n.migration == m.version && n.role == role),
                        "migration {} creates {role}",
                        m.version
                    );
                }
            }
            assert_eq!(
                m.sql.matches("CREATE ROLE").count(),
                ROLE_NEEDS
                    .iter()
                    .filter(|n| n.migration == m.version)
                    .count(),
                "migration {} creates a role ROLE_NEEDS does not know",
                m.version
            );
        }
    }

    /// A role that does not exist is reported, with CREATEROLE and the
    /// statement to run, to a user without CREATEROLE; a user with it is
    /// let through (it creates the role itself).
    #[cfg(feature = "testing")]
    #[tokio::test]
    async fn a_missing_role_names_createrole_and_the_fix() {
        use crate::testing::{admin_url, TempRole};

        let absent: &'static str =
            Box::leak(format!("merklog_absent_{}", std::process::id()).into_boxed_str());
        let needs = [RoleNeed {
            migration: 0,
            role: absent,
            membership: true,
        }];
        let plain = TempRole::create("merklog_plain", "NOSUPERUSER", &[]).await;
        let pool = PgPool::connect(&plain.url(&admin_url())).await.unwrap();
        let err = role_prerequisites(&pool, &needs)
            .await
            .expect_err("the role is missing and cannot be created");
        let text = err.to_string();
        assert!(
            matches!(err, StorageError::PermissionDenied { .. }),
            "{text}"
        );
        assert!(
            text.contains(&format!("the roles {absent} do not exist")),
            "{text}"
        );
        assert!(text.contains("lacks CREATEROLE"), "{text}");
        assert!(
            text.contains(&format!("CREATE ROLE {absent} NOLOGIN;")),
            "{text}"
        );
        assert!(
            text.contains(&format!("GRANT {absent} TO \"{}\";", plain.name())),
            "{text}"
        );
        pool.close().await;

        let creator = TempRole::create("merklog_creator", "NOSUPERUSER CREATEROLE", &[]).await;
        let pool = PgPool::connect(&creator.url(&admin_url())).await.unwrap();
        assert_eq!(role_prerequisites(&pool, &needs).await.unwrap(), [absent]);
        pool.close().await;
    }
}
