//! The one conformance suite, run on both backends: each test below runs
//! once on a fresh PostgreSQL database (server from `DATABASE_URL`) and once
//! on a fresh SQLite file.
//!
//! Besides the [`LogStore`] contract it attempts every statement the
//! append-only triggers forbid directly in SQL, and checks the rejection, its
//! message and (PostgreSQL) its SQLSTATE.

use std::collections::HashMap;
use std::net::IpAddr;

use merklog_event::{ActionMatch, Cursor, EventQuery, Outcome, SealedEvent, TimeField};
use merklog_merkle::{
    consistency_proof_nodes, inclusion_proof_nodes, merkle_tree_hash, verify_consistency,
    verify_inclusion, CompactRange, Hash, NodeId,
};
use merklog_sth::{SignedTreeHead, TreeHead};
use merklog_storage::testing::{sample_event, TestLog};
use merklog_storage::{AnyStore, Batch, EventHit, LogStore, NewLeaf, StorageError};

/// Generates, for each suite function, one `#[tokio::test]` per backend.
macro_rules! backend_suite {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (url, _db) = merklog_storage::testing::TempPostgres::create().await;
                    let store = merklog_storage::AnyStore::open(&url).await.expect("open postgres");
                    super::$name(&store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (path, _dir) = merklog_storage::testing::temp_sqlite();
                    let store = merklog_storage::AnyStore::open(path.to_str().unwrap())
                        .await
                        .expect("open sqlite");
                    super::$name(&store).await;
                }
            )*
        }
    };
}

backend_suite!(
    empty_store,
    append_and_read_back,
    proofs_verify_against_reference,
    tree_heads_are_all_kept,
    malformed_batches_write_nothing,
    wrong_first_index_is_out_of_order,
    duplicate_leaf_hash_is_rejected,
    tree_head_rules_through_the_api,
    failure_half_way_leaves_nothing,
    forbidden_updates_deletes_truncates,
    forbidden_leaf_inserts,
    forbidden_tree_heads,
    hundred_thousand_leaves_match_the_core,
    readers_never_see_a_head_before_its_leaves,
    events_are_stored_with_their_leaves,
    a_duplicate_event_refuses_the_whole_batch,
    events_are_append_only,
    every_filter_matches_the_reference,
    pages_neither_repeat_nor_skip,
    pages_while_batches_land,
    time_order_through_the_api,
    time_order_in_sql,
    heads_by_time,
);

// ---------------------------------------------------------------- helpers

/// Appends `sizes.len()` batches of those sizes and returns the test log.
async fn grow(store: &AnyStore, log: &mut TestLog, sizes: &[u64]) {
    for &n in sizes {
        store.append_batch(&log.next_batch(n, 40)).await.unwrap();
    }
}

fn leaf_hashes(n: u64) -> Vec<Hash> {
    (0..n)
        .map(|i| NewLeaf::new(TestLog::entry(i, 40)).leaf_hash())
        .collect()
}

/// Runs one SQL statement directly, with optional binds of byte strings and
/// integers, and returns the database's answer unmapped.
async fn raw(store: &AnyStore, sql: &str) -> Result<(), sqlx::Error> {
    match store {
        AnyStore::Postgres(s) => sqlx::raw_sql(sql).execute(s.pool()).await.map(|_| ()),
        AnyStore::Sqlite(s) => sqlx::raw_sql(sql).execute(s.pool()).await.map(|_| ()),
    }
}

/// Inserts one leaf row directly in SQL, with a `nodes` column of the right
/// length so that only the triggers can object.
/// It is integrated after every head [`TestLog`] dates, so that only the
/// order triggers can object ([`raw_leaf_at`] chooses the time).
async fn raw_leaf(store: &AnyStore, idx: i64, tag: &str) -> Result<(), sqlx::Error> {
    raw_leaf_at(store, idx, tag, 1_800_000_000_000).await
}

/// Inserts one leaf row directly in SQL, integrated at `ms`.
async fn raw_leaf_at(store: &AnyStore, idx: i64, tag: &str, ms: i64) -> Result<(), sqlx::Error> {
    let hash = merklog_merkle::leaf_hash(tag.as_bytes());
    let nodes = vec![0u8; 32 * (idx as u64).trailing_ones() as usize];
    let sql_pg = "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) VALUES ($1, $2, $3, $5, $4)";
    let sql_lite =
        "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) VALUES (?1, ?2, ?3, ?5, ?4)";
    match store {
        AnyStore::Postgres(s) => sqlx::query(sql_pg)
            .bind(idx)
            .bind(hash.as_bytes().as_slice())
            .bind(tag.as_bytes())
            .bind(nodes)
            .bind(ms)
            .execute(s.pool())
            .await
            .map(|_| ()),
        AnyStore::Sqlite(s) => sqlx::query(sql_lite)
            .bind(idx)
            .bind(hash.as_bytes().as_slice())
            .bind(tag.as_bytes())
            .bind(nodes)
            .bind(ms)
            .execute(s.pool())
            .await
            .map(|_| ()),
    }
}

/// Inserts one tree head row directly in SQL.
async fn raw_head(store: &AnyStore, size: i64, ts: i64, root: Hash) -> Result<(), sqlx::Error> {
    let sql_pg = "INSERT INTO tree_heads (tree_size, timestamp_ms, root_hash, signature) VALUES ($1, $2, $3, '\\x01')";
    let sql_lite = "INSERT INTO tree_heads (tree_size, timestamp_ms, root_hash, signature) VALUES (?, ?, ?, x'01')";
    match store {
        AnyStore::Postgres(s) => sqlx::query(sql_pg)
            .bind(size)
            .bind(ts)
            .bind(root.as_bytes().as_slice())
            .execute(s.pool())
            .await
            .map(|_| ()),
        AnyStore::Sqlite(s) => sqlx::query(sql_lite)
            .bind(size)
            .bind(ts)
            .bind(root.as_bytes().as_slice())
            .execute(s.pool())
            .await
            .map(|_| ()),
    }
}

/// Asserts that `result` was rejected by trigger `code` (`ML001`…): on
/// PostgreSQL with that SQLSTATE, on SQLite with the `merklog MLnnn:`
/// prefix; that the message contains `needle`; and returns the mapped
/// error.
fn rejected(
    store: &AnyStore,
    result: Result<(), sqlx::Error>,
    code: &str,
    needle: &str,
) -> StorageError {
    let err = result.expect_err("the statement must be rejected");
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("expected a database error, got {err}"));
    let message = db.message().to_owned();
    match store {
        AnyStore::Postgres(_) => {
            assert_eq!(db.code().as_deref(), Some(code), "SQLSTATE of {message:?}");
            assert!(message.starts_with("merklog: "), "{message:?}");
        }
        AnyStore::Sqlite(_) => {
            assert!(
                message.starts_with(&format!("merklog {code}: ")),
                "{message:?}"
            );
        }
    }
    assert!(
        message.contains(needle),
        "{message:?} should mention {needle:?}"
    );
    StorageError::from(err)
}

async fn leaf_count(store: &AnyStore) -> u64 {
    store.leaf_count().await.unwrap()
}

// ---------------------------------------------------------------- the suite

async fn empty_store(store: &AnyStore) {
    assert_eq!(leaf_count(store).await, 0);
    assert_eq!(store.latest_tree_head().await.unwrap(), None);
    assert_eq!(store.tree_head_at_size(0).await.unwrap(), None);
    assert!(store.entries(0, 10).await.unwrap().is_empty());
    assert!(store.leaves_with_nodes(0, 10).await.unwrap().is_empty());
    assert!(store.tree_heads(None, 10).await.unwrap().is_empty());
    assert!(store
        .find_by_leaf_hash(&[Hash([1; 32])])
        .await
        .unwrap()
        .is_empty());
    assert!(store.find_by_leaf_hash(&[]).await.unwrap().is_empty());
    assert!(store.node_hashes(&[]).await.unwrap().is_empty());
    assert!(matches!(
        store.node_hashes(&[NodeId::leaf(0)]).await,
        Err(StorageError::NodeMissing { id }) if id == NodeId::leaf(0)
    ));
    // The empty tree's head, as a new log publishes it.
    let mut log = TestLog::new();
    let head = log.batch_of(Vec::new());
    assert_eq!(head.tree_head.head.root_hash, merklog_merkle::empty_root());
    store.append_batch(&head).await.unwrap();
    assert_eq!(
        store.latest_tree_head().await.unwrap(),
        Some(head.tree_head)
    );
}

async fn append_and_read_back(store: &AnyStore) {
    let mut log = TestLog::new();
    let sizes = [1, 2, 5, 17, 100, 1, 30];
    let total: u64 = sizes.iter().sum();
    let mut batches = Vec::new();
    for &n in &sizes {
        let b = log.next_batch(n, 40);
        store.append_batch(&b).await.unwrap();
        batches.push(b);
    }
    assert_eq!(leaf_count(store).await, total);

    let entries = store.entries(0, total + 10).await.unwrap();
    assert_eq!(entries.len() as u64, total);
    let mut i = 0u64;
    for b in &batches {
        for leaf in &b.leaves {
            let e = &entries[i as usize];
            assert_eq!(e.index, i);
            assert_eq!(e.entry, leaf.entry());
            assert_eq!(e.leaf_hash, leaf.leaf_hash());
            assert_eq!(e.integrated_ms, b.integrated_ms);
            i += 1;
        }
    }
    let middle = store.entries(10, 13).await.unwrap();
    assert_eq!(
        middle.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![10, 11, 12]
    );
    assert!(store.entries(13, 10).await.unwrap().is_empty());
    assert!(store
        .entries(u64::MAX - 1, u64::MAX)
        .await
        .unwrap()
        .is_empty());

    // Dedupe of a whole batch in one call: some stored, some not.
    let hashes = leaf_hashes(total);
    let mut asked: Vec<Hash> = hashes.iter().step_by(7).copied().collect();
    asked.push(Hash([0xee; 32]));
    let mut found = store.find_by_leaf_hash(&asked).await.unwrap();
    found.sort_by_key(|(_, i)| *i);
    let expected: Vec<(Hash, u64)> = (0..total)
        .step_by(7)
        .map(|i| (hashes[i as usize], i))
        .collect();
    assert_eq!(found, expected);

    // Every stored row carries exactly the nodes its leaf completes.
    let rows = store.leaves_with_nodes(0, total).await.unwrap();
    let mut range = CompactRange::new();
    for (row, h) in rows.iter().zip(&hashes) {
        let mut nodes = Vec::new();
        range.append(*h, |id, hash| {
            if id.level > 0 {
                nodes.push(hash);
            }
        });
        assert_eq!(row.leaf_hash, *h);
        assert_eq!(row.nodes, nodes, "nodes of leaf {}", row.index);
    }
    assert_eq!(
        store
            .latest_tree_head()
            .await
            .unwrap()
            .unwrap()
            .head
            .root_hash,
        range.root()
    );
}

async fn proofs_verify_against_reference(store: &AnyStore) {
    let mut log = TestLog::new();
    let sizes = [1, 1, 3, 8, 13, 64, 100, 7];
    grow(store, &mut log, &sizes).await;
    let total: u64 = sizes.iter().sum();
    let hashes = leaf_hashes(total);
    let root_at = |n: u64| merkle_tree_hash(&hashes[..n as usize]);

    // Every head size, and some sizes between heads (their nodes are stored
    // too: every complete subtree is).
    let mut sizes_to_check: Vec<u64> = vec![1, 2, 3, 5, 13, 31, 64, 100, 150, total];
    sizes_to_check.sort_unstable();
    for &n in &sizes_to_check {
        let root = root_at(n);
        for m in (0..n).step_by(((n / 17) as usize).max(1)).chain([n - 1]) {
            let plan = inclusion_proof_nodes(m, n).unwrap();
            let stored = store.node_hashes(plan.ids()).await.unwrap();
            let proof = plan.assemble(&stored).unwrap();
            verify_inclusion(m, n, &hashes[m as usize], &proof, &root)
                .unwrap_or_else(|e| panic!("inclusion of {m} in {n}: {e}"));
        }
        for &m in sizes_to_check.iter().filter(|&&m| m <= n) {
            let plan = consistency_proof_nodes(m, n).unwrap();
            let stored = store.node_hashes(plan.ids()).await.unwrap();
            let proof = plan.assemble(&stored).unwrap();
            verify_consistency(m, n, &root_at(m), &root, &proof)
                .unwrap_or_else(|e| panic!("consistency {m} -> {n}: {e}"));
        }
    }

    // The right edge read back rebuilds the root of the latest head.
    let edge = store
        .node_hashes(&CompactRange::node_ids(total))
        .await
        .unwrap();
    let range = CompactRange::from_parts(total, edge).unwrap();
    assert_eq!(range.root(), root_at(total));

    // Nodes of subtrees not complete yet are missing, not invented.
    let missing = NodeId::new(3, total / 8 + 1);
    assert!(matches!(
        store.node_hashes(&[NodeId::leaf(0), missing]).await,
        Err(StorageError::NodeMissing { id }) if id == missing
    ));
    assert!(matches!(
        store.node_hashes(&[NodeId::new(70, 0)]).await,
        Err(StorageError::NodeMissing { .. })
    ));
    // The same node twice, and order kept.
    let ids = [NodeId::new(2, 1), NodeId::leaf(3), NodeId::new(2, 1)];
    let got = store.node_hashes(&ids).await.unwrap();
    assert_eq!(got[0], got[2]);
    assert_eq!(got[1], hashes[3]);
    assert_eq!(got[0], merkle_tree_hash(&hashes[4..8]));
}

async fn tree_heads_are_all_kept(store: &AnyStore) {
    let mut log = TestLog::new();
    let mut heads: Vec<SignedTreeHead> = Vec::new();
    for n in [3, 0, 4, 0, 0, 9] {
        let b = log.next_batch(n, 40);
        store.append_batch(&b).await.unwrap();
        heads.push(b.tree_head);
    }
    let latest = store.latest_tree_head().await.unwrap().unwrap();
    assert_eq!(latest, heads[5]);
    log.signer.public_key().verify(&latest).unwrap();
    // At size 7 there are three heads (republished with later timestamps):
    // the latest of them is returned.
    assert_eq!(
        store.tree_head_at_size(7).await.unwrap(),
        Some(heads[4].clone())
    );
    assert_eq!(
        store.tree_head_at_size(3).await.unwrap(),
        Some(heads[1].clone())
    );
    assert_eq!(store.tree_head_at_size(5).await.unwrap(), None);
    assert_eq!(store.tree_head_at_size(u64::MAX).await.unwrap(), None);

    // Paging through every head in (size, timestamp) order.
    let mut walked = Vec::new();
    let mut after: Option<TreeHead> = None;
    loop {
        let page = store.tree_heads(after, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|h| h.head);
        walked.extend(page);
    }
    assert_eq!(walked, heads);
}

async fn malformed_batches_write_nothing(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[5]).await;
    let good = log.next_batch(6, 40);

    let mut wrong_size = good.clone();
    wrong_size.tree_head.head.tree_size += 1;
    let mut missing_node = good.clone();
    missing_node.nodes.pop();
    let mut foreign_node = good.clone();
    foreign_node
        .nodes
        .push((NodeId::new(1, 0), Hash::default()));
    for bad in [wrong_size, missing_node, foreign_node] {
        assert!(
            matches!(
                store.append_batch(&bad).await,
                Err(StorageError::InvalidBatch { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(leaf_count(store).await, 5);
    store.append_batch(&good).await.unwrap();
    assert_eq!(leaf_count(store).await, 11);
}

async fn wrong_first_index_is_out_of_order(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[4]).await;
    let before = store.latest_tree_head().await.unwrap();

    // A gap: the batch claims to start at 5 while 4 leaves are stored.
    let mut gap_log = TestLog::new();
    gap_log.next_batch(5, 40);
    let gap = gap_log.next_batch(3, 40);
    assert!(matches!(
        store.append_batch(&gap).await,
        Err(StorageError::OutOfOrder { .. })
    ));

    // A rewrite: starting at 2 with new entries (their own leaf hashes).
    let mut range = CompactRange::new();
    range.extend(&leaf_hashes(2), |_, _| {});
    let rewrite = Batch::grow(
        &mut range,
        vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()],
        1,
        log.clock_ms + 1,
        |h| log.signer.sign(h),
    );
    assert!(matches!(
        store.append_batch(&rewrite).await,
        Err(StorageError::OutOfOrder { .. })
    ));

    assert_eq!(leaf_count(store).await, 4);
    assert_eq!(store.latest_tree_head().await.unwrap(), before);
    grow(store, &mut log, &[3]).await;
    assert_eq!(leaf_count(store).await, 7);
}

async fn duplicate_leaf_hash_is_rejected(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[3]).await;
    // Entry 1 again, at index 3.
    let again = log.batch_of(vec![b"fresh".to_vec(), TestLog::entry(1, 40)]);
    assert!(matches!(
        store.append_batch(&again).await,
        Err(StorageError::DuplicateLeaf { .. })
    ));
    assert_eq!(leaf_count(store).await, 3);
}

async fn tree_head_rules_through_the_api(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[4, 4]).await;
    let signer = log.signer.clone();
    let empty = |size: u64, ts: u64, root: Hash| Batch {
        first_index: size,
        leaves: Vec::new(),
        nodes: Vec::new(),
        tree_head: signer.sign(TreeHead {
            tree_size: size,
            timestamp_ms: ts,
            root_hash: root,
        }),
        integrated_ms: ts,
    };
    let root4 = merkle_tree_hash(&leaf_hashes(4));
    let root8 = merkle_tree_hash(&leaf_hashes(8));
    // Smaller than the latest, even with its true root.
    assert!(matches!(
        store.append_batch(&empty(4, log.clock_ms + 5, root4)).await,
        Err(StorageError::TreeHeadRejected { .. })
    ));
    // Same size, another root.
    assert!(matches!(
        store.append_batch(&empty(8, log.clock_ms + 5, root4)).await,
        Err(StorageError::TreeHeadRejected { .. })
    ));
    // Same size and timestamp as a stored head.
    assert!(matches!(
        store.append_batch(&empty(8, log.clock_ms, root8)).await,
        Err(StorageError::TreeHeadRejected { .. })
    ));
    // More leaves than stored.
    assert!(matches!(
        store.append_batch(&empty(9, log.clock_ms + 5, root8)).await,
        Err(StorageError::TreeHeadRejected { .. })
    ));
    // Republishing the same root later is fine.
    store
        .append_batch(&empty(8, log.clock_ms + 5, root8))
        .await
        .unwrap();
    assert_eq!(
        store
            .latest_tree_head()
            .await
            .unwrap()
            .unwrap()
            .head
            .timestamp_ms,
        log.clock_ms + 5
    );
}

async fn failure_half_way_leaves_nothing(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[10]).await;
    let before = store.latest_tree_head().await.unwrap();
    // A failure injected into the last statement of the transaction, after
    // every leaf of the batch was inserted: a trigger refusing the head of
    // size 110.
    let inject = match store {
        AnyStore::Postgres(_) => {
            "CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'injected failure'; END; $$; \
             CREATE TRIGGER inject_failure BEFORE INSERT ON tree_heads FOR EACH ROW \
             WHEN (NEW.tree_size = 110) EXECUTE FUNCTION inject_failure();"
        }
        AnyStore::Sqlite(_) => {
            "CREATE TRIGGER inject_failure BEFORE INSERT ON tree_heads \
             WHEN NEW.tree_size = 110 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        }
    };
    raw(store, inject).await.unwrap();
    let batch = log.next_batch(100, 40);
    let err = store.append_batch(&batch).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(leaf_count(store).await, 10);
    assert!(store.entries(10, 200).await.unwrap().is_empty());
    assert_eq!(store.latest_tree_head().await.unwrap(), before);

    // Half-way through the leaves themselves: the 51st
    // leaf repeats an earlier entry.
    let mut log2 = TestLog::new();
    log2.next_batch(10, 40);
    let mut entries: Vec<Vec<u8>> = (10..110).map(|i| TestLog::entry(i, 40)).collect();
    entries[50] = TestLog::entry(3, 40);
    let dup = log2.batch_of(entries);
    assert!(matches!(
        store.append_batch(&dup).await,
        Err(StorageError::DuplicateLeaf { .. })
    ));
    assert_eq!(leaf_count(store).await, 10);
    assert_eq!(store.latest_tree_head().await.unwrap(), before);
}

async fn forbidden_updates_deletes_truncates(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[4]).await;
    let statements: &[(&str, &str)] = &[
        (
            "UPDATE leaves SET entry = entry WHERE idx = 1",
            "UPDATE on leaves",
        ),
        ("UPDATE leaves SET integrated_ms = 0", "UPDATE on leaves"),
        ("DELETE FROM leaves WHERE idx = 3", "DELETE on leaves"),
        ("DELETE FROM leaves", "DELETE on leaves"),
        (
            "UPDATE tree_heads SET signature = signature",
            "UPDATE on tree_heads",
        ),
        (
            "DELETE FROM tree_heads WHERE tree_size = 4",
            "DELETE on tree_heads",
        ),
        ("DELETE FROM tree_heads", "DELETE on tree_heads"),
    ];
    for (sql, needle) in statements {
        let err = rejected(store, raw(store, sql).await, "ML001", needle);
        assert!(
            matches!(err, StorageError::AppendOnly { .. }),
            "{sql}: {err}"
        );
    }
    if let AnyStore::Postgres(_) = store {
        // Row-level messages name the row.
        rejected(
            store,
            raw(store, "DELETE FROM leaves WHERE idx = 2").await,
            "ML001",
            "idx=2",
        );
        for table in ["leaves", "tree_heads"] {
            let err = rejected(
                store,
                raw(store, &format!("TRUNCATE {table}")).await,
                "ML001",
                &format!("TRUNCATE on {table}"),
            );
            assert!(matches!(err, StorageError::AppendOnly { .. }));
        }
        // TRUNCATE of both at once, and with CASCADE, too.
        rejected(
            store,
            raw(store, "TRUNCATE leaves, tree_heads CASCADE").await,
            "ML001",
            "TRUNCATE",
        );
    }
    assert_eq!(leaf_count(store).await, 4);
    assert_eq!(store.entries(0, 4).await.unwrap().len(), 4);
    assert_eq!(store.tree_heads(None, 10).await.unwrap().len(), 1);
}

async fn forbidden_leaf_inserts(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[4]).await;
    // A gap: index 5 while 4 leaves are stored.
    let err = rejected(
        store,
        raw_leaf(store, 5, "gap").await,
        "ML002",
        "next index",
    );
    assert!(matches!(err, StorageError::OutOfOrder { .. }));
    // Reordering: leaf 6 before leaf 5 before leaf 4.
    rejected(
        store,
        raw_leaf(store, 6, "six").await,
        "ML002",
        "next index",
    );
    // A second leaf at a stored index.
    let second = raw_leaf(store, 2, "second").await;
    match store {
        // The primary key answers first on PostgreSQL.
        AnyStore::Postgres(_) => {
            let e = second.unwrap_err();
            assert_eq!(
                e.as_database_error().unwrap().code().as_deref(),
                Some("23505")
            );
            assert!(matches!(
                StorageError::from(e),
                StorageError::OutOfOrder { .. }
            ));
        }
        AnyStore::Sqlite(_) => {
            let err = rejected(store, second, "ML002", "next index");
            assert!(matches!(err, StorageError::OutOfOrder { .. }));
        }
    }
    if let AnyStore::Postgres(_) = store {
        // A multi-row statement with a hole, and one that starts late.
        let holey = "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) \
                     SELECT i, sha256(('h' || i)::bytea), '\\x00', 0, \
                            decode(repeat('00', 32 * (CASE i WHEN 5 THEN 1 WHEN 7 THEN 3 ELSE 0 END)), 'hex') \
                     FROM unnest(ARRAY[4, 5, 7]::bigint[]) AS i";
        rejected(store, raw(store, holey).await, "ML002", "contiguous");
        let late = "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) \
                    SELECT i, sha256(('h' || i)::bytea), '\\x00', 0, \
                           decode(repeat('00', 32 * (CASE i WHEN 5 THEN 1 ELSE 0 END)), 'hex') \
                    FROM unnest(ARRAY[5, 6]::bigint[]) AS i";
        rejected(
            store,
            raw(store, late).await,
            "ML002",
            "the next index is 4",
        );
    }
    // The next index is accepted, straight in SQL too.
    raw_leaf(store, 4, "four").await.unwrap();
    assert_eq!(leaf_count(store).await, 5);
}

async fn forbidden_tree_heads(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[4, 4]).await;
    let root8 = log.range.root();
    let ts = log.clock_ms as i64;
    // Smaller than the latest head.
    let err = rejected(
        store,
        raw_head(store, 4, ts + 1, merkle_tree_hash(&leaf_hashes(4))).await,
        "ML003",
        "latest tree head",
    );
    assert!(matches!(err, StorageError::TreeHeadRejected { .. }));
    // Same size, different root.
    rejected(
        store,
        raw_head(store, 8, ts + 1, Hash([9; 32])).await,
        "ML003",
        "root",
    );
    // More leaves than stored.
    rejected(
        store,
        raw_head(store, 9, ts + 1, Hash([9; 32])).await,
        "ML003",
        "leaves",
    );
    // The same root at the same size, later: accepted.
    raw_head(store, 8, ts + 1, root8).await.unwrap();
    assert_eq!(store.tree_heads(None, 10).await.unwrap().len(), 3);
}

async fn hundred_thousand_leaves_match_the_core(store: &AnyStore) {
    const TOTAL: u64 = 100_000;
    const BATCH: u64 = 1_000;
    let mut log = TestLog::new();
    // Every node the core reports, to compare with what is stored.
    let mut expected: HashMap<NodeId, Hash> = HashMap::new();
    let mut roots = Vec::new();
    for _ in 0..TOTAL / BATCH {
        let batch = log.next_batch(BATCH, 16);
        for (i, leaf) in batch.leaves.iter().enumerate() {
            expected.insert(NodeId::leaf(batch.first_index + i as u64), leaf.leaf_hash());
        }
        expected.extend(batch.nodes.iter().copied());
        roots.push(batch.tree_head.head.root_hash);
        store.append_batch(&batch).await.unwrap();
    }
    assert_eq!(leaf_count(store).await, TOTAL);
    assert_eq!(
        expected.len() as u64,
        2 * TOTAL - u64::from(TOTAL.count_ones())
    );

    // Every stored node, page by page.
    let mut seen = 0usize;
    for start in (0..TOTAL).step_by(20_000) {
        for row in store
            .leaves_with_nodes(start, start + 20_000)
            .await
            .unwrap()
        {
            assert_eq!(expected[&NodeId::leaf(row.index)], row.leaf_hash);
            for (k, hash) in row.nodes.iter().enumerate() {
                let level = k as u8 + 1;
                let id = NodeId::new(level, row.index >> level);
                assert_eq!(expected[&id], *hash, "node {id:?}");
            }
            seen += 1 + row.nodes.len();
        }
    }
    assert_eq!(seen, expected.len());

    // Every head's root from its stored right edge, and the latest head.
    for (k, root) in roots.iter().enumerate() {
        let n = (k as u64 + 1) * BATCH;
        let edge = store.node_hashes(&CompactRange::node_ids(n)).await.unwrap();
        assert_eq!(CompactRange::from_parts(n, edge).unwrap().root(), *root);
    }
    let latest = store.latest_tree_head().await.unwrap().unwrap();
    assert_eq!(latest.head.root_hash, log.range.root());
    assert_eq!(latest.head.tree_size, TOTAL);

    // Spot checks: proofs between many (m, n), verified against the core's
    // roots.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let leaf = |i: u64| expected[&NodeId::leaf(i)];
    for _ in 0..200 {
        let k = next(roots.len() as u64);
        let n = (k + 1) * BATCH;
        let m = next(n);
        let plan = inclusion_proof_nodes(m, n).unwrap();
        let proof = plan
            .assemble(&store.node_hashes(plan.ids()).await.unwrap())
            .unwrap();
        verify_inclusion(m, n, &leaf(m), &proof, &roots[k as usize]).unwrap();

        let j = next(k + 1);
        let m = (j + 1) * BATCH;
        let plan = consistency_proof_nodes(m, n).unwrap();
        let proof = plan
            .assemble(&store.node_hashes(plan.ids()).await.unwrap())
            .unwrap();
        verify_consistency(m, n, &roots[j as usize], &roots[k as usize], &proof).unwrap();
    }
}

async fn readers_never_see_a_head_before_its_leaves(store: &AnyStore) {
    // Readers on other tasks (the runtime has two worker threads) check,
    // while batches land, that whatever head they see is backed by stored
    // leaves and nodes: the batch's transaction makes both visible at once.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (store, done) = (store.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut checked = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(head) = store.latest_tree_head().await.unwrap() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let n = head.head.tree_size;
                assert!(store.leaf_count().await.unwrap() >= n);
                let edge = store.node_hashes(&CompactRange::node_ids(n)).await.unwrap();
                let root = CompactRange::from_parts(n, edge).unwrap().root();
                assert_eq!(root, head.head.root_hash, "head of size {n}");
                checked += 1;
            }
            checked
        }));
    }
    let mut log = TestLog::new();
    for k in 0..40u64 {
        store
            .append_batch(&log.next_batch(1 + k % 7 * 13, 40))
            .await
            .unwrap();
        tokio::task::yield_now().await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
}

// ---------------------------------------------------------------- events

/// An event leaf as the reference sees it: the event, its leaf index and
/// integration time.
#[derive(Clone)]
struct StoredEvent {
    sealed: SealedEvent,
    index: u64,
    integrated_ms: u64,
}

/// Appends sample events `ids` in one batch, each fourth followed by an
/// opaque leaf, and returns them as stored.
async fn append_events(
    store: &AnyStore,
    log: &mut TestLog,
    ids: std::ops::Range<u64>,
) -> Vec<StoredEvent> {
    let (batch, events) = event_batch(log, ids);
    store.append_batch(&batch).await.unwrap();
    events
}

/// The batch of [`append_events`], not stored.
fn event_batch(log: &mut TestLog, ids: std::ops::Range<u64>) -> (Batch, Vec<StoredEvent>) {
    let first = log.range.size();
    let mut leaves = Vec::new();
    let mut placed = Vec::new();
    for i in ids {
        let sealed = sample_event(i);
        placed.push((first + leaves.len() as u64, sealed.clone()));
        leaves.push(NewLeaf::event(&sealed));
        if i % 4 == 3 {
            leaves.push(NewLeaf::new(format!("opaque after event {i}").into_bytes()));
        }
    }
    let batch = log.batch_of_leaves(leaves);
    let events = placed
        .into_iter()
        .map(|(index, sealed)| StoredEvent {
            sealed,
            index,
            integrated_ms: batch.integrated_ms,
        })
        .collect();
    (batch, events)
}

/// Appends sample events 0..400 in batches of varied sizes.
async fn many_events(store: &AnyStore, log: &mut TestLog) -> Vec<StoredEvent> {
    let mut stored = Vec::new();
    let mut next = 0;
    for size in [1, 37, 100, 62, 150, 50] {
        stored.extend(append_events(store, log, next..next + size).await);
        next += size;
    }
    stored
}

/// A query for every event of every time, `page_size` at a time.
fn everything(time_field: TimeField, page_size: u32) -> EventQuery {
    EventQuery {
        page_size,
        ..EventQuery::window(time_field, 0, i64::MAX)
    }
}

fn json_object(text: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(text).unwrap()
}

/// The naive reference: the indices of the events among `stored` below
/// `tree_size` that `query` matches, newest first, at most a page.
fn expected(query: &EventQuery, stored: &[StoredEvent], tree_size: u64) -> Vec<u64> {
    let mut hits: Vec<&StoredEvent> = stored
        .iter()
        .filter(|s| s.index < tree_size)
        .filter(|s| query.matches(&s.sealed.event, s.index, s.integrated_ms))
        .collect();
    hits.sort_by_key(|s| {
        let key = query.sort_key(&s.sealed.event, s.index, s.integrated_ms);
        std::cmp::Reverse((key.time_nanos, key.index))
    });
    hits.truncate(query.page_size as usize);
    hits.into_iter().map(|s| s.index).collect()
}

/// Searches, checks every hit against its stored event and returns the
/// indices of the hits.
async fn search(
    store: &AnyStore,
    query: &EventQuery,
    tree_size: u64,
    stored: &[StoredEvent],
) -> Vec<u64> {
    let hits: Vec<EventHit> = store.search_events(query, tree_size).await.unwrap();
    for hit in &hits {
        let s = stored
            .iter()
            .find(|s| s.index == hit.index)
            .unwrap_or_else(|| panic!("hit {} is no stored event", hit.index));
        assert_eq!(hit.entry, s.sealed.entry(), "entry of {}", hit.index);
        assert_eq!(hit.leaf_hash, s.sealed.leaf_hash(), "hash of {}", hit.index);
        assert_eq!(hit.integrated_ms, s.integrated_ms);
    }
    hits.iter().map(|h| h.index).collect()
}

/// The cursor after the hit at `index`.
fn cursor_of(query: &EventQuery, stored: &[StoredEvent], index: u64) -> Cursor {
    let s = stored.iter().find(|s| s.index == index).unwrap();
    query.sort_key(&s.sealed.event, s.index, s.integrated_ms)
}

/// Counts the `events` rows in SQL.
async fn event_rows(store: &AnyStore) -> i64 {
    let sql = "SELECT count(*) FROM events";
    match store {
        AnyStore::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        AnyStore::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
    }
}

async fn events_are_stored_with_their_leaves(store: &AnyStore) {
    let mut log = TestLog::new();
    let stored = append_events(store, &mut log, 0..10).await;
    // Leaves 0..10 are events with opaque leaves after 3 and 7.
    assert_eq!(leaf_count(store).await, 12);
    assert_eq!(event_rows(store).await, 10);
    let mut ids: Vec<String> = stored
        .iter()
        .map(|s| s.sealed.event.event_id.clone())
        .collect();
    ids.push("ev-never".to_owned());
    let mut found = store.find_events_by_id(&ids).await.unwrap();
    found.sort_by_key(|f| f.index);
    assert_eq!(found.len(), 10);
    for (f, s) in found.iter().zip(&stored) {
        assert_eq!(f.event_id, s.sealed.event.event_id);
        assert_eq!(f.index, s.index);
        assert_eq!(f.leaf_hash, s.sealed.leaf_hash());
    }
    assert!(store.find_events_by_id(&[]).await.unwrap().is_empty());
    let entries = store.entries(0, 12).await.unwrap();
    for s in &stored {
        assert_eq!(entries[s.index as usize].entry, s.sealed.entry());
    }

    // A failure after the leaves and the events rows were inserted (the
    // head's insert) leaves neither.
    let inject = match store {
        AnyStore::Postgres(_) => {
            "CREATE FUNCTION inject_failure() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'injected failure'; END; $$; \
             CREATE TRIGGER inject_failure BEFORE INSERT ON tree_heads FOR EACH ROW \
             WHEN (NEW.tree_size > 12) EXECUTE FUNCTION inject_failure();"
        }
        AnyStore::Sqlite(_) => {
            "CREATE TRIGGER inject_failure BEFORE INSERT ON tree_heads \
             WHEN NEW.tree_size > 12 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"
        }
    };
    raw(store, inject).await.unwrap();
    let (batch, lost) = event_batch(&mut log, 10..30);
    let err = store.append_batch(&batch).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(leaf_count(store).await, 12);
    assert_eq!(event_rows(store).await, 10);
    let lost_ids: Vec<String> = lost
        .iter()
        .map(|s| s.sealed.event.event_id.clone())
        .collect();
    assert!(store.find_events_by_id(&lost_ids).await.unwrap().is_empty());
    let all = everything(TimeField::OccurredAt, 1000);
    assert_eq!(
        search(store, &all, 100, &stored).await,
        expected(&all, &stored, 100)
    );
}

async fn a_duplicate_event_refuses_the_whole_batch(store: &AnyStore) {
    let mut log = TestLog::new();
    let stored = append_events(store, &mut log, 0..5).await;
    let before = store.latest_tree_head().await.unwrap();

    // Event 3 again with another salt (so another leaf hash), after a new
    // event, in the middle of the batch.
    let mut again = sample_event(3);
    again.salt = [7; merklog_event::SALT_LEN];
    let fresh = sample_event(100);
    let batch = log.batch_of_leaves(vec![
        NewLeaf::event(&fresh),
        NewLeaf::new(b"opaque".to_vec()),
        NewLeaf::event(&again),
        NewLeaf::event(&sample_event(101)),
    ]);
    match store.append_batch(&batch).await {
        Err(StorageError::DuplicateEvent { event_id }) => assert_eq!(event_id, "ev-000003"),
        other => panic!("expected DuplicateEvent, got {other:?}"),
    }
    assert_eq!(leaf_count(store).await, 6);
    assert_eq!(store.latest_tree_head().await.unwrap(), before);
    assert_eq!(event_rows(store).await, 5);
    assert!(store
        .find_events_by_id(&["ev-000100".to_owned()])
        .await
        .unwrap()
        .is_empty());
    // The original is what a look-up finds.
    let found = store
        .find_events_by_id(&["ev-000003".to_owned()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].index, stored[3].index);
    assert_eq!(found[0].leaf_hash, stored[3].sealed.leaf_hash());

    // The same event twice in one batch is a malformed batch.
    let mut log2 = TestLog::new();
    let _ = event_batch(&mut log2, 0..5);
    let twice = log2.batch_of_leaves(vec![NewLeaf::event(&fresh), NewLeaf::event(&fresh)]);
    assert!(matches!(
        store.append_batch(&twice).await,
        Err(StorageError::InvalidBatch { .. })
    ));
    // Exactly the same leaf again is a duplicate leaf first.
    let mut log3 = TestLog::new();
    let _ = event_batch(&mut log3, 0..5);
    let same = log3.batch_of_leaves(vec![NewLeaf::event(&sample_event(2))]);
    assert!(matches!(
        store.append_batch(&same).await,
        Err(StorageError::DuplicateLeaf { .. })
    ));
    assert_eq!(leaf_count(store).await, 6);

    // The batch without the duplicate goes in.
    let mut log4 = TestLog::new();
    let _ = event_batch(&mut log4, 0..5);
    let good = log4.batch_of_leaves(vec![NewLeaf::event(&fresh)]);
    store.append_batch(&good).await.unwrap();
    assert_eq!(event_rows(store).await, 6);
}

async fn events_are_append_only(store: &AnyStore) {
    let mut log = TestLog::new();
    append_events(store, &mut log, 0..4).await;
    for (sql, needle) in [
        (
            "UPDATE events SET action = 'auth.login'",
            "UPDATE on events",
        ),
        (
            "UPDATE events SET occurred_ns = 0 WHERE idx = 1",
            "UPDATE on events",
        ),
        ("DELETE FROM events WHERE idx = 2", "DELETE on events"),
        ("DELETE FROM events", "DELETE on events"),
    ] {
        let err = rejected(store, raw(store, sql).await, "ML001", needle);
        assert!(
            matches!(err, StorageError::AppendOnly { .. }),
            "{sql}: {err}"
        );
    }
    if let AnyStore::Postgres(_) = store {
        rejected(
            store,
            raw(store, "DELETE FROM events WHERE idx = 2").await,
            "ML001",
            "idx=2",
        );
        rejected(
            store,
            raw(store, "TRUNCATE events").await,
            "ML001",
            "TRUNCATE on events",
        );
        // With the leaves, and with CASCADE.
        rejected(
            store,
            raw(store, "TRUNCATE leaves, events CASCADE").await,
            "ML001",
            "TRUNCATE",
        );
    }
    assert_eq!(event_rows(store).await, 4);
}

async fn every_filter_matches_the_reference(store: &AnyStore) {
    let mut log = TestLog::new();
    let first_ms = log.clock_ms + 1;
    let stored = many_events(store, &mut log).await;
    let size = leaf_count(store).await;
    let ip: IpAddr = "2001:db8::7".parse().unwrap();
    let at = |text: &str| merklog_event::OccurredAt::parse(text).unwrap().unix_nanos();

    type Edit = Box<dyn Fn(&mut EventQuery)>;
    let filters: Vec<(&str, Edit)> = vec![
        ("nothing", Box::new(|_| {})),
        ("actor_id", Box::new(|q| q.actor_id = Some("bob".into()))),
        (
            "actor_kind",
            Box::new(|q| q.actor_kind = Some("service".into())),
        ),
        (
            "action exact",
            Box::new(|q| q.action = Some(ActionMatch::Exact("db.query".into()))),
        ),
        (
            "action prefix db_",
            Box::new(|q| q.action = Some(ActionMatch::Prefix("db_".into()))),
        ),
        (
            "action prefix db",
            Box::new(|q| q.action = Some(ActionMatch::Prefix("db".into()))),
        ),
        (
            "action prefix auth.log",
            Box::new(|q| q.action = Some(ActionMatch::Prefix("auth.log".into()))),
        ),
        (
            "action prefix empty",
            Box::new(|q| q.action = Some(ActionMatch::Prefix(String::new()))),
        ),
        (
            "action prefix %",
            Box::new(|q| q.action = Some(ActionMatch::Prefix("%".into()))),
        ),
        (
            "resource_kind",
            Box::new(|q| q.resource_kind = Some("table".into())),
        ),
        (
            "resource_id",
            Box::new(|q| q.resource_id = Some("r1".into())),
        ),
        (
            "resource",
            Box::new(|q| {
                q.resource_kind = Some("bucket".into());
                q.resource_id = Some("r3".into());
            }),
        ),
        ("outcome", Box::new(|q| q.outcome = Some(Outcome::Denied))),
        (
            "origin_service",
            Box::new(|q| q.origin_service = Some("batch".into())),
        ),
        (
            "origin_host",
            Box::new(|q| q.origin_host = Some("host-1.example".into())),
        ),
        ("source_ip", Box::new(move |q| q.source_ip = Some(ip))),
        (
            "request_id",
            Box::new(|q| q.request_id = Some("req-3".into())),
        ),
        (
            "trace_id",
            Box::new(|q| q.trace_id = Some("trace-0".into())),
        ),
        (
            "event_id",
            Box::new(|q| q.event_id = Some("ev-000042".into())),
        ),
        (
            "attributes scalar",
            Box::new(|q| q.attributes_contain = Some(json_object(r#"{"n": 3}"#))),
        ),
        (
            "attributes array",
            Box::new(|q| q.attributes_contain = Some(json_object(r#"{"tags": ["red"]}"#))),
        ),
        (
            "attributes nested",
            Box::new(|q| {
                q.attributes_contain = Some(json_object(r#"{"nested": {"k": "v1"}, "n": 1}"#))
            }),
        ),
        (
            "attributes empty",
            Box::new(|q| q.attributes_contain = Some(json_object("{}"))),
        ),
        (
            "occurred window",
            Box::new(move |q| {
                q.since_nanos = at("2026-12-03T10:01:00Z");
                q.until_nanos = at("2026-12-03T10:03:00.5Z");
            }),
        ),
        (
            "integrated window",
            Box::new(move |q| {
                q.time_field = TimeField::IntegratedAt;
                // From the middle of batch 2's millisecond (so from batch
                // 3) to the start of batch 5's.
                q.since_nanos = (first_ms as i64 + 1) * 1_000_000 + 500_000;
                q.until_nanos = (first_ms as i64 + 4) * 1_000_000;
            }),
        ),
        (
            "combination",
            Box::new(move |q| {
                q.actor_id = Some("alice".into());
                q.action = Some(ActionMatch::Prefix("auth.".into()));
                q.outcome = Some(Outcome::Success);
                q.attributes_contain = Some(json_object(r#"{"tags": ["blue"]}"#));
                q.since_nanos = at("2026-12-03T10:00:30Z");
            }),
        ),
        (
            "combination, integrated",
            Box::new(move |q| {
                q.time_field = TimeField::IntegratedAt;
                q.resource_kind = Some("table".into());
                q.source_ip = Some(ip);
                q.attributes_contain = Some(json_object(r#"{"nested": {"even": true}}"#));
            }),
        ),
    ];
    for (name, edit) in &filters {
        let mut selected = 0;
        for time_field in [TimeField::OccurredAt, TimeField::IntegratedAt] {
            for (page_size, tree_size) in [(1000, size), (5, size), (1000, 200), (3, 7)] {
                let mut q = everything(time_field, page_size);
                edit(&mut q);
                let want = expected(&q, &stored, tree_size);
                let got = search(store, &q, tree_size, &stored).await;
                assert_eq!(
                    got, want,
                    "{name}, {time_field:?}, page {page_size}, tree size {tree_size}"
                );
                if page_size == 1000 && tree_size == size {
                    selected += want.len();
                }
            }
        }
        assert!(
            selected > 0 || *name == "action prefix %",
            "{name} selects nothing: a useless case"
        );
    }
    // Nothing below the tree size, an empty window, an empty page.
    let q = everything(TimeField::OccurredAt, 10);
    assert!(search(store, &q, 0, &stored).await.is_empty());
    let mut empty = q.clone();
    empty.until_nanos = empty.since_nanos;
    assert!(search(store, &empty, size, &stored).await.is_empty());
    let mut none = q.clone();
    none.page_size = 0;
    assert!(search(store, &none, size, &stored).await.is_empty());
}

/// Walks every page of `query` over `tree_size` and returns the hits in
/// order.
async fn walk(
    store: &AnyStore,
    query: &EventQuery,
    tree_size: u64,
    stored: &[StoredEvent],
) -> Vec<u64> {
    let mut q = query.clone();
    let mut all = Vec::new();
    loop {
        let page = search(store, &q, tree_size, stored).await;
        assert_eq!(
            page,
            expected(&q, stored, tree_size),
            "page after {:?}",
            q.cursor
        );
        let full = page.len() == q.page_size as usize;
        all.extend(&page);
        match page.last() {
            Some(&last) if full => q.cursor = Some(cursor_of(&q, stored, last)),
            _ => return all,
        }
    }
}

async fn pages_neither_repeat_nor_skip(store: &AnyStore) {
    let mut log = TestLog::new();
    let stored = many_events(store, &mut log).await;
    let size = leaf_count(store).await;
    for time_field in [TimeField::OccurredAt, TimeField::IntegratedAt] {
        for (page_size, attributes) in [(7, None), (1, None), (13, Some(r#"{"n": 3}"#))] {
            let mut q = everything(time_field, page_size);
            q.attributes_contain = attributes.map(json_object);
            let mut all = q.clone();
            all.page_size = u32::MAX;
            let want = expected(&all, &stored, size);
            assert_eq!(walk(store, &q, size, &stored).await, want, "{time_field:?}");
        }
        // Over a smaller tree, with a filter.
        let mut q = everything(time_field, 4);
        q.actor_id = Some("carol".into());
        let mut all = q.clone();
        all.page_size = u32::MAX;
        assert_eq!(
            walk(store, &q, 150, &stored).await,
            expected(&all, &stored, 150)
        );
    }
    // SQLite re-reads candidates when an attribute filter leaves a read
    // short of a page: a large page of a sparse filter.
    let mut q = everything(TimeField::OccurredAt, 60);
    q.attributes_contain = Some(json_object(r#"{"n": 3, "nested": {"k": "v0"}}"#));
    let mut all = q.clone();
    all.page_size = u32::MAX;
    let want = expected(&all, &stored, size);
    assert!(want.len() > 20, "{}", want.len());
    assert_eq!(walk(store, &q, size, &stored).await, want);
}

async fn pages_while_batches_land(store: &AnyStore) {
    let mut log = TestLog::new();
    let mut stored = many_events(store, &mut log).await;
    let mut next_event = 400;
    for time_field in [TimeField::OccurredAt, TimeField::IntegratedAt] {
        // Paging a fixed tree size (the head the first page was served
        // from) while batches land gives exactly that tree's hits.
        let size = leaf_count(store).await;
        let before = stored.clone();
        let mut q = everything(time_field, 9);
        let mut all = q.clone();
        all.page_size = u32::MAX;
        let want = expected(&all, &before, size);
        let mut got: Vec<u64> = Vec::new();
        loop {
            let page = search(store, &q, size, &stored).await;
            got.extend(&page);
            stored.extend(append_events(store, &mut log, next_event..next_event + 10).await);
            next_event += 10;
            match page.last() {
                Some(&last) if page.len() == 9 => q.cursor = Some(cursor_of(&q, &stored, last)),
                _ => break,
            }
        }
        assert_eq!(got, want, "{time_field:?}");

        // Following the newest tree at each page: still no repeats, in
        // strictly descending order, and nothing of the first tree skipped.
        let mut q = everything(time_field, 25);
        let mut got: Vec<u64> = Vec::new();
        let mut keys: Vec<(i64, u64)> = Vec::new();
        loop {
            let size = leaf_count(store).await;
            let page = search(store, &q, size, &stored).await;
            for &index in &page {
                let key = cursor_of(&q, &stored, index);
                keys.push((key.time_nanos, key.index));
            }
            got.extend(&page);
            stored.extend(append_events(store, &mut log, next_event..next_event + 10).await);
            next_event += 10;
            match page.last() {
                Some(&last) if page.len() == 25 => q.cursor = Some(cursor_of(&q, &stored, last)),
                _ => break,
            }
        }
        assert!(keys.windows(2).all(|w| w[0] > w[1]), "{time_field:?}");
        for index in &want {
            assert!(got.contains(index), "{time_field:?}: {index} skipped");
        }
    }
}

// ------------------------------------------------------------ time order

/// A batch of `entries` whose leaves are integrated at `integrated_ms` and
/// whose head is dated `timestamp_ms`.
fn timed_batch(log: &mut TestLog, n: u64, integrated_ms: u64, timestamp_ms: u64) -> Batch {
    let first = log.range.size();
    let entries = (first..first + n).map(|i| TestLog::entry(i, 40)).collect();
    let signer = log.signer.clone();
    Batch::grow(
        &mut log.range,
        entries,
        integrated_ms,
        timestamp_ms,
        |head| signer.sign(head),
    )
}

async fn time_order_through_the_api(store: &AnyStore) {
    let mut log = TestLog::new();
    let t = log.clock_ms;
    store
        .append_batch(&timed_batch(&mut log, 3, t + 10, t + 10))
        .await
        .unwrap();
    // Leaves integrated after the head that covers them: the head would
    // date them too early.
    let mut ahead = TestLog::new();
    ahead.range = log.range.clone();
    let err = store
        .append_batch(&timed_batch(&mut ahead, 2, t + 30, t + 20))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TimeOrder { .. }), "{err}");
    assert!(err.to_string().contains("time order violated"), "{err}");
    // Leaves integrated before the latest head.
    let mut early = TestLog::new();
    early.range = log.range.clone();
    let err = store
        .append_batch(&timed_batch(&mut early, 2, t + 5, t + 20))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TimeOrder { .. }), "{err}");
    // A head dated before the latest, over leaves integrated in time.
    let mut back = TestLog::new();
    back.range = log.range.clone();
    let err = store
        .append_batch(&timed_batch(&mut back, 2, t + 5, t + 5))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TimeOrder { .. }), "{err}");
    // Nothing of the refused batches is stored; an honest one is.
    assert_eq!(leaf_count(store).await, 3);
    store
        .append_batch(&timed_batch(&mut log, 2, t + 10, t + 12))
        .await
        .unwrap();
    store
        .append_batch(&timed_batch(&mut log, 1, t + 12, t + 12))
        .await
        .unwrap();
    assert_eq!(leaf_count(store).await, 6);
}

async fn time_order_in_sql(store: &AnyStore) {
    let mut log = TestLog::new();
    grow(store, &mut log, &[4]).await;
    let t = log.clock_ms as i64;
    let root4 = log.range.root();
    // The same tree signed again later: the latest head is dated t + 10.
    raw_head(store, 4, t + 10, root4).await.unwrap();
    // A leaf integrated before the latest head.
    let err = rejected(
        store,
        raw_leaf_at(store, 4, "early", t + 5).await,
        "ML004",
        "dated later",
    );
    assert!(matches!(err, StorageError::TimeOrder { .. }), "{err}");
    raw_leaf_at(store, 4, "four", t + 20).await.unwrap();
    // A leaf integrated before the leaf before it.
    rejected(
        store,
        raw_leaf_at(store, 5, "back", t + 15).await,
        "ML004",
        "must not go back",
    );
    // A head dated before the latest head.
    rejected(
        store,
        raw_head(store, 4, t + 9, root4).await,
        "ML004",
        "must not go back in time",
    );
    // A head dated before the last leaf it covers.
    rejected(
        store,
        raw_head(store, 5, t + 15, Hash([5; 32])).await,
        "ML004",
        "integrated later",
    );
    // A head dated after the first leaf it does not cover.
    rejected(
        store,
        raw_head(store, 4, t + 25, root4).await,
        "ML004",
        "integrated earlier",
    );
    // A head over leaves of two integration times.
    raw_leaf_at(store, 5, "five", t + 30).await.unwrap();
    rejected(
        store,
        raw_head(store, 6, t + 30, Hash([6; 32])).await,
        "ML004",
        "different times",
    );
    // One head per integration time is accepted.
    raw_head(store, 5, t + 20, Hash([5; 32])).await.unwrap();
    raw_head(store, 6, t + 30, Hash([6; 32])).await.unwrap();
    assert_eq!(store.tree_heads(None, 10).await.unwrap().len(), 4);
}

async fn heads_by_time(store: &AnyStore) {
    let mut log = TestLog::new();
    let t = log.clock_ms;
    assert!(store.tree_head_before(u64::MAX).await.unwrap().is_none());
    grow(store, &mut log, &[2, 2, 2]).await;
    // Republished later at the same size.
    let root6 = log.range.root();
    raw_head(store, 6, (t + 10) as i64, root6).await.unwrap();
    let before = |ms: u64| async move {
        store
            .tree_head_before(ms)
            .await
            .unwrap()
            .map(|h| (h.head.tree_size, h.head.timestamp_ms))
    };
    assert_eq!(before(t + 1).await, None);
    assert_eq!(before(t + 2).await, Some((2, t + 1)));
    assert_eq!(before(t + 3).await, Some((4, t + 2)));
    assert_eq!(before(t + 10).await, Some((6, t + 3)));
    assert_eq!(before(t + 11).await, Some((6, t + 10)));
    assert_eq!(before(u64::MAX).await, Some((6, t + 10)));
    // A scan in (size, timestamp) order agrees with the indexed look-up.
    for ms in [t, t + 1, t + 2, t + 3, t + 4, t + 10, t + 11] {
        let paged = scan_tree_head_before(store, ms).await;
        assert_eq!(
            paged.map(|h| h.head),
            store.tree_head_before(ms).await.unwrap().map(|h| h.head),
            "at {ms}"
        );
    }
}

/// The latest head dated before `ms`, by reading every head in order.
async fn scan_tree_head_before(store: &AnyStore, ms: u64) -> Option<SignedTreeHead> {
    let mut found = None;
    for h in store.tree_heads(None, 1000).await.unwrap() {
        if h.head.timestamp_ms >= ms {
            break;
        }
        found = Some(h);
    }
    found
}
