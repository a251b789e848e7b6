//! `merklog verify-store`: the tamper detector. Reads the log's database
//! directly (a read-only role suffices) and checks every leaf, stored node
//! and signed head against one another and against the log's public key,
//! and every leaf's integration time against the signed heads around it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;

use merklog_client::json::{hex_hash, TreeHeadJson};
use merklog_client::offline::parse;
use merklog_client::window::TimeOrder;
use merklog_client::TrustState;
use merklog_merkle::{empty_root, leaf_hash, CompactRange, Hash};
use merklog_sth::{PublicKey, SignedTreeHead, TreeHead};
use merklog_storage::{AnyStore, LogSnapshot, StorageError, TILE_LEAVES};
use serde::Serialize;

use super::{
    print_json, read_public_key, read_text, CommandError, CommandResult, OutputArgs, Progress,
};

/// Arguments of `merklog verify-store`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyStoreArgs {
    /// The log's database: `postgres://…` (a role with SELECT suffices, such
    /// as one granted `merklog_reader`) or `sqlite://path`.
    #[arg(long, env = "MERKLOG_DATABASE_URL")]
    pub database_url: String,
    /// The log's public key (PEM): every stored head must be signed by it.
    #[arg(long, short = 'k', env = "MERKLOG_PUBLIC_KEY")]
    pub public_key: PathBuf,
    /// A tree head the log published earlier (a tree head document or a
    /// monitor's state file): the store must still hold its tree. Without
    /// it, a clean rollback (the newest leaves and heads deleted together)
    /// cannot be told from a smaller log.
    #[arg(long)]
    pub trusted_head: Option<PathBuf>,
    /// Leaves read per query.
    #[arg(long, default_value_t = 1000)]
    pub page_size: u64,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// A row that disagrees, named by its table and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StoreProblem {
    /// `leaves.leaf_hash` is not `SHA-256(0x00 || entry)`.
    LeafHash {
        idx: u64,
        #[serde(with = "hex_hash")]
        stored: Hash,
        #[serde(with = "hex_hash")]
        computed: Hash,
    },
    /// A node in `leaves.nodes` is not the hash of its subtree.
    Node {
        idx: u64,
        level: u8,
        index: u64,
        #[serde(with = "hex_hash")]
        stored: Hash,
        #[serde(with = "hex_hash")]
        computed: Hash,
    },
    /// A leaf tile (PostgreSQL's `leaf_tiles`, which proofs read) is not
    /// the leaf hashes of its 16 leaves, is missing for a complete block,
    /// or is stored for leaves that are not.
    Tile { tile: u64, detail: String },
    /// The leaf indices are not contiguous from 0.
    MissingLeaf { idx: u64, next_stored: Option<u64> },
    /// A row could not be read (wrong lengths): the scan stopped there.
    Corrupt { from_idx: u64, error: String },
    /// A tree head's signature does not verify with the key.
    HeadSignature {
        tree_size: u64,
        timestamp_ms: u64,
        error: String,
    },
    /// A tree head's root is not the root of the stored tree at its size.
    HeadRoot {
        tree_size: u64,
        timestamp_ms: u64,
        #[serde(with = "hex_hash")]
        signed: Hash,
        #[serde(with = "hex_hash")]
        computed: Hash,
    },
    /// Not one stored head verifies with the key: the store is another
    /// log's, or the key is wrong.
    OtherKey { heads: u64, log_id: String },
    /// A tree head covers more leaves than are stored.
    HeadBeyondLeaves {
        tree_size: u64,
        timestamp_ms: u64,
        leaves: u64,
    },
    /// The number of leaves is not the latest head's size.
    LeafCount { leaves: u64, latest_head_size: u64 },
    /// Leaves are stored but no head.
    NoHead { leaves: u64 },
    /// A leaf's `integrated_ms` (or a head's timestamp) breaks the time rule
    /// against the signed heads (docs/FORMATS.md, "Export bundle"): the
    /// time was changed behind the log's back.
    IntegratedTime { idx: u64, detail: String },
    /// The store no longer holds the tree of a head published earlier.
    TrustedHead {
        tree_size: u64,
        #[serde(with = "hex_hash")]
        trusted_root: Hash,
        detail: String,
    },
}

impl fmt::Display for StoreProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreProblem::LeafHash { idx, stored, computed } => write!(
                f,
                "leaves row idx={idx}: the entry hashes to {computed} but leaf_hash is {stored} (entry bytes or leaf hash changed)"
            ),
            StoreProblem::Node {
                idx,
                level,
                index,
                stored,
                computed,
            } => write!(
                f,
                "leaves row idx={idx}: stored node (level {level}, index {index}) is {stored} but the leaves under it give {computed}"
            ),
            StoreProblem::Tile { tile, detail } => write!(
                f,
                "leaf_tiles row tile={tile} (leaves {}..{}): {detail}",
                tile.saturating_mul(TILE_LEAVES),
                tile.saturating_mul(TILE_LEAVES)
                    .saturating_add(TILE_LEAVES - 1)
            ),
            StoreProblem::MissingLeaf { idx, next_stored } => match next_stored {
                Some(next) => write!(f, "leaves rows idx={idx}..{} are missing (next stored row is idx={next})", next - 1),
                None => write!(f, "leaves row idx={idx} is missing"),
            },
            StoreProblem::Corrupt { from_idx, error } => {
                write!(f, "leaves rows from idx={from_idx} cannot be read, scan stopped: {error}")
            }
            StoreProblem::HeadSignature {
                tree_size,
                timestamp_ms,
                error,
            } => write!(
                f,
                "tree_heads row (tree_size={tree_size}, timestamp_ms={timestamp_ms}): signature does not verify: {error}"
            ),
            StoreProblem::HeadRoot {
                tree_size,
                timestamp_ms,
                signed,
                computed,
            } => write!(
                f,
                "tree_heads row (tree_size={tree_size}, timestamp_ms={timestamp_ms}): root_hash {signed} but the stored leaves give {computed}"
            ),
            StoreProblem::OtherKey { heads, log_id } => write!(
                f,
                "none of the {heads} signed heads in tree_heads verifies with the public key given (log ID {log_id}): this store is signed by another key; check --public-key (or, if the key is right, every head was replaced)"
            ),
            StoreProblem::HeadBeyondLeaves {
                tree_size,
                timestamp_ms,
                leaves,
            } => write!(
                f,
                "tree_heads row (tree_size={tree_size}, timestamp_ms={timestamp_ms}): covers {tree_size} leaves but only {leaves} are stored"
            ),
            StoreProblem::LeafCount {
                leaves,
                latest_head_size,
            } => write!(
                f,
                "the store holds {leaves} leaves but the latest tree head covers {latest_head_size}"
            ),
            StoreProblem::NoHead { leaves } => {
                write!(f, "the store holds {leaves} leaves but no tree head")
            }
            StoreProblem::IntegratedTime { idx, detail } => {
                write!(f, "leaves row idx={idx}: {detail}")
            }
            StoreProblem::TrustedHead {
                tree_size,
                trusted_root,
                detail,
            } => write!(
                f,
                "the trusted head of size {tree_size} (root {trusted_root}): {detail}"
            ),
        }
    }
}

/// What `verify-store` checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    pub leaves: u64,
    pub nodes_checked: u64,
    /// Leaf tiles compared with their leaves (0 for a store that keeps
    /// none, such as SQLite).
    pub tiles_checked: u64,
    pub heads_checked: u64,
    pub latest_tree_head: Option<StoredHead>,
    pub problems: Vec<StoreProblem>,
}

impl StoreReport {
    /// Returns true when nothing disagreed.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A stored head, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredHead {
    pub tree_size: u64,
    #[serde(with = "hex_hash")]
    pub root_hash: Hash,
    pub timestamp_ms: u64,
}

/// A head whose root is checked when the tree reaches its size.
struct Checkpoint {
    head: TreeHead,
    /// `None` for a stored head; for the trusted head, it is named so.
    trusted: bool,
}

/// Checks the whole store: each leaf hash against its entry, each stored
/// node against the subtree the stored leaf hashes give, each head's
/// signature (with `key`) and root against the stored tree at its size, the
/// leaf count against the latest head and, when given, that the store still
/// holds the tree of `trusted`. Every disagreement is collected, naming its
/// row; `progress` is called after each page.
///
/// Everything is read from `store`, one consistent snapshot
/// ([`AnyStore::snapshot`]), so appends that run meanwhile cannot make the
/// leaves, tiles and heads seem to disagree.
///
/// # Errors
/// When the store cannot be read (a row of the wrong shape is reported as a
/// problem instead).
pub async fn verify_store<S: LogSnapshot>(
    store: &mut S,
    key: &PublicKey,
    trusted: Option<&TreeHeadJson>,
    page_size: u64,
    progress: &mut Progress,
) -> Result<StoreReport, StorageError> {
    let page_size = page_size.max(1);
    let mut problems = Vec::new();

    // Every head ever stored, in (size, timestamp) order.
    let mut heads: Vec<SignedTreeHead> = Vec::new();
    loop {
        let page = store.tree_heads(heads.last().map(|h| h.head), 1000).await?;
        if page.is_empty() {
            break;
        }
        heads.extend(page);
    }
    let leaves = store.leaf_count().await?;
    let latest = store.latest_tree_head().await?;
    let bad_signatures: Vec<StoreProblem> = heads
        .iter()
        .filter_map(|h| {
            key.verify(h).err().map(|e| StoreProblem::HeadSignature {
                tree_size: h.head.tree_size,
                timestamp_ms: h.head.timestamp_ms,
                error: e.to_string(),
            })
        })
        .collect();
    if heads.len() > 1 && bad_signatures.len() == heads.len() {
        // Not one head verifies: the key given is not this store's, which
        // one line says better than a line per head.
        problems.push(StoreProblem::OtherKey {
            heads: heads.len() as u64,
            log_id: key.log_id().to_string(),
        });
    } else {
        problems.extend(bad_signatures);
    }
    match &latest {
        None if leaves > 0 => problems.push(StoreProblem::NoHead { leaves }),
        Some(l) if l.head.tree_size != leaves => problems.push(StoreProblem::LeafCount {
            leaves,
            latest_head_size: l.head.tree_size,
        }),
        _ => {}
    }

    let mut checkpoints: BTreeMap<u64, Vec<Checkpoint>> = BTreeMap::new();
    for h in &heads {
        checkpoints
            .entry(h.head.tree_size)
            .or_default()
            .push(Checkpoint {
                head: h.head,
                trusted: false,
            });
    }
    if let Some(t) = trusted {
        checkpoints
            .entry(t.tree_size)
            .or_default()
            .push(Checkpoint {
                head: t.to_sth().head,
                trusted: true,
            });
        if let Some(l) = &latest {
            if l.head.tree_size < t.tree_size {
                problems.push(StoreProblem::TrustedHead {
                    tree_size: t.tree_size,
                    trusted_root: t.root_hash,
                    detail: format!(
                        "the store's latest head has size {} only: leaves and heads were deleted (rollback)",
                        l.head.tree_size
                    ),
                });
            }
        }
    }

    // Each leaf's integrated_ms against the heads around it.
    let plain_heads: Vec<TreeHead> = heads.iter().map(|h| h.head).collect();
    let mut times = TimeOrder::new(&plain_heads);
    let mut range = CompactRange::new();
    let mut nodes_checked = 0u64;
    let mut tiles_checked = 0u64;
    // The leaf hashes of the block being read, and the complete blocks of
    // the page, whose tiles are checked after it.
    let mut block: Vec<Hash> = Vec::with_capacity(TILE_LEAVES as usize);
    let mut blocks: Vec<(u64, Vec<Hash>)> = Vec::new();
    let mut broken = false;
    let mut check_roots = |range: &CompactRange, problems: &mut Vec<StoreProblem>| {
        let size = range.size();
        let root = if size == 0 {
            empty_root()
        } else {
            range.root()
        };
        for c in checkpoints.remove(&size).unwrap_or_default() {
            if c.head.root_hash == root {
                continue;
            }
            problems.push(if c.trusted {
                StoreProblem::TrustedHead {
                    tree_size: size,
                    trusted_root: c.head.root_hash,
                    detail: format!(
                        "the stored tree of that size has root {root}: the log was rewritten (fork)"
                    ),
                }
            } else {
                StoreProblem::HeadRoot {
                    tree_size: size,
                    timestamp_ms: c.head.timestamp_ms,
                    signed: c.head.root_hash,
                    computed: root,
                }
            });
        }
    };
    check_roots(&range, &mut problems);
    let mut start = 0u64;
    // Read to the last stored index, which may lie past `leaves` when rows
    // in the middle were deleted.
    let scan_end = match store
        .leaves_with_nodes(leaves, leaves.saturating_add(1))
        .await
    {
        Ok(rows) if !rows.is_empty() => u64::MAX,
        _ => leaves,
    };
    while !broken && start < scan_end {
        let end = start.saturating_add(page_size);
        let rows = match store.leaves_with_nodes(start, end).await {
            Ok(rows) => rows,
            Err(StorageError::Corrupt { what }) => {
                problems.push(StoreProblem::Corrupt {
                    from_idx: start,
                    error: what,
                });
                break;
            }
            Err(e) => return Err(e),
        };
        if rows.is_empty() {
            break;
        }
        let entries = store.entries(start, end).await?;
        let entries: BTreeMap<u64, (Vec<u8>, u64)> = entries
            .into_iter()
            .map(|e| (e.index, (e.entry, e.integrated_ms)))
            .collect();
        for row in rows {
            if row.index != range.size() {
                problems.push(StoreProblem::MissingLeaf {
                    idx: range.size(),
                    next_stored: Some(row.index),
                });
                // The tree past a gap cannot be rebuilt.
                broken = true;
                break;
            }
            if let Some((entry, integrated_ms)) = entries.get(&row.index) {
                times.leaf(row.index, *integrated_ms);
                let computed = leaf_hash(entry);
                if computed != row.leaf_hash {
                    problems.push(StoreProblem::LeafHash {
                        idx: row.index,
                        stored: row.leaf_hash,
                        computed,
                    });
                }
            }
            block.push(row.leaf_hash);
            if block.len() as u64 == TILE_LEAVES {
                blocks.push((row.index / TILE_LEAVES, std::mem::take(&mut block)));
            }
            let mut stored = row.nodes.iter();
            range.append(row.leaf_hash, |id, computed| {
                if id.level == 0 {
                    return;
                }
                nodes_checked += 1;
                match stored.next() {
                    Some(s) if *s == computed => {}
                    Some(s) => problems.push(StoreProblem::Node {
                        idx: row.index,
                        level: id.level,
                        index: id.index,
                        stored: *s,
                        computed,
                    }),
                    None => problems.push(StoreProblem::Corrupt {
                        from_idx: row.index,
                        error: format!(
                            "node (level {}, index {}) is not stored",
                            id.level, id.index
                        ),
                    }),
                }
            });
            check_roots(&range, &mut problems);
        }
        tiles_checked += check_tiles(store, &blocks, &mut problems).await?;
        blocks.clear();
        start = range.size();
        progress.update(range.size().min(leaves), leaves, "leaves");
    }
    problems.extend(
        times
            .finish()
            .into_iter()
            .map(|v| StoreProblem::IntegratedTime {
                idx: v.index(),
                detail: v.to_string(),
            }),
    );
    // Tiles of blocks the stored leaves do not complete.
    let complete = range.size() / TILE_LEAVES;
    for (tile, _) in store
        .leaf_tiles(complete, u64::MAX)
        .await?
        .unwrap_or_default()
    {
        problems.push(StoreProblem::Tile {
            tile,
            detail: format!(
                "stored, but only {} leaves can be rebuilt from the store",
                range.size()
            ),
        });
    }
    // Heads past the stored tree.
    for (size, list) in checkpoints {
        for c in list {
            if c.trusted {
                if !problems
                    .iter()
                    .any(|p| matches!(p, StoreProblem::TrustedHead { .. }))
                {
                    problems.push(StoreProblem::TrustedHead {
                        tree_size: size,
                        trusted_root: c.head.root_hash,
                        detail: format!(
                            "only {} leaves can be rebuilt from the store: leaves were deleted (rollback)",
                            range.size()
                        ),
                    });
                }
            } else {
                problems.push(StoreProblem::HeadBeyondLeaves {
                    tree_size: size,
                    timestamp_ms: c.head.timestamp_ms,
                    leaves: range.size(),
                });
            }
        }
    }
    Ok(StoreReport {
        leaves,
        nodes_checked,
        tiles_checked,
        heads_checked: heads.len() as u64,
        latest_tree_head: latest.map(|l| StoredHead {
            tree_size: l.head.tree_size,
            root_hash: l.head.root_hash,
            timestamp_ms: l.head.timestamp_ms,
        }),
        problems,
    })
}

/// Compares the stored tile of each complete block in `blocks` (tile index,
/// its leaves' hashes as stored in `leaves`) with those leaf hashes; returns
/// how many blocks were compared (none when the store keeps no tiles).
async fn check_tiles<S: LogSnapshot>(
    store: &mut S,
    blocks: &[(u64, Vec<Hash>)],
    problems: &mut Vec<StoreProblem>,
) -> Result<u64, StorageError> {
    let (Some((first, _)), Some((last, _))) = (blocks.first(), blocks.last()) else {
        return Ok(0);
    };
    let Some(tiles) = store.leaf_tiles(*first, last + 1).await? else {
        return Ok(0);
    };
    let tiles: BTreeMap<u64, Vec<Hash>> = tiles.into_iter().collect();
    for (tile, leaves) in blocks {
        let detail = match tiles.get(tile) {
            None => "missing, though its 16 leaves are stored".to_owned(),
            Some(stored) => match stored.iter().zip(leaves).position(|(s, l)| s != l) {
                None => continue,
                Some(i) => format!(
                    "its hash {i} is {} but leaf {} has leaf hash {}",
                    stored[i],
                    tile * TILE_LEAVES + i as u64,
                    leaves[i]
                ),
            },
        };
        problems.push(StoreProblem::Tile {
            tile: *tile,
            detail,
        });
    }
    Ok(blocks.len() as u64)
}

/// Reads a trusted head from a tree head document or a state file.
fn read_trusted(path: &std::path::Path) -> CommandResult<TreeHeadJson> {
    let text = read_text(path, "trusted head")?;
    if let Ok(state) = serde_json::from_str::<TrustState>(&text) {
        return Ok(state.tree_head);
    }
    Ok(parse::<TreeHeadJson>(
        &text,
        &format!(
            "trusted head {} (neither a tree head nor a state file)",
            path.display()
        ),
    )?)
}

/// Opens the store, checks it and prints the report; exit code 1 when a
/// row disagrees.
///
/// # Errors
/// [`CommandError::Problems`]; [`CommandError::Storage`] when the store
/// cannot be read.
pub async fn run(args: VerifyStoreArgs, out: &mut dyn Write) -> CommandResult {
    let key = read_public_key(&args.public_key)?;
    let trusted = args.trusted_head.as_deref().map(read_trusted).transpose()?;
    if let Some(t) = &trusted {
        merklog_client::check::verify_head_json(&key, t)?;
    }
    let url = args.database_url.trim();
    let is_file = !url.contains(':') || url.starts_with("sqlite:");
    if is_file {
        let path = url
            .trim_start_matches("sqlite://")
            .trim_start_matches("sqlite:");
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            return Err(CommandError::Usage(format!("no database at {path}")));
        }
    }
    let store = AnyStore::open(url).await?;
    let mut snapshot = store.snapshot().await?;
    let mut progress = Progress::new("verify-store", true);
    let report = verify_store(
        &mut snapshot,
        &key,
        trusted.as_ref(),
        args.page_size,
        &mut progress,
    )
    .await?;
    if args.out.json {
        print_json(out, &report)?;
    } else {
        for p in &report.problems {
            writeln!(out, "PROBLEM: {p}")?;
        }
        writeln!(
            out,
            "{}: {} leaves, {} stored nodes, {} leaf tiles and {} signed heads checked",
            if report.ok() { "OK" } else { "FAILED" },
            report.leaves,
            report.nodes_checked,
            report.tiles_checked,
            report.heads_checked
        )?;
    }
    if report.ok() {
        Ok(())
    } else {
        Err(CommandError::Problems {
            summary: format!("verify-store found {} problem(s)", report.problems.len()),
        })
    }
}
