//! Test support for this crate's tests and other crates' tests (feature
//! `testing`): temporary databases, a deterministic log that builds
//! batches, and a store that runs a test's hook around each append.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use merklog_event::{ActorInput, Event, EventInput, OriginInput, ResourceInput, SealedEvent};
use merklog_merkle::{CompactRange, Hash, NodeId};
use merklog_sth::{LogSigner, SignedTreeHead, TreeHead};
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor, PgConnection};

use crate::{
    Batch, Entry, EventHit, LeafNodes, LeafTile, LogStore, NewLeaf, Result, StoredEventRef,
};

/// The server that [`TempPostgres`] creates databases on when
/// `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Returns the URL of the test server's administrative database:
/// `DATABASE_URL`, default [`DEFAULT_DATABASE_URL`].
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A fresh PostgreSQL database, dropped (with `WITH (FORCE)`, which ends its
/// connections) when the guard is dropped.
#[derive(Debug)]
pub struct TempPostgres {
    admin_url: String,
    name: String,
}

impl TempPostgres {
    /// Creates a uniquely named empty database on the server of
    /// `DATABASE_URL` (default [`DEFAULT_DATABASE_URL`]) and returns its URL
    /// and the guard that drops it.
    ///
    /// # Panics
    /// When the server cannot be reached or the database cannot be created:
    /// this is for tests.
    pub async fn create() -> (String, TempPostgres) {
        Self::try_create()
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"))
    }

    /// Like [`TempPostgres::create`], returning the error instead.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses `CREATE DATABASE`.
    pub async fn try_create() -> Result<(String, TempPostgres), sqlx::Error> {
        Self::try_create_owned_by(None).await
    }

    /// Like [`TempPostgres::create`], with the database owned by `owner`
    /// instead of the administrative user, as a database set up for merklog
    /// is (docs/STORAGE.md).
    ///
    /// # Panics
    /// As [`TempPostgres::create`].
    pub async fn create_owned_by(owner: &TempRole) -> (String, TempPostgres) {
        Self::try_create_owned_by(Some(owner.name()))
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database: {e}"))
    }

    async fn try_create_owned_by(
        owner: Option<&str>,
    ) -> Result<(String, TempPostgres), sqlx::Error> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let name = format!(
            "merklog_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::thread_rng().gen::<u32>()
        );
        let mut url =
            url::Url::parse(&admin_url).map_err(|e| sqlx::Error::Configuration(Box::new(e)))?;
        url.set_path(&name);

        let mut admin = PgConnection::connect(&admin_url).await?;
        let owner = owner.map(|o| format!(" OWNER \"{o}\"")).unwrap_or_default();
        admin
            .execute(format!("CREATE DATABASE \"{name}\"{owner}").as_str())
            .await?;
        admin.close().await?;
        Ok((url.to_string(), TempPostgres { admin_url, name }))
    }

    /// Returns the database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the URL of the server's administrative database, to run
    /// statements outside the temporary database (creating roles, say).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        // WITH (FORCE) ends the database's connections.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = admin_statement_blocking(&self.admin_url, sql) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Runs `sql` over a new connection to `admin_url` and waits for it, from
/// a thread with its own small runtime: Drop cannot await, and may run
/// inside a runtime.
fn admin_statement_blocking(
    admin_url: &str,
    sql: String,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let admin_url = admin_url.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let mut admin = PgConnection::connect(&admin_url).await?;
            admin.execute(sql.as_str()).await?;
            admin.close().await?;
            Ok::<_, sqlx::Error>(())
        })?;
        Ok(())
    })
    .join()
    .map_err(|_| "the thread running an administrative statement panicked")?
}

/// A LOGIN role for one test, dropped when the guard is dropped (so drop
/// the databases it owns first). Roles are cluster-wide: each has a unique
/// name.
#[derive(Debug)]
pub struct TempRole {
    admin_url: String,
    name: String,
    /// The role logs in with this password, so that the tests run on a
    /// server that asks for one as well as on one that trusts local users.
    password: String,
}

impl TempRole {
    /// Creates a LOGIN role named `prefix` plus a unique suffix, with a
    /// random password and the
    /// further role `attributes` (`"NOSUPERUSER CREATEROLE"`, or `""`), and
    /// grants it the roles `granted`, on the server of [`admin_url`].
    /// Create it before the databases that grant it anything, so that they
    /// are dropped first.
    ///
    /// # Panics
    /// When the role cannot be created: this is for tests.
    pub async fn create(prefix: &str, attributes: &str, granted: &[&str]) -> TempRole {
        let admin_url = admin_url();
        let name = format!(
            "{prefix}_{}_{:08x}",
            std::process::id(),
            rand::thread_rng().gen::<u32>()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
        // Hex digits only: nothing to quote in SQL or in a URL.
        let password = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let mut sql = format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}' {attributes}");
        for role in granted {
            sql.push_str(&format!("; GRANT \"{role}\" TO \"{name}\""));
        }
        admin
            .execute(sql.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create role {name}: {e}"));
        let _ = admin.close().await;
        TempRole {
            admin_url,
            name,
            password,
        }
    }

    /// Returns the role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns `db_url` with this role as the user, and its password.
    ///
    /// # Panics
    /// When `db_url` is not a URL.
    pub fn url(&self, db_url: &str) -> String {
        let mut url = url::Url::parse(db_url).expect("a database URL");
        url.set_username(&self.name).expect("a URL with a host");
        url.set_password(Some(&self.password))
            .expect("a URL with a host");
        url.to_string()
    }
}

impl Drop for TempRole {
    /// Drops the role even when the test panicked.
    fn drop(&mut self) {
        let sql = format!("DROP ROLE IF EXISTS \"{}\"", self.name);
        if let Err(e) = admin_statement_blocking(&self.admin_url, sql) {
            eprintln!("could not drop test role {}: {e}", self.name);
        }
    }
}

/// Asserts that `sql` fails on `conn` with SQLSTATE 42501 (insufficient
/// privilege), which the store reports as
/// [`StorageError::PermissionDenied`](crate::StorageError::PermissionDenied).
///
/// # Panics
/// When it does not: this is for tests.
pub async fn assert_denied(conn: &mut PgConnection, sql: &str) {
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
            crate::StorageError::from(err),
            crate::StorageError::PermissionDenied { .. }
        ),
        "{sql}"
    );
}

/// A SQLite file path in a fresh temporary directory, removed with the
/// returned guard.
///
/// # Panics
/// When no temporary directory can be created.
pub fn temp_sqlite() -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("merklog-test-")
        .tempdir()
        .expect("create a temporary directory");
    (dir.path().join("merklog.db"), dir)
}

/// A log kept in memory that hands out the next batch to store: a
/// deterministic key, entries and clock, so tests repeat exactly.
#[derive(Debug)]
pub struct TestLog {
    /// The tree of every leaf handed out so far.
    pub range: CompactRange,
    /// The log's key.
    pub signer: LogSigner,
    /// The timestamp of the next head, in milliseconds; advances by one per
    /// batch.
    pub clock_ms: u64,
}

impl Default for TestLog {
    fn default() -> Self {
        Self::new()
    }
}

impl TestLog {
    /// Returns an empty log with a key derived from a fixed seed.
    pub fn new() -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6962);
        TestLog {
            range: CompactRange::new(),
            signer: LogSigner::generate(&mut rng),
            clock_ms: 1_700_000_000_000,
        }
    }

    /// Returns the entry stored at `index` by [`TestLog::next_batch`]:
    /// `size` bytes that depend on the index only.
    pub fn entry(index: u64, size: usize) -> Vec<u8> {
        let mut bytes = format!("entry {index}:").into_bytes();
        bytes.resize(size.max(bytes.len()), (index % 251) as u8);
        bytes
    }

    /// Returns the batch of the next `count` leaves, of `entry_size` bytes
    /// each ([`TestLog::entry`]), and advances the in-memory tree.
    pub fn next_batch(&mut self, count: u64, entry_size: usize) -> Batch {
        let first = self.range.size();
        let entries = (first..first + count)
            .map(|i| Self::entry(i, entry_size))
            .collect();
        self.batch_of(entries)
    }

    /// Returns the batch that appends `leaves` (event leaves from
    /// [`NewLeaf::event`] among them), and advances the tree.
    pub fn batch_of_leaves(&mut self, leaves: Vec<NewLeaf>) -> Batch {
        self.clock_ms += 1;
        let signer = &self.signer;
        Batch::grow_leaves(
            &mut self.range,
            leaves,
            self.clock_ms,
            self.clock_ms,
            |head| signer.sign(head),
        )
    }

    /// Returns the batch that appends `entries`, and advances the tree.
    pub fn batch_of(&mut self, entries: Vec<Vec<u8>>) -> Batch {
        self.clock_ms += 1;
        let signer = &self.signer;
        Batch::grow(
            &mut self.range,
            entries,
            self.clock_ms,
            self.clock_ms,
            |head| signer.sign(head),
        )
    }
}

/// Returns event number `i` of a deterministic set with its salt: event id
/// `ev-{i:06}`, and every optional field present on some events and absent
/// on others, so that each search filter selects a different subset.
/// Occurrence times repeat every 300 events (ties broken by index) and do
/// not follow `i`; actions include `db_x.read` and `dbxx.read`, which a
/// prefix `db_` must tell apart.
///
/// # Panics
/// Never for any `i` (the events are valid by construction).
pub fn sample_event(i: u64) -> SealedEvent {
    const ACTORS: [&str; 3] = ["alice", "bob", "carol"];
    const ACTIONS: [&str; 6] = [
        "auth.login",
        "auth.logout",
        "db.query",
        "db_x.read",
        "dbxx.read",
        "db",
    ];
    const OUTCOMES: [&str; 4] = ["success", "failure", "denied", "unknown"];
    let pick = |n: u64| n as usize;
    let second = (i * 37) % 300;
    let occurred_at = if i.is_multiple_of(10) {
        // The same instant written with an offset.
        format!("2026-12-03T11:{:02}:{:02}+01:00", second / 60, second % 60)
    } else if i.is_multiple_of(3) {
        format!("2026-12-03T10:{:02}:{:02}.5Z", second / 60, second % 60)
    } else {
        format!("2026-12-03T10:{:02}:{:02}Z", second / 60, second % 60)
    };
    let attributes = (!i.is_multiple_of(7)).then(|| {
        serde_json::json!({
            "n": i % 5,
            "tags": if i.is_multiple_of(2) { vec!["red", "blue"] } else { vec!["blue"] },
            "nested": { "even": i.is_multiple_of(2), "k": format!("v{}", i % 3) },
        })
    });
    let input = EventInput {
        event_id: Some(format!("ev-{i:06}")),
        occurred_at,
        actor: ActorInput {
            id: ACTORS[pick(i % 3)].to_owned(),
            kind: if i.is_multiple_of(4) {
                "service"
            } else {
                "user"
            }
            .to_owned(),
        },
        action: ACTIONS[pick(i * 5 % 6)].to_owned(),
        resource: (i % 3 != 2).then(|| ResourceInput {
            kind: if i.is_multiple_of(2) {
                "table"
            } else {
                "bucket"
            }
            .to_owned(),
            id: format!("r{}", i % 4),
        }),
        outcome: OUTCOMES[pick(i / 2 % 4)].to_owned(),
        origin: i.is_multiple_of(2).then(|| OriginInput {
            service: Some(
                if (i / 2).is_multiple_of(2) {
                    "api"
                } else {
                    "batch"
                }
                .to_owned(),
            ),
            host: i.is_multiple_of(6).then(|| "host-1.example".to_owned()),
            source_ip: Some(
                if i.is_multiple_of(4) {
                    "192.0.2.7"
                } else {
                    "2001:db8::7"
                }
                .to_owned(),
            ),
        }),
        request_id: (!i.is_multiple_of(5)).then(|| format!("req-{}", i % 7)),
        trace_id: i.is_multiple_of(3).then(|| format!("trace-{}", i % 4)),
        attributes,
    };
    let event = Event::from_input(input, "tester", || unreachable!("the input has an id"))
        .unwrap_or_else(|e| panic!("sample event {i}: {e}"));
    let mut salt = [0x5a; merklog_event::SALT_LEN];
    salt[..8].copy_from_slice(&i.to_le_bytes());
    SealedEvent { salt, event }
}

/// What a test does around each append of a [`HookedStore`]: delay it, hold
/// it, or fail it before or after the write.
pub trait AppendHook: Send + Sync {
    /// Runs before `batch` is written; an error fails the append with
    /// nothing written.
    fn before(&self, batch: &Batch) -> impl std::future::Future<Output = Result<()>> + Send {
        let _ = batch;
        async { Ok(()) }
    }

    /// Runs after `batch` was written; an error fails the append although
    /// the batch is stored, as a connection lost during COMMIT would.
    fn after(&self, batch: &Batch) -> Result<()> {
        let _ = batch;
        Ok(())
    }

    /// Runs before each read of node hashes (a proof's, the node cache's);
    /// a panic here is a store read that panicked.
    fn before_node_read(&self, ids: &[NodeId]) {
        let _ = ids;
    }

    /// Whether the store passes leader election through to its inner store
    /// (false: the store does not support it, so each test runs one
    /// instance on it).
    fn leader_election(&self) -> bool {
        false
    }
}

/// A store that reads and writes through `inner`, running `hook` around each
/// append and before each node read. It passes leader election through only
/// when [`AppendHook::leader_election`] says so.
pub struct HookedStore<S, H> {
    pub inner: S,
    pub hook: H,
}

impl<S: LogStore, H: AppendHook> LogStore for HookedStore<S, H> {
    async fn append_batch(&self, batch: &Batch) -> Result<()> {
        self.hook.before(batch).await?;
        self.inner.append_batch(batch).await?;
        self.hook.after(batch)
    }
    async fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>> {
        self.hook.before_node_read(ids);
        self.inner.node_hashes(ids).await
    }
    async fn try_lead(&self, address: &str) -> Result<Option<crate::LeaderLease>> {
        if !self.hook.leader_election() {
            return Err(crate::unsupported_leadership());
        }
        self.inner.try_lead(address).await
    }
    async fn leader_term(&self) -> Result<Option<crate::LeaderTerm>> {
        if !self.hook.leader_election() {
            return Err(crate::unsupported_leadership());
        }
        self.inner.leader_term().await
    }
    async fn entries(&self, start: u64, end: u64) -> Result<Vec<Entry>> {
        self.inner.entries(start, end).await
    }
    async fn find_by_leaf_hash(&self, hashes: &[Hash]) -> Result<Vec<(Hash, u64)>> {
        self.inner.find_by_leaf_hash(hashes).await
    }
    async fn leaf_count(&self) -> Result<u64> {
        self.inner.leaf_count().await
    }
    async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>> {
        self.inner.latest_tree_head().await
    }
    async fn tree_head_at_size(&self, size: u64) -> Result<Option<SignedTreeHead>> {
        self.inner.tree_head_at_size(size).await
    }
    async fn tree_heads(&self, after: Option<TreeHead>, limit: u32) -> Result<Vec<SignedTreeHead>> {
        self.inner.tree_heads(after, limit).await
    }
    async fn leaf_tiles(&self, first_tile: u64, end_tile: u64) -> Result<Option<Vec<LeafTile>>> {
        self.inner.leaf_tiles(first_tile, end_tile).await
    }
    async fn leaves_with_nodes(&self, start: u64, end: u64) -> Result<Vec<LeafNodes>> {
        self.inner.leaves_with_nodes(start, end).await
    }
    async fn find_events_by_id(&self, ids: &[String]) -> Result<Vec<StoredEventRef>> {
        self.inner.find_events_by_id(ids).await
    }
    async fn search_events(
        &self,
        query: &merklog_event::EventQuery,
        tree_size: u64,
    ) -> Result<Vec<EventHit>> {
        self.inner.search_events(query, tree_size).await
    }

    async fn tree_head_before(&self, timestamp_ms: u64) -> Result<Option<SignedTreeHead>> {
        self.inner.tree_head_before(timestamp_ms).await
    }
}
