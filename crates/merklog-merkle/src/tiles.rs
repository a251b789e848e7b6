//! Tile coordinates of c2sp.org/tlog-tiles (§Merkle Tree, §Partial Tiles,
//! §Log entries): which tiles a tree of size `s` has, their widths and
//! paths, which stored nodes a tile holds, how any complete node is
//! recomputed from one tile, and the entry bundle encoding.
//!
//! The `n`-th tile at tile level `l` holds, for `i` in `0..width`,
//! `MTH(D[(n·256 + i)·256^l : (n·256 + i + 1)·256^l])`: the node at tree
//! level `8·l` and index `n·256 + i` in [`NodeId`] terms.

use std::fmt;

use crate::{merkle_tree_hash, Error, Hash, NodeId, NodeSource};

/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels one tile spans.
pub const TILE_HEIGHT: u8 = 8;
/// The highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;
/// The longest entry an entry bundle can hold (a 16-bit length prefix).
pub const MAX_BUNDLE_ENTRY: usize = u16::MAX as usize;

/// One tile (or entry bundle) of a tree of some size: full when `width`
/// is 256, partial (1–255) when it is the rightmost of its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    /// The tile level `L` (0 for leaf hashes).
    pub level: u8,
    /// The tile's index `N` within its level.
    pub index: u64,
    /// The number of hashes (or entries): 1 to 256.
    pub width: u16,
}

/// What a tile path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`: hashes.
    Hashes(TileId),
    /// `tile/entries/<N>[.p/<W>]`: an entry bundle (level 0).
    Entries(TileId),
}

impl TileId {
    /// The tile at `level` and `index` of a tree of `tree_size` leaves, with
    /// its width in that tree, or `None` when that tree has no such tile.
    pub fn in_tree(level: u8, index: u64, tree_size: u64) -> Option<TileId> {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        if level > MAX_TILE_LEVEL || shift >= 64 {
            return None;
        }
        // Stored hashes at tree level 8·l: floor(s / 256^l).
        let hashes = tree_size >> shift;
        let first = index.checked_mul(TILE_WIDTH)?;
        let width = hashes.checked_sub(first)?.min(TILE_WIDTH);
        (width > 0).then_some(TileId {
            level,
            index,
            width: width as u16,
        })
    }

    /// Whether the tile holds 256 hashes.
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The stored nodes the tile holds, left to right.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        let level = self.level * TILE_HEIGHT;
        let first = self.index * TILE_WIDTH;
        (0..u64::from(self.width)).map(move |i| NodeId::new(level, first + i))
    }

    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}", self.level, self.suffix())
    }

    /// `tile/entries/<N>[.p/<W>]` (level-0 tiles only).
    pub fn entries_path(&self) -> String {
        debug_assert_eq!(self.level, 0, "entry bundles are level 0");
        format!("tile/entries/{}", self.suffix())
    }

    fn suffix(&self) -> String {
        let mut s = index_path(self.index);
        if !self.is_full() {
            s.push_str(&format!(".p/{}", self.width));
        }
        s
    }
}

impl fmt::Display for TileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `N` as zero-padded 3-digit path elements, all but the last prefixed
/// with `x`: 1234067 is `x001/x234/067`.
fn index_path(index: u64) -> String {
    let mut groups = vec![index % 1000];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(k, g)| {
            if k == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn bad_path(path: &str, reason: &str) -> Error {
    Error::TilePath {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

impl TilePath {
    /// Parses a tile or entry-bundle path (`tile/…`, no leading slash),
    /// strictly: no leading zeros in `L` or `W`, `L` at most 63, `W` 1–255,
    /// 3-digit index elements with `x` on all but the last.
    ///
    /// # Errors
    /// [`Error::TilePath`] naming what is wrong.
    pub fn parse(path: &str) -> Result<TilePath, Error> {
        let rest = path
            .strip_prefix("tile/")
            .ok_or_else(|| bad_path(path, "does not start with tile/"))?;
        let (kind, rest) = rest
            .split_once('/')
            .ok_or_else(|| bad_path(path, "no tile index"))?;
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w = decimal(w)
                    .filter(|w| (1..TILE_WIDTH).contains(w))
                    .ok_or_else(|| {
                        bad_path(
                            path,
                            "the partial width must be 1 to 255, without leading zeros",
                        )
                    })?;
                (i, w as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_index(index_part).ok_or_else(|| {
            bad_path(
                path,
                "the index must be 3-digit elements, all but the last starting with x",
            )
        })?;
        if kind == "entries" {
            return Ok(TilePath::Entries(TileId {
                level: 0,
                index,
                width,
            }));
        }
        let level = decimal(kind)
            .filter(|l| *l <= u64::from(MAX_TILE_LEVEL))
            .ok_or_else(|| bad_path(path, "the level must be 0 to 63, without leading zeros"))?;
        Ok(TilePath::Hashes(TileId {
            level: level as u8,
            index,
            width,
        }))
    }
}

/// A decimal without leading zeros (`0` itself allowed).
fn decimal(s: &str) -> Option<u64> {
    let ok =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}

fn parse_index(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split('/').collect();
    let (last, upper) = parts.split_last()?;
    let mut index: u64 = 0;
    for (k, part) in upper
        .iter()
        .map(|p| p.strip_prefix('x'))
        .chain([Some(*last)])
        .enumerate()
    {
        let part = part?;
        if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // A leading x000 element would give one index two paths.
        if k == 0 && parts.len() > 1 && part == "000" {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(part.parse().ok()?)?;
    }
    Some(index)
}

/// Every tile of a tree of `tree_size` leaves that is partial (the
/// rightmost of each level, when its width is not 256): the tiles a log
/// publishes for one checkpoint besides the full ones.
pub fn partial_tiles(tree_size: u64) -> Vec<TileId> {
    (0..=MAX_TILE_LEVEL)
        .take_while(|l| u32::from(*l) * u32::from(TILE_HEIGHT) < 64)
        .filter_map(|level| {
            let hashes = tree_size >> (u32::from(level) * u32::from(TILE_HEIGHT));
            TileId::in_tree(level, hashes / TILE_WIDTH, tree_size).filter(|t| !t.is_full())
        })
        .collect()
}

/// The tile (in a tree of `tree_size` leaves) from which `node` is
/// recomputed, and the range of that tile's hashes under it. `None` when
/// the node is not complete in that tree.
pub fn tile_for_node(node: NodeId, tree_size: u64) -> Option<(TileId, std::ops::Range<usize>)> {
    if node.level >= 64
        || node
            .index
            .checked_add(1)?
            .checked_shl(u32::from(node.level))?
            > tree_size
    {
        return None;
    }
    let tile_level = node.level / TILE_HEIGHT;
    let below = node.level % TILE_HEIGHT;
    let first = node.index << below;
    let count = 1u64 << below;
    let tile = TileId::in_tree(tile_level, first / TILE_WIDTH, tree_size)?;
    let start = (first % TILE_WIDTH) as usize;
    Some((tile, start..start + count as usize))
}

/// A [`NodeSource`] that recomputes complete nodes of a tree of
/// `tree_size` leaves from its tiles, fetched through `fetch` (which must
/// return exactly the tile's `width` hashes).
pub struct TileNodeSource<F> {
    pub tree_size: u64,
    pub fetch: F,
}

impl<F, E> NodeSource for TileNodeSource<F>
where
    F: Fn(TileId) -> Result<Vec<Hash>, E>,
    E: From<Error>,
{
    type Error = E;

    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, E> {
        let mut tiles: Vec<(TileId, Vec<Hash>)> = Vec::new();
        ids.iter()
            .map(|&id| {
                let (tile, range) =
                    tile_for_node(id, self.tree_size).ok_or(Error::IndexOutOfRange {
                        index: id.last_leaf(),
                        tree_size: self.tree_size,
                    })?;
                let k = match tiles.iter().position(|(t, _)| *t == tile) {
                    Some(k) => k,
                    None => {
                        let hashes = (self.fetch)(tile)?;
                        if hashes.len() != usize::from(tile.width) {
                            return Err(Error::NodeCount {
                                expected: usize::from(tile.width),
                                got: hashes.len(),
                            }
                            .into());
                        }
                        tiles.push((tile, hashes));
                        tiles.len() - 1
                    }
                };
                Ok(merkle_tree_hash(&tiles[k].1[range]))
            })
            .collect()
    }
}

/// Encodes entries as an entry bundle: each as a big-endian 16-bit length
/// and its bytes.
///
/// # Errors
/// [`Error::BundleEntryTooLarge`] for an entry over 65,535 bytes.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let len = u16::try_from(e.len()).map_err(|_| Error::BundleEntryTooLarge {
            position: i,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries.
///
/// # Errors
/// [`Error::MalformedBundle`] when a length runs past the end.
pub fn decode_bundle(bundle: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut entries = Vec::new();
    let mut rest = bundle;
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(Error::MalformedBundle {
                reason: format!("entry {} has a 1-byte length", entries.len()),
            });
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(Error::MalformedBundle {
                reason: format!(
                    "entry {} says {len} bytes but {} remain",
                    entries.len(),
                    tail.len()
                ),
            });
        }
        entries.push(&tail[..len]);
        rest = &tail[len..];
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_spec_examples() {
        // tlog-tiles §Merkle Tree: index 1234067.
        let t = TileId {
            level: 0,
            index: 1_234_067,
            width: 256,
        };
        assert_eq!(t.path(), "tile/0/x001/x234/067");
        assert_eq!(t.entries_path(), "tile/entries/x001/x234/067");
        let p = TileId {
            level: 2,
            index: 5,
            width: 17,
        };
        assert_eq!(p.path(), "tile/2/005.p/17");
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(
            TilePath::parse("tile/0/x001/x234/067").unwrap(),
            TilePath::Hashes(t)
        );
        assert_eq!(
            TilePath::parse("tile/entries/x001/x234/067").unwrap(),
            TilePath::Entries(t)
        );
        assert_eq!(
            TilePath::parse("tile/2/005.p/17").unwrap(),
            TilePath::Hashes(p)
        );
    }

    #[test]
    fn widths_follow_the_spec_examples() {
        // tlog-tiles §Partial Tiles: a tree of 70,000 has 273 full level-0
        // tiles, a partial one of width 112, one full level-1 tile, a
        // partial one of width 17 and a partial level-2 tile of width 1.
        let s = 70_000;
        assert!(TileId::in_tree(0, 272, s).unwrap().is_full());
        assert_eq!(TileId::in_tree(0, 273, s).unwrap().width, 112);
        assert_eq!(TileId::in_tree(0, 274, s), None);
        assert!(TileId::in_tree(1, 0, s).unwrap().is_full());
        assert_eq!(TileId::in_tree(1, 1, s).unwrap().width, 17);
        assert_eq!(TileId::in_tree(2, 0, s).unwrap().width, 1);
        assert_eq!(TileId::in_tree(3, 0, s), None);
        let widths: Vec<(u8, u16)> = partial_tiles(s)
            .iter()
            .map(|t| (t.level, t.width))
            .collect();
        assert_eq!(widths, [(0, 112), (1, 17), (2, 1)]);
        // A tree of 256: one full level-0 tile and a level-1 tile of width 1.
        assert!(TileId::in_tree(0, 0, 256).unwrap().is_full());
        assert_eq!(
            partial_tiles(256),
            [TileId {
                level: 1,
                index: 0,
                width: 1
            }]
        );
        assert!(partial_tiles(0).is_empty());
    }

    #[test]
    fn malformed_paths_are_refused() {
        for path in [
            "tile/00/000",
            "tile/64/000",
            "tile/0/1",
            "tile/0/0001",
            "tile/0/001/002",
            "tile/0/x000/002",
            "tile/0/x1/002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/017",
            "tile/0/000.p/",
            "tile/entries/",
            "tile/0",
            "tiles/0/000",
            "tile/-1/000",
            "tile/0/x999/x999/x999/x999/x999/x999/999",
        ] {
            let e = TilePath::parse(path).unwrap_err();
            assert!(matches!(e, Error::TilePath { .. }), "{path}: {e}");
        }
    }

    #[test]
    fn bundles_round_trip_and_refuse_what_does_not_fit() {
        let entries: [&[u8]; 3] = [b"", b"a", &[7u8; 300]];
        let b = encode_bundle(entries).unwrap();
        assert_eq!(&b[..5], &[0, 0, 0, 1, b'a']);
        assert_eq!(decode_bundle(&b).unwrap(), entries);
        assert!(decode_bundle(&b[..b.len() - 1]).is_err());
        assert!(decode_bundle(&[0]).is_err());
        let big = vec![0u8; MAX_BUNDLE_ENTRY + 1];
        assert_eq!(
            encode_bundle([&b"x"[..], &big]).unwrap_err(),
            Error::BundleEntryTooLarge {
                position: 1,
                len: MAX_BUNDLE_ENTRY + 1
            }
        );
        assert!(encode_bundle([&vec![0u8; MAX_BUNDLE_ENTRY][..]]).is_ok());
    }
}
