//! PostgreSQL's leaf tiles: the trigger adds the tile of every block of 16
//! leaves that an insert completes, whatever the batch sizes, proofs read
//! through the tiles give the hashes the RFC defines, and the migration
//! fills the tiles of a log stored before it.

use merklog_merkle::{merkle_tree_hash, Hash, NodeId};
use merklog_storage::testing::{TempPostgres, TestLog};
use merklog_storage::{AnyStore, LogStore};

#[tokio::test]
async fn tiles_follow_the_leaves_and_serve_the_lower_nodes() {
    let (url, _db) = TempPostgres::create().await;
    let store = AnyStore::open(&url).await.unwrap();
    let AnyStore::Postgres(pg) = &store else {
        panic!("a PostgreSQL URL opens a PostgreSQL store")
    };
    let mut log = TestLog::new();
    let mut hashes: Vec<Hash> = Vec::new();
    // Batches that end inside a block, exactly at its end, and span several.
    for count in [1, 14, 1, 16, 17, 3, 100, 15, 1, 33] {
        let batch = log.next_batch(count, 24);
        hashes.extend(batch.leaves.iter().map(|l| l.leaf_hash()));
        store.append_batch(&batch).await.unwrap();

        let tiles: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT tile, hashes FROM leaf_tiles ORDER BY tile")
                .fetch_all(pg.pool())
                .await
                .unwrap();
        let complete = hashes.len() / 16;
        assert_eq!(tiles.len(), complete, "after {} leaves", hashes.len());
        for (tile, bytes) in &tiles {
            let want: Vec<u8> = hashes[*tile as usize * 16..][..16]
                .iter()
                .flat_map(|h| h.0)
                .collect();
            assert_eq!(bytes, &want, "tile {tile}");
        }
    }

    // Every node of levels 0-3 that is complete, inside a tiled block or
    // not, equals MTH of its leaves.
    let n = hashes.len() as u64;
    let mut ids = Vec::new();
    for level in 0..4u8 {
        ids.extend((0..n >> level).map(|index| NodeId::new(level, index)));
    }
    let got = store.node_hashes(&ids).await.unwrap();
    for (id, hash) in ids.iter().zip(&got) {
        let first = (id.index << id.level) as usize;
        let want = merkle_tree_hash(&hashes[first..first + (1 << id.level)]);
        assert_eq!(*hash, want, "node {id:?}");
    }
}

/// The migration that adds the tiles fills them for the complete blocks of a
/// log stored before it.
#[tokio::test]
async fn the_tiles_migration_fills_a_log_stored_before_it() {
    let (url, _db) = TempPostgres::create().await;
    // The migrations before the tiles, run from a copy of their files.
    let (_, before) = merklog_storage::testing::temp_sqlite();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations/postgres");
    for file in std::fs::read_dir(&source).unwrap() {
        let file = file.unwrap();
        if file.file_name().to_string_lossy().as_ref() < "20261124000006" {
            std::fs::copy(file.path(), before.path().join(file.file_name())).unwrap();
        }
    }
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(before.path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // 40 leaves as that schema stored them (the tiles need only their leaf
    // hashes; `nodes` has the length its CHECK wants).
    sqlx::query(
        "INSERT INTO leaves (idx, leaf_hash, entry, integrated_ms, nodes) \
         SELECT g, sha256(int8send(g)), int8send(g), 0, \
                decode(repeat('00', 32 * round(log(2, ((g + 1) & -(g + 1))::numeric))::int), 'hex') \
         FROM generate_series(0, 39) AS g",
    )
    .execute(&pool)
    .await
    .unwrap();
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT leaf_hash FROM leaves ORDER BY idx")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 40);

    // Opening the store runs the tiles migration.
    let store = AnyStore::open(&url).await.unwrap();
    let tiles = store.leaf_tiles(0, u64::MAX).await.unwrap().unwrap();
    assert_eq!(tiles.len(), 2, "blocks 0 and 1 are complete");
    for (tile, stored) in &tiles {
        let want: Vec<Hash> = hashes[*tile as usize * 16..][..16]
            .iter()
            .map(|h| Hash(h.as_slice().try_into().unwrap()))
            .collect();
        assert_eq!(stored, &want, "tile {tile}");
    }
}
