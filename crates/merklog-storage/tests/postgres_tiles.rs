//! PostgreSQL's leaf tiles: the trigger adds the tile of every block of 16
//! leaves that an insert completes, whatever the batch sizes, and proofs
//! read through the tiles give the hashes the RFC defines.

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
