//! The append-only storage of a merklog log: the [`LogStore`] contract and
//! its two backends, PostgreSQL ([`PgStore`]) and an embedded SQLite file
//! ([`SqliteStore`]), chosen at run time through [`AnyStore::open`].
//!
//! The layout (see `docs/STORAGE.md`) keeps one row per leaf. The row of leaf
//! `i` also carries the hashes of the `i.trailing_ones()` complete subtrees
//! that leaf `i` finishes, so an append writes exactly one row per leaf and a
//! proof is one indexed read of at most O(log n) rows. Tree heads are kept,
//! every one ever published, in a second table.
//!
//! The database itself enforces that the log only grows: triggers created by
//! the migrations in `migrations/` reject UPDATE, DELETE and TRUNCATE, leaves
//! out of order and tree heads that go back or change a root, each with its
//! own code (mapped in one place, [`StorageError`]).
//!
//! This crate does not hash the tree (it stores the nodes the caller's
//! [`merklog_merkle::CompactRange`] computed), does not sign heads, does not
//! check a head's root against its leaves (the `verify-store` tool does, from
//! [`LogStore::leaves_with_nodes`]) and does not sequence concurrent
//! writers: one process appends.
//!
//! Audit events (issue 21) are leaves like any other; beside each event
//! leaf the store keeps a row of the `events` table, the fields searches
//! filter on, written in the leaf's transaction
//! ([`LogStore::search_events`], [`LogStore::find_events_by_id`]). The
//! event model, its leaf form and the reference semantics of a search
//! ([`merklog_event::EventQuery::matches`]) come from `merklog-event`;
//! `serde_json` carries the attributes (canonical JSON text on SQLite,
//! `jsonb` on PostgreSQL) and the containment filter.
//!
//! All SQL is built with `sqlx::query` and binds, not the compile-time
//! `query!` macros: those would need a live database (or a committed `.sqlx/`
//! cache) for each of two dialects at build time.

mod any;
mod batch;
mod error;
mod events;
mod leader;
mod postgres;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;

use merklog_merkle::{Hash, NodeId};
use merklog_sth::{SignedTreeHead, TreeHead};

pub use any::AnySnapshot;
pub use any::AnyStore;
pub use batch::{Batch, Entry, LeafNodes, NewLeaf, TILE_LEAVES};
pub use error::{Result, StorageError};
pub use events::{EventHit, StoredEventRef};
pub use leader::{LeaderLease, LeaderTerm, LEADER_LOCK_KEY};
/// The query of [`LogStore::search_events`], re-exported so that
/// implementors of the trait need not name `merklog-event`.
pub use merklog_event::EventQuery;
pub use postgres::{PgSnapshot, PgStore, DEFAULT_SEARCH_TIMEOUT};
pub use sqlite::{SqliteSnapshot, SqliteStore, DEFAULT_SQLITE_PATH};

/// The largest leaf index or tree size the schema can hold (`BIGINT`).
pub const MAX_TREE_SIZE: u64 = i64::MAX as u64;

/// A leaf tile: its index `t` and the leaf hashes of leaves
/// `[16·t, 16·t + 16)` (docs/STORAGE.md, "Leaf tiles").
pub type LeafTile = (u64, Vec<Hash>);

/// The storage of one log.
///
/// Readers may call every method concurrently with each other and with one
/// appender. The store assumes one appender, the holder of
/// [`LogStore::try_lead`]'s lease (the advisory lock on PostgreSQL, the lock
/// file `<database>.lock` beside a SQLite file): a second server is refused
/// before it appends. Below that lock, two handles appending at once are
/// not corrupted (the primary key and the triggers reject whichever writes
/// out of order; SQLite's write lock makes the other wait, then fail with
/// [`StorageError::OutOfOrder`], or [`StorageError::Unavailable`] when it
/// waited past its busy timeout) but one of them fails.
///
/// Every future is `Send`, so a store can be shared (it is cheap to clone)
/// across the tasks of a multi-thread runtime.
pub trait LogStore: Send + Sync {
    /// Appends `batch`: its leaves (each row with the nodes it completes),
    /// the `events` row of each event leaf ([`NewLeaf::event`]) and its
    /// signed tree head, in one transaction.
    ///
    /// When this returns `Ok`, the whole batch is durable (committed with
    /// synchronous commit / `synchronous=FULL`, so it survives a crash of the
    /// process, the database or the machine) and visible to every later read.
    /// When it returns `Err`, nothing of the batch is stored, except that a
    /// lost connection during COMMIT ([`StorageError::Unavailable`]) leaves
    /// the outcome unknown: read [`LogStore::leaf_count`] before retrying.
    ///
    /// # Errors
    /// [`StorageError::InvalidBatch`] when the batch is malformed (checked
    /// before any write); [`StorageError::OutOfOrder`] when `first_index` is
    /// not the number of stored leaves; [`StorageError::DuplicateLeaf`] when
    /// a leaf hash is already stored; [`StorageError::DuplicateEvent`] when
    /// an event id is already stored; [`StorageError::TreeHeadRejected`] when
    /// the head is smaller than the latest, has another root at the same size,
    /// or repeats a stored (size, timestamp); [`StorageError::Unavailable`].
    fn append_batch(&self, batch: &Batch) -> impl Future<Output = Result<()>> + Send;

    /// Returns the hashes of `ids`, in the same order, with one query.
    ///
    /// # Errors
    /// [`StorageError::NodeMissing`] for the first id whose subtree is not
    /// complete in the stored tree; [`StorageError::Corrupt`] when a stored
    /// value has the wrong length.
    fn node_hashes(&self, ids: &[NodeId]) -> impl Future<Output = Result<Vec<Hash>>> + Send;

    /// Returns the stored leaves with indices in `[start, end)`, in index
    /// order; fewer (possibly none) where the range passes the last leaf.
    /// The caller bounds the range: all of it is read at once.
    fn entries(&self, start: u64, end: u64) -> impl Future<Output = Result<Vec<Entry>>> + Send;

    /// Returns `(leaf_hash, index)` for each of `hashes` that is stored, in
    /// no particular order, with one query (per 1,000 hashes on SQLite).
    fn find_by_leaf_hash(
        &self,
        hashes: &[Hash],
    ) -> impl Future<Output = Result<Vec<(Hash, u64)>>> + Send;

    /// Returns the number of stored leaves.
    fn leaf_count(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Returns the latest signed tree head: the largest size, and of those
    /// the latest timestamp; `None` before the first append.
    fn latest_tree_head(&self) -> impl Future<Output = Result<Option<SignedTreeHead>>> + Send;

    /// Returns the latest signed tree head whose size is exactly `tree_size`.
    fn tree_head_at_size(
        &self,
        tree_size: u64,
    ) -> impl Future<Output = Result<Option<SignedTreeHead>>> + Send;

    /// Returns up to `limit` signed heads that come after `after` in
    /// (tree size, timestamp) order, from the first when `after` is `None`:
    /// page through every head ever published by passing the last one back.
    fn tree_heads(
        &self,
        after: Option<TreeHead>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SignedTreeHead>>> + Send;

    /// Returns the leaf tiles `[first_tile, end_tile)` the store keeps, in
    /// order: tile `t` is the leaf hashes of leaves `[16·t, 16·t + 16)`,
    /// from which proofs take the nodes of levels 0–3 (docs/STORAGE.md,
    /// "Leaf tiles"); `None` for a store that keeps no tiles. For
    /// rechecking them against the leaves.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] when a tile does not hold 16 hashes.
    fn leaf_tiles(
        &self,
        first_tile: u64,
        end_tile: u64,
    ) -> impl Future<Output = Result<Option<Vec<LeafTile>>>> + Send {
        let _ = (first_tile, end_tile);
        async { Ok(None) }
    }

    /// Returns the leaf hashes and stored node hashes of leaves
    /// `[start, end)`, in index order, for rechecking every stored node.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] when a row's `nodes` does not hold exactly
    /// `index.trailing_ones()` hashes.
    fn leaves_with_nodes(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<LeafNodes>>> + Send;

    /// Tries to become the one instance that sequences this log, recording
    /// `address` as where clients reach it; `None` while another holds the
    /// lead. Only PostgreSQL supports several instances; on a SQLite file
    /// the lease is an exclusive lock on `<database>.lock`, and another
    /// holder is an error, not `None` (one process serves a SQLite log).
    /// The lease lasts until it is released or dropped.
    ///
    /// # Errors
    /// [`StorageError::Unsupported`] on a backend without leader election
    /// (an in-memory SQLite database); [`StorageError::StoreLocked`] when
    /// another process or store holds a SQLite file's lock;
    /// [`StorageError::Unavailable`] when the database cannot be reached;
    /// [`StorageError::ForeignLeaderLock`] when a login that is not a member
    /// of `merklog_writer` holds the lock, which keeps every instance from
    /// leading until an administrator ends its session.
    fn try_lead(&self, address: &str) -> impl Future<Output = Result<Option<LeaderLease>>> + Send {
        let _ = address;
        async { Err(unsupported_leadership()) }
    }

    /// Returns the latest leader term, if an instance ever led this log.
    ///
    /// # Errors
    /// [`StorageError::Unsupported`] and [`StorageError::Unavailable`] as
    /// [`LogStore::try_lead`].
    fn leader_term(&self) -> impl Future<Output = Result<Option<LeaderTerm>>> + Send {
        async { Err(unsupported_leadership()) }
    }

    /// Returns the stored events whose event id is among `ids`, each with
    /// its leaf's index and hash, in no particular order (ids not stored
    /// are left out), with one query (per 1,000 ids on SQLite). What a
    /// sequencer reads after [`StorageError::DuplicateEvent`] to answer
    /// with the original leaf.
    fn find_events_by_id(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<StoredEventRef>>> + Send;

    /// Returns one page of the stored events that match `query` among the
    /// leaves `[0, tree_size)` (the tree of the head the caller serves):
    /// newest first by (time, index) descending, where time is the
    /// event's `occurred_at` or the leaf's integration time
    /// (`integrated_ms · 10⁶` ns) as `query.time_field` says; only hits
    /// strictly after `query.cursor` in that order; at most
    /// `query.page_size`. A hit matches exactly when
    /// [`EventQuery::matches`] says so for the event in its entry (the
    /// reference the conformance suite checks both backends against).
    /// A page shorter than `page_size` is the last one.
    ///
    /// The query is not validated here (the service does, with its window
    /// limit): an empty window or `page_size` 0 gives no hits. Its cost is
    /// bounded by the window: PostgreSQL reads the hot filters' indexes in
    /// result order and stops after a page, cancelling the statement after
    /// [`PgStore::with_search_timeout`] ([`DEFAULT_SEARCH_TIMEOUT`]);
    /// SQLite, with an attribute filter, re-checks the candidates of the
    /// window page by page until a page is full (docs/STORAGE.md,
    /// "Events").
    ///
    /// # Errors
    /// [`StorageError::QueryTimeout`] when PostgreSQL cancels the search
    /// at its time limit; [`StorageError::Corrupt`] when a stored hash or
    /// value has the wrong shape; [`StorageError::Unavailable`].
    fn search_events(
        &self,
        query: &EventQuery,
        tree_size: u64,
    ) -> impl Future<Output = Result<Vec<EventHit>>> + Send;
    /// Returns the latest signed head dated strictly before `timestamp_ms`,
    /// in (tree size, timestamp) order; `None` when every head is dated at
    /// or after it. The start of a time window: with the time order the
    /// triggers keep (heads' timestamps do not decrease as the tree grows),
    /// every leaf below its size was integrated at or before its timestamp.
    ///
    /// The backends answer with one indexed look-up; this default pages
    /// through [`LogStore::tree_heads`], for stores that keep few heads.
    fn tree_head_before(
        &self,
        timestamp_ms: u64,
    ) -> impl Future<Output = Result<Option<SignedTreeHead>>> + Send {
        async move {
            let mut found = None;
            let mut after = None;
            loop {
                let page = self.tree_heads(after, 1000).await?;
                let Some(last) = page.last() else {
                    return Ok(found);
                };
                after = Some(last.head);
                for h in page {
                    if h.head.timestamp_ms >= timestamp_ms {
                        return Ok(found);
                    }
                    found = Some(h);
                }
            }
        }
    }
}

/// One consistent, read-only view of a log's store: every read sees the
/// store as it was at one moment, whatever is appended meanwhile. What a
/// checker of the whole store reads through (`verify-store`), so that
/// leaves, tiles and heads it reads at different times cannot seem to
/// disagree: with reads from the live store, the leaf count read first
/// trails the head read after it while appends run.
///
/// The methods mean what the [`LogStore`] methods of the same names mean,
/// at the snapshot's moment. A snapshot holds one database connection until
/// it is dropped; it never blocks the appender.
pub trait LogSnapshot: Send {
    /// As [`LogStore::leaf_count`].
    fn leaf_count(&mut self) -> impl Future<Output = Result<u64>> + Send;

    /// As [`LogStore::latest_tree_head`].
    fn latest_tree_head(&mut self) -> impl Future<Output = Result<Option<SignedTreeHead>>> + Send;

    /// As [`LogStore::tree_heads`].
    fn tree_heads(
        &mut self,
        after: Option<TreeHead>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SignedTreeHead>>> + Send;

    /// As [`LogStore::entries`].
    fn entries(&mut self, start: u64, end: u64) -> impl Future<Output = Result<Vec<Entry>>> + Send;

    /// As [`LogStore::leaves_with_nodes`].
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] as there.
    fn leaves_with_nodes(
        &mut self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<LeafNodes>>> + Send;

    /// As [`LogStore::leaf_tiles`]: `None` for a store that keeps no tiles.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] as there.
    fn leaf_tiles(
        &mut self,
        first_tile: u64,
        end_tile: u64,
    ) -> impl Future<Output = Result<Option<Vec<LeafTile>>>> + Send {
        let _ = (first_tile, end_tile);
        async { Ok(None) }
    }
}

pub(crate) fn unsupported_leadership() -> StorageError {
    StorageError::Unsupported {
        what: "several instances on one log (leader election needs PostgreSQL)".into(),
    }
}
