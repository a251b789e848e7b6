//! One sequencer per store, and what two writers below that lock see.
//!
//! The lease of [`LogStore::try_lead`] keeps a second server off a store;
//! the storage contract also promises that two handles appending at once
//! (a writer that does not take the lease, or one that lost it) corrupt
//! nothing: one batch commits, the other fails with a documented error.

use merklog_merkle::{leaf_hash, merkle_tree_hash, Hash};
use merklog_storage::testing::{temp_sqlite, TempPostgres, TestLog};
use merklog_storage::{AnyStore, LogStore, StorageError};

// ------------------------------------------------- one sequencer per file

#[tokio::test]
async fn a_second_sequencer_on_a_sqlite_file_is_refused_until_the_first_lets_go() {
    let (path, _dir) = temp_sqlite();
    let first = AnyStore::open(path.to_str().unwrap()).await.unwrap();
    let lease = first
        .try_lead("http://first")
        .await
        .unwrap()
        .expect("a file lease is granted or refused, never None");

    // Another store on the same file, even in this process, and even named
    // by a URL rather than a path, is refused, naming the file.
    let second = AnyStore::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let err = second
        .try_lead("http://second")
        .await
        .expect_err("the file is led already");
    let text = err.to_string();
    match &err {
        StorageError::StoreLocked {
            database,
            lock_file,
            pid,
        } => {
            assert_eq!(database, &std::fs::canonicalize(&path).unwrap());
            assert_eq!(
                lock_file.file_name().unwrap(),
                "merklog.db.lock",
                "the lock file sits beside the database"
            );
            assert_eq!(*pid, Some(std::process::id()), "{text}");
        }
        other => panic!("expected StoreLocked, got {other:?}"),
    }
    assert!(
        text.contains(&format!(
            "another merklog process (pid {}) holds the SQLite store {}",
            std::process::id(),
            std::fs::canonicalize(&path).unwrap().display()
        )),
        "{text}"
    );

    // Readers are not refused, and the first keeps appending.
    let mut log = TestLog::new();
    first.append_batch(&log.next_batch(3, 10)).await.unwrap();
    assert_eq!(second.leaf_count().await.unwrap(), 3);
    assert_eq!(second.entries(0, 3).await.unwrap().len(), 3);

    // Once the first lets go, the next one leads and goes on.
    lease.release().await;
    let lease = second
        .try_lead("http://second")
        .await
        .unwrap()
        .expect("the lock is free again");
    second.append_batch(&log.next_batch(2, 10)).await.unwrap();
    assert_eq!(first.leaf_count().await.unwrap(), 5);
    // Dropping a lease (a task aborted, a process killed) frees it too.
    drop(lease);
    first
        .try_lead("http://first")
        .await
        .unwrap()
        .expect("a dropped lease frees the lock");
}

#[tokio::test]
async fn an_in_memory_sqlite_store_has_nothing_to_lock() {
    let store = AnyStore::open("sqlite::memory:").await.unwrap();
    assert!(matches!(
        store.try_lead("x").await,
        Err(StorageError::Unsupported { .. })
    ));
}

// ---------------------------------------------- two writers on one store

/// Two handles on one store race to append the next batch, with different
/// entries, `rounds` times; each round exactly one commits and the other
/// is refused as out of order, and afterwards the stored log is the
/// winners' entries, its heads recompute from them and the losers left
/// nothing behind.
async fn two_writers_race(a: &AnyStore, b: &AnyStore, rounds: u64) {
    // Both sides hold the same tree (the same deterministic key and
    // entries) up to the round, then offer different next entries.
    let mut log_a = TestLog::new();
    let mut log_b = TestLog::new();
    let mut stored: Vec<Vec<u8>> = Vec::new();
    let mut wins = [0u32; 2];
    for round in 0..rounds {
        let entry_a = format!("round {round} from a").into_bytes();
        let entry_b = format!("round {round} from b").into_bytes();
        let batch_a = log_a.batch_of(vec![entry_a.clone(), entry_a.repeat(2)]);
        let batch_b = log_b.batch_of(vec![entry_b.clone(), entry_b.repeat(2)]);
        let (got_a, got_b) = tokio::join!(a.append_batch(&batch_a), b.append_batch(&batch_b));
        let (winner, loser_error) = match (got_a, got_b) {
            (Ok(()), Err(e)) => (0, e),
            (Err(e), Ok(())) => (1, e),
            (a, b) => panic!("round {round}: exactly one writer must commit, got {a:?} and {b:?}"),
        };
        assert!(
            matches!(loser_error, StorageError::OutOfOrder { .. }),
            "round {round}: the loser must be refused as out of order, got {loser_error:?}"
        );
        wins[winner] += 1;
        let (winning, losing) = if winner == 0 {
            (vec![entry_a.clone(), entry_a.repeat(2)], &mut log_b)
        } else {
            (vec![entry_b.clone(), entry_b.repeat(2)], &mut log_a)
        };
        // The loser learns the stored tree, as a sequencer would on restart.
        *losing = TestLog::new();
        stored.extend(winning);
        losing.batch_of(stored.clone());
        losing.clock_ms = 1_700_000_000_000 + round + 1;
    }
    assert_eq!(wins[0] + wins[1], rounds as u32);

    // The tree re-verifies from what is stored, through either handle.
    for store in [a, b] {
        let n = stored.len() as u64;
        assert_eq!(store.leaf_count().await.unwrap(), n);
        let entries = store.entries(0, n).await.unwrap();
        let data: Vec<&[u8]> = entries.iter().map(|e| e.entry.as_slice()).collect();
        let expected: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
        assert_eq!(data, expected, "the winners' entries, in order");
        let leaves: Vec<Hash> = stored.iter().map(|e| leaf_hash(e)).collect();
        for e in &entries {
            assert_eq!(e.leaf_hash, leaves[e.index as usize]);
        }
        let mut after = None;
        let mut heads = 0;
        loop {
            let page = store.tree_heads(after, 100).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.head);
            for head in &page {
                let size = head.head.tree_size as usize;
                assert_eq!(
                    head.head.root_hash,
                    merkle_tree_hash(&leaves[..size]),
                    "the head of size {size} recomputes from the stored leaves"
                );
                heads += 1;
            }
        }
        assert_eq!(
            heads, rounds,
            "one head per committed batch, none from a loser"
        );
        let latest = store.latest_tree_head().await.unwrap().unwrap();
        assert_eq!(latest.head.tree_size, n);
        // Every stored node agrees with the leaves below it.
        for row in store.leaves_with_nodes(0, n).await.unwrap() {
            assert_eq!(row.nodes.len() as u32, row.index.trailing_ones());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_postgres_database_one_fails_nothing_corrupts() {
    let (url, _db) = TempPostgres::create().await;
    let a = AnyStore::open(&url).await.unwrap();
    let b = AnyStore::open(&url).await.unwrap();
    two_writers_race(&a, &b, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_sqlite_file_one_fails_nothing_corrupts() {
    let (path, _dir) = temp_sqlite();
    let a = AnyStore::open(path.to_str().unwrap()).await.unwrap();
    let b = AnyStore::open(path.to_str().unwrap()).await.unwrap();
    two_writers_race(&a, &b, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_writer_kept_waiting_past_its_busy_timeout_is_unavailable() {
    use sqlx::Connection;
    let (path, _dir) = temp_sqlite();
    let store = AnyStore::open(path.to_str().unwrap()).await.unwrap();
    let mut log = TestLog::new();
    store.append_batch(&log.next_batch(2, 10)).await.unwrap();

    // Another connection holds SQLite's write lock for longer than the
    // store's busy timeout (5 s).
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let batch = log.next_batch(3, 10);
    let err = store
        .append_batch(&batch)
        .await
        .expect_err("the write lock is held elsewhere");
    match &err {
        StorageError::Unavailable {
            source: sqlx::Error::Database(db),
        } => assert_eq!(
            db.code()
                .as_deref()
                .map(|c| c.parse::<u32>().unwrap() & 0xff),
            Some(5),
            "SQLITE_BUSY: {err}"
        ),
        other => panic!("SQLITE_BUSY must be Unavailable (retry later), got {other:?}"),
    }
    assert_eq!(store.leaf_count().await.unwrap(), 2, "nothing of it stored");

    // Once the lock is free, the same batch goes through.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.append_batch(&batch).await.unwrap();
    assert_eq!(store.leaf_count().await.unwrap(), 5);
}
