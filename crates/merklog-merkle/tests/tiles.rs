//! Tiles reproduce the core crate: for every tree size from 1 to 3,000,
//! the root recomputed from that size's tiles is `MTH(D[n])`, and inclusion
//! and consistency proofs assembled from tiles equal those assembled from
//! every node of the tree held directly (every proof for sizes up to 300, a spread of them
//! above).

use std::convert::Infallible;

use merklog_merkle::tiles::{TileId, TileNodeSource, TILE_WIDTH};
use merklog_merkle::{
    consistency_proof, fold_right_edge, inclusion_proof, leaf_hash, merkle_tree_hash, node_hash,
    CompactRange, Error, Hash, NodeId, NodeSource,
};

const MAX_SIZE: u64 = 3_000;

/// Every complete node of the 3,000-leaf tree, level by level, built by
/// hashing pairs: the reference the tiles are checked against.
struct Nodes(Vec<Vec<Hash>>);

impl Nodes {
    fn new(leaves: &[Hash]) -> Self {
        let mut levels = vec![leaves.to_vec()];
        while levels.last().unwrap().len() > 1 {
            let below = levels.last().unwrap();
            levels.push(
                below
                    .chunks_exact(2)
                    .map(|p| node_hash(&p[0], &p[1]))
                    .collect(),
            );
        }
        Nodes(levels)
    }
}

impl NodeSource for Nodes {
    type Error = Infallible;
    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Infallible> {
        Ok(ids
            .iter()
            .map(|id| self.0[usize::from(id.level)][id.index as usize])
            .collect())
    }
}

#[derive(Debug)]
struct TileError(#[expect(dead_code, reason = "shown by Debug when a test fails")] Error);

impl From<Error> for TileError {
    fn from(e: Error) -> Self {
        TileError(e)
    }
}

fn leaves() -> Vec<Hash> {
    (0..MAX_SIZE).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

/// The hashes of `tile`, as a log serves them; a request for a tile the
/// tree of `size` does not have (or of another width) fails the test.
fn serve(nodes: &Nodes, size: u64, tile: TileId) -> Result<Vec<Hash>, TileError> {
    assert_eq!(
        TileId::in_tree(tile.level, tile.index, size),
        Some(tile),
        "asked for a tile the tree of {size} does not publish"
    );
    Ok(nodes
        .node_hashes(&tile.node_ids().collect::<Vec<_>>())
        .unwrap())
}

#[test]
fn every_size_to_3000_reproduces_roots_and_proofs_from_tiles() {
    let leaves = leaves();
    let nodes = Nodes::new(&leaves);
    let mut proofs = 0u64;
    for n in 1..=MAX_SIZE {
        let tiles = TileNodeSource {
            tree_size: n,
            fetch: |t| serve(&nodes, n, t),
        };
        let edge = tiles.node_hashes(&CompactRange::node_ids(n)).unwrap();
        assert_eq!(
            fold_right_edge(&edge),
            merkle_tree_hash(&leaves[..n as usize]),
            "root of {n}"
        );

        let ms: Vec<u64> = if n <= 300 {
            (0..n).collect()
        } else {
            let mut v = vec![
                0,
                1,
                255,
                256,
                257,
                n / 3,
                n / 2,
                n - 257,
                n - 256,
                n - 2,
                n - 1,
            ];
            v.retain(|m| *m < n);
            v
        };
        for m in ms {
            assert_eq!(
                inclusion_proof(&tiles, m, n).unwrap(),
                inclusion_proof(&nodes, m, n).unwrap(),
                "inclusion of {m} in {n}"
            );
            assert_eq!(
                consistency_proof(&tiles, m + 1, n).unwrap(),
                consistency_proof(&nodes, m + 1, n).unwrap(),
                "consistency {} to {n}",
                m + 1
            );
            proofs += 2;
        }
    }
    assert!(proofs > 90_000, "{proofs}");
}

#[test]
fn a_tile_of_the_wrong_width_is_an_error_not_a_wrong_proof() {
    let nodes = Nodes::new(&leaves());
    let n = 700;
    let short = TileNodeSource {
        tree_size: n,
        fetch: |t: TileId| -> Result<Vec<Hash>, TileError> {
            let mut h = serve(&nodes, n, t)?;
            h.pop();
            Ok(h)
        },
    };
    let e = inclusion_proof(&short, 5, n).unwrap_err();
    assert!(format!("{e:?}").contains("NodeCount"), "{e:?}");
    // A node the tree of this size does not hold is refused too.
    let tiles = TileNodeSource {
        tree_size: n,
        fetch: |t| serve(&nodes, n, t),
    };
    assert!(tiles.node_hashes(&[NodeId::new(9, 1)]).is_err());
    assert_eq!(TILE_WIDTH, 256);
}
