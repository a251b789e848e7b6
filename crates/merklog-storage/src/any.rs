//! The store chosen at run time from a URL or path.

use merklog_event::EventQuery;
use merklog_merkle::{Hash, NodeId};
use merklog_sth::{SignedTreeHead, TreeHead};

use crate::{
    Batch, Entry, EventHit, LeaderLease, LeaderTerm, LeafNodes, LeafTile, LogSnapshot, LogStore,
    PgSnapshot, PgStore, Result, SqliteSnapshot, SqliteStore, StorageError, StoredEventRef,
    DEFAULT_SQLITE_PATH,
};

/// Either backend, so the service can pick one from its configuration.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl AnyStore {
    /// Opens the store `url_or_path` names and brings its schema up to date:
    /// PostgreSQL for `postgres://` and `postgresql://` URLs, SQLite for
    /// `sqlite:` URLs and for anything else, taken as a file path (the empty
    /// string means [`DEFAULT_SQLITE_PATH`]).
    ///
    /// # Errors
    /// [`StorageError::Config`] for another URL scheme or a malformed URL;
    /// otherwise as [`PgStore::connect`] and [`SqliteStore::open_path`].
    pub async fn open(url_or_path: &str) -> Result<AnyStore> {
        let target = url_or_path.trim();
        if target.starts_with("postgres://") || target.starts_with("postgresql://") {
            return Ok(AnyStore::Postgres(PgStore::connect(target).await?));
        }
        if target.starts_with("sqlite:") {
            return Ok(AnyStore::Sqlite(SqliteStore::open_url(target).await?));
        }
        if let Some((scheme, _)) = target.split_once("://") {
            return Err(StorageError::Config {
                reason: format!(
                    "unsupported storage URL scheme {scheme:?}: use postgres://, sqlite: or a file path"
                ),
            });
        }
        let path = if target.is_empty() {
            DEFAULT_SQLITE_PATH
        } else {
            target
        };
        Ok(AnyStore::Sqlite(SqliteStore::open_path(path).await?))
    }

    /// Opens a consistent, read-only view of the store
    /// ([`PgStore::snapshot`], [`SqliteStore::snapshot`]).
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when no connection can be had.
    pub async fn snapshot(&self) -> Result<AnySnapshot> {
        Ok(match self {
            AnyStore::Postgres(s) => AnySnapshot::Postgres(s.snapshot().await?),
            AnyStore::Sqlite(s) => AnySnapshot::Sqlite(s.snapshot().await?),
        })
    }

    /// Returns the backend's name, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Postgres(_) => "postgres",
            AnyStore::Sqlite(_) => "sqlite",
        }
    }
}

macro_rules! delegate {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Postgres($store) => $call.await,
            AnyStore::Sqlite($store) => $call.await,
        }
    };
}

impl LogStore for AnyStore {
    async fn append_batch(&self, batch: &Batch) -> Result<()> {
        delegate!(self, s => s.append_batch(batch))
    }

    async fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        delegate!(self, s => s.node_hashes(ids))
    }

    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        delegate!(self, s => s.entries(start, end))
    }

    async fn find_by_leaf_hash(&self, hashes: &[Hash]) -> Result<Vec<(Hash, u64)>> {
        delegate!(self, s => s.find_by_leaf_hash(hashes))
    }

    async fn leaf_count(&self) -> Result<u64> {
        delegate!(self, s => s.leaf_count())
    }

    async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>> {
        delegate!(self, s => s.latest_tree_head())
    }

    async fn tree_head_at_size(&self, tree_size: u64) -> Result<Option<SignedTreeHead>> {
        delegate!(self, s => s.tree_head_at_size(tree_size))
    }

    async fn tree_heads(&self, after: Option<TreeHead>, limit: u32) -> Result<Vec<SignedTreeHead>> {
        delegate!(self, s => s.tree_heads(after, limit))
    }

    async fn leaf_tiles(&self, first_tile: u64, end_tile: u64) -> Result<Option<Vec<LeafTile>>> {
        delegate!(self, s => s.leaf_tiles(first_tile, end_tile))
    }

    async fn leaves_with_nodes(&self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        delegate!(self, s => s.leaves_with_nodes(start, end))
    }

    async fn try_lead(&self, address: &str) -> Result<Option<LeaderLease>> {
        delegate!(self, s => s.try_lead(address))
    }

    async fn leader_term(&self) -> Result<Option<LeaderTerm>> {
        delegate!(self, s => s.leader_term())
    }

    async fn find_events_by_id(&self, ids: &[String]) -> Result<Vec<StoredEventRef>> {
        delegate!(self, s => s.find_events_by_id(ids))
    }

    async fn search_events(&self, query: &EventQuery, tree_size: u64) -> Result<Vec<EventHit>> {
        delegate!(self, s => s.search_events(query, tree_size))
    }

    async fn tree_head_before(&self, timestamp_ms: u64) -> Result<Option<SignedTreeHead>> {
        delegate!(self, s => s.tree_head_before(timestamp_ms))
    }
}

/// A snapshot of either backend ([`AnyStore::snapshot`]).
#[derive(Debug)]
pub enum AnySnapshot {
    Postgres(PgSnapshot),
    Sqlite(SqliteSnapshot),
}

macro_rules! delegate_snapshot {
    ($self:ident, $snapshot:ident => $call:expr) => {
        match $self {
            AnySnapshot::Postgres($snapshot) => $call.await,
            AnySnapshot::Sqlite($snapshot) => $call.await,
        }
    };
}

impl LogSnapshot for AnySnapshot {
    async fn leaf_count(&mut self) -> Result<u64> {
        delegate_snapshot!(self, s => s.leaf_count())
    }

    async fn latest_tree_head(&mut self) -> Result<Option<SignedTreeHead>> {
        delegate_snapshot!(self, s => s.latest_tree_head())
    }

    async fn tree_heads(
        &mut self,
        after: Option<TreeHead>,
        limit: u32,
    ) -> Result<Vec<SignedTreeHead>> {
        delegate_snapshot!(self, s => s.tree_heads(after, limit))
    }

    async fn entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>> {
        delegate_snapshot!(self, s => s.entries(start, end))
    }

    async fn leaves_with_nodes(&mut self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        delegate_snapshot!(self, s => s.leaves_with_nodes(start, end))
    }

    async fn leaf_tiles(
        &mut self,
        first_tile: u64,
        end_tile: u64,
    ) -> Result<Option<Vec<LeafTile>>> {
        delegate_snapshot!(self, s => s.leaf_tiles(first_tile, end_tile))
    }
}
