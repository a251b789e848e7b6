//! The tree's upper levels in memory, for proofs.
//!
//! An inclusion proof in a log of 10 M leaves names about 24 nodes, and
//! reading each from the store is one indexed row fetch. A complete
//! subtree's hash never changes, so the service keeps the hash of every
//! complete subtree of `2^lowest` leaves and more, level by level in plain
//! vectors, and a proof reads from the store only the few nodes below
//! `lowest`, which sit in the rows of its own block of `2^lowest` leaves.
//!
//! The cache grows in leaf order: the sequencer adds each batch it commits
//! ([`NodeCache::extend_committed`]), and a background task reads from the
//! store whatever it lacks up to the latest head this instance serves — at
//! start-up, and on followers and read-only replicas. The lowest level is chosen for the log's size so that the cache stays within
//! its memory bound however large the log grows (at 64 MiB: every level
//! from 4 up at 10 M leaves, from 7 up at 100 M).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use merklog_merkle::{Hash, NodeId};
use merklog_storage::LogStore;
use tokio::sync::watch;

use crate::config::Limits;
use crate::leadership::InstanceRole;

/// Levels are `u8`, but a tree of `u64` leaves has none above 63.
const LEVELS: u8 = 64;

/// How often the filler looks for a newer head.
const FILL_INTERVAL: Duration = Duration::from_millis(100);

/// How many rows (blocks of `2^lowest` leaves) one fill query reads.
const FILL_ROWS: u64 = 16_384;

/// The hashes of complete subtrees of `2^lowest` leaves and more, within a
/// prefix of the log.
#[derive(Debug)]
pub struct NodeCache {
    max_nodes: u64,
    levels: RwLock<Levels>,
}

#[derive(Debug)]
struct Levels {
    /// The lowest level held; nodes below it are read from the store.
    lowest: u8,
    /// The cache holds every complete subtree of level `lowest` or more
    /// within the first `size` leaves: `by_level[j]` holds the
    /// `size >> (lowest + j)` nodes of level `lowest + j`, node `k` at `k`.
    size: u64,
    by_level: Vec<Vec<Hash>>,
}

/// The nodes to read from the store to extend the cache from `from` to `to`
/// leaves, level by level, left to right.
#[derive(Debug)]
pub struct FillStep {
    lowest: u8,
    from: u64,
    to: u64,
    ids: Vec<NodeId>,
}

impl FillStep {
    /// The nodes to read, in the order [`NodeCache::extend`] takes them.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }
}

impl Default for NodeCache {
    /// An empty cache of the default size ([`Limits::node_cache_bytes`]).
    fn default() -> Self {
        NodeCache::new(Limits::default().node_cache_bytes)
    }
}

impl NodeCache {
    /// Returns an empty cache that holds at most `max_bytes` of hashes
    /// (0: none).
    pub fn new(max_bytes: usize) -> Self {
        NodeCache {
            max_nodes: (max_bytes / std::mem::size_of::<Hash>()) as u64,
            levels: RwLock::new(Levels {
                lowest: 1,
                size: 0,
                by_level: Vec::new(),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Levels> {
        // The data stays consistent even if a holder panicked: every
        // mutation is a push, a truncation or a level dropped whole.
        self.levels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Levels> {
        self.levels.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of leaves whose complete subtrees the cache holds.
    pub fn size(&self) -> u64 {
        self.read().size
    }

    /// The lowest level the cache holds.
    pub fn lowest_level(&self) -> u8 {
        self.read().lowest
    }

    /// Returns the hash of each of `ids` that the cache holds.
    pub fn get_many(&self, ids: &[NodeId]) -> Vec<Option<Hash>> {
        let levels = self.read();
        ids.iter().map(|id| levels.get(*id)).collect()
    }

    /// Plans the next step towards holding the tree of `target` leaves:
    /// at most [`FILL_ROWS`] blocks of `2^lowest` leaves. `None` when the
    /// cache already covers `target` or holds nothing.
    ///
    /// Raises the lowest level first if the tree of `target` leaves would
    /// not fit otherwise, dropping the levels below.
    pub fn next_step(&self, target: u64) -> Option<FillStep> {
        let mut levels = self.write();
        if target <= levels.size {
            return None;
        }
        let lowest = lowest_level_for(target, self.max_nodes);
        if lowest >= LEVELS {
            return None;
        }
        levels.raise_to(lowest);
        let from = levels.size;
        let to = target.min(from.saturating_add(FILL_ROWS << lowest));
        let mut ids = Vec::new();
        for level in lowest..LEVELS {
            let (first, end) = (from >> level, to >> level);
            if end == 0 {
                break;
            }
            ids.extend((first..end).map(|index| NodeId::new(level, index)));
        }
        Some(FillStep {
            lowest,
            from,
            to,
            ids,
        })
    }

    /// Adds the `hashes` read for `step`, one per id. Returns false, adding
    /// nothing, when the cache moved since the step was planned or the
    /// hashes do not match the step.
    pub fn extend(&self, step: &FillStep, hashes: &[Hash]) -> bool {
        let mut levels = self.write();
        if levels.size != step.from
            || levels.lowest != step.lowest
            || hashes.len() != step.ids.len()
        {
            return false;
        }
        levels.append(
            step.to,
            step.ids.iter().copied().zip(hashes.iter().copied()),
        )
    }

    /// Adds the nodes of a batch just committed, which grew the tree from
    /// `from` to `to` leaves: every node of level ≥ 1 it completed, each
    /// level left to right, as `CompactRange::append` reports them. Returns
    /// false, adding nothing, unless the cache covers exactly `from` leaves
    /// (the filler then reads the batch from the store).
    pub fn extend_committed(&self, from: u64, to: u64, nodes: &[(NodeId, Hash)]) -> bool {
        let mut levels = self.write();
        let lowest = lowest_level_for(to, self.max_nodes);
        if levels.size != from || lowest >= LEVELS {
            return false;
        }
        levels.raise_to(lowest);
        levels.append(
            to,
            nodes.iter().copied().filter(|(id, _)| id.level >= lowest),
        )
    }
}

impl Levels {
    /// Appends `nodes`, which must be every node of level ≥ `lowest`
    /// completed between `size` and `to` leaves, each level left to right;
    /// otherwise leaves the levels as they were and returns false.
    fn append(&mut self, to: u64, nodes: impl Iterator<Item = (NodeId, Hash)>) -> bool {
        let from = self.size;
        let mut fits = true;
        for (id, hash) in nodes {
            let j = usize::from(id.level - self.lowest);
            if self.by_level.len() <= j {
                self.by_level.resize_with(j + 1, Vec::new);
            }
            let level = &mut self.by_level[j];
            if level.len() as u64 != id.index || id.index >= to >> id.level {
                fits = false;
                break;
            }
            level.push(hash);
        }
        let complete = fits
            && (self.lowest..LEVELS).all(|level| {
                let held = self
                    .by_level
                    .get(usize::from(level - self.lowest))
                    .map_or(0, |l| l.len() as u64);
                held == to >> level
            });
        if complete {
            self.size = to;
        } else {
            let lowest = self.lowest;
            for (j, level) in self.by_level.iter_mut().enumerate() {
                level.truncate((from >> (usize::from(lowest) + j)) as usize);
            }
        }
        complete
    }

    fn get(&self, id: NodeId) -> Option<Hash> {
        let j = usize::from(id.level.checked_sub(self.lowest)?);
        let level = self.by_level.get(j)?;
        level.get(usize::try_from(id.index).ok()?).copied()
    }

    fn raise_to(&mut self, lowest: u8) {
        if lowest > self.lowest {
            let dropped = usize::from(lowest - self.lowest).min(self.by_level.len());
            self.by_level.drain(..dropped);
            self.lowest = lowest;
        }
    }
}

/// The lowest level (at least 1: level 0, the leaf hashes, stays in the
/// store) from which all complete subtrees of a tree of `size` leaves fit in
/// `max_nodes`; [`LEVELS`] when none fit.
fn lowest_level_for(size: u64, max_nodes: u64) -> u8 {
    (1..LEVELS)
        .find(|&lowest| (lowest..LEVELS).map(|level| size >> level).sum::<u64>() <= max_nodes)
        .unwrap_or(LEVELS)
}

/// Stops the filler when the service that owns the cache is dropped.
#[derive(Debug)]
pub(crate) struct Filler(tokio::task::AbortHandle);

impl Drop for Filler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task that fills `cache` from `store` up to the latest head
/// `role` serves, unless the cache has no room (proofs then read every node
/// from the store).
///
/// # Panics
/// Outside a Tokio runtime.
pub(crate) fn spawn_filler<S: LogStore + Send + Sync + 'static>(
    cache: Arc<NodeCache>,
    store: Arc<S>,
    role: watch::Receiver<InstanceRole>,
    tasks: &crate::tasks::Tasks,
) -> Option<Filler> {
    if cache.max_nodes == 0 {
        return None;
    }
    let task = tasks.spawn("node cache filler", keep_filled(cache, store, role));
    Some(Filler(task))
}

/// Every [`FILL_INTERVAL`], extends `cache` up to the latest head `role`
/// serves. Runs until aborted.
async fn keep_filled<S: LogStore>(
    cache: Arc<NodeCache>,
    store: Arc<S>,
    role: watch::Receiver<InstanceRole>,
) {
    let mut tick = tokio::time::interval(FILL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let started = std::time::Instant::now();
    let mut caught_up = false;
    loop {
        tick.tick().await;
        crate::metrics::node_cache_leaves(cache.size());
        let Some(target) = role.borrow().latest().map(|h| h.head.tree_size) else {
            continue;
        };
        if !caught_up && cache.size() >= target {
            caught_up = true;
            tracing::info!(
                leaves = target,
                from_level = cache.lowest_level(),
                seconds = started.elapsed().as_secs_f64(),
                "the proof node cache holds the tree's upper levels"
            );
        }
        while let Some(step) = cache.next_step(target) {
            match store.node_hashes(step.ids()).await {
                Ok(hashes) => {
                    if failing {
                        tracing::info!("the proof node cache reads from the store again");
                        failing = false;
                    }
                    if !cache.extend(&step, &hashes) {
                        break;
                    }
                }
                Err(e) => {
                    // Proofs still work, reading every node from the store.
                    if !failing {
                        tracing::warn!(error = %e, "cannot fill the proof node cache; retrying");
                        failing = true;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_merkle::{leaf_hash, merkle_tree_hash};
    use proptest::prelude::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// The hash of node `id` straight from the definition (RFC 9162 §2.1.1).
    fn reference(leaves: &[Hash], id: NodeId) -> Hash {
        let first = id.first_leaf() as usize;
        merkle_tree_hash(&leaves[first..first + (1usize << id.level)])
    }

    /// Fills `cache` up to `target` leaves the way the filler does, reading
    /// from the reference.
    fn fill(cache: &NodeCache, leaves: &[Hash], target: u64) {
        while let Some(step) = cache.next_step(target) {
            let hashes: Vec<Hash> = step.ids().iter().map(|id| reference(leaves, *id)).collect();
            assert!(cache.extend(&step, &hashes));
        }
    }

    /// Every node the cache answers for is right, and it answers for every
    /// complete subtree of its levels within its size.
    fn check(cache: &NodeCache, leaves: &[Hash]) {
        let size = cache.size();
        let lowest = cache.lowest_level();
        let mut held = 0u64;
        for level in 0..=u8::try_from(64 - (leaves.len() as u64).leading_zeros()).unwrap() {
            for index in 0..=(leaves.len() as u64 >> level) {
                let id = NodeId::new(level, index);
                let complete = (index + 1) << level <= size;
                match cache.get_many(&[id])[0] {
                    Some(hash) => {
                        assert!(complete && level >= lowest, "{id:?} held outside the cache");
                        assert_eq!(hash, reference(leaves, id), "{id:?}");
                        held += 1;
                    }
                    None => assert!(!complete || level < lowest, "{id:?} missing"),
                }
            }
        }
        assert!(held <= cache.max_nodes, "{held} nodes over the bound");
    }

    #[test]
    fn holds_every_upper_subtree_of_what_it_covers() {
        let leaves = leaves(1000);
        let cache = NodeCache::new(1 << 20);
        for target in [1, 2, 3, 37, 64, 500, 999, 1000] {
            fill(&cache, &leaves, target);
            assert_eq!(cache.size(), target);
            assert_eq!(cache.lowest_level(), 1);
            check(&cache, &leaves);
        }
    }

    #[test]
    fn raises_its_lowest_level_to_stay_within_its_bound() {
        let leaves = leaves(5000);
        // Room for 100 nodes: from level 3 up at 300 leaves (37 + 18 + 9 +
        // 4 + 2 + 1 = 71 nodes; from level 2 it would be 146), from level 7
        // up at 5,000 leaves (74 nodes; from level 6, 152).
        let cache = NodeCache::new(100 * 32);
        fill(&cache, &leaves, 300);
        assert_eq!(cache.lowest_level(), 3);
        check(&cache, &leaves);
        fill(&cache, &leaves, 5000);
        assert_eq!(cache.lowest_level(), 7);
        check(&cache, &leaves);
    }

    #[test]
    fn holds_nothing_without_room() {
        let leaves = leaves(100);
        let cache = NodeCache::new(0);
        fill(&cache, &leaves, 100);
        // It covers the 100 leaves from level 7 up, where there is no node.
        assert_eq!(cache.lowest_level(), 7);
        check(&cache, &leaves);
        assert!(cache.get_many(&[NodeId::new(6, 0)])[0].is_none());
    }

    #[test]
    fn refuses_a_stale_or_short_step() {
        let leaves = leaves(64);
        let cache = NodeCache::new(1 << 20);
        let first = cache.next_step(32).unwrap();
        let hashes: Vec<Hash> = first
            .ids()
            .iter()
            .map(|id| reference(&leaves, *id))
            .collect();
        assert!(!cache.extend(&first, &hashes[1..]), "one hash short");
        assert!(cache.extend(&first, &hashes));
        assert!(
            !cache.extend(&first, &hashes),
            "planned from 0, the cache is at 32"
        );
        assert_eq!(cache.size(), 32);
        check(&cache, &leaves);
    }

    #[test]
    fn a_large_fill_goes_in_bounded_steps() {
        let cache = NodeCache::new(1 << 30);
        let step = cache.next_step(10_000_000).unwrap();
        // Level 1 for a tree that fits whole: 16,384 rows of 2 leaves.
        assert_eq!(step.to, FILL_ROWS << 1);
        assert_eq!(
            step.ids().iter().filter(|id| id.level == 1).count() as u64,
            FILL_ROWS
        );
        let cache = NodeCache::new(64 << 20);
        let step = cache.next_step(10_000_000).unwrap();
        assert_eq!(
            step.lowest, 4,
            "64 MiB holds levels 4 and up of 10 M leaves"
        );
        assert_eq!(lowest_level_for(100_000_000, (64 << 20) / 32), 7);
    }

    /// The nodes `CompactRange::append` reports for leaves `[from, to)`.
    fn batch_nodes(leaves: &[Hash], from: u64, to: u64) -> Vec<(NodeId, Hash)> {
        let mut range = merklog_merkle::CompactRange::new();
        let mut nodes = Vec::new();
        for (i, leaf) in leaves[..to as usize].iter().enumerate() {
            range.append(*leaf, |id, hash| {
                if i as u64 >= from && id.level > 0 {
                    nodes.push((id, hash));
                }
            });
        }
        nodes
    }

    #[test]
    fn takes_the_nodes_of_committed_batches_in_order() {
        let leaves = leaves(3000);
        // Room for 500 nodes: from level 1 up to 500 leaves (494 nodes),
        // from level 4 up at 3,000 (368 nodes; from level 3, 743).
        let cache = NodeCache::new(500 * 32);
        let mut size = 0;
        for to in [1, 2, 7, 100, 999, 1000, 1500, 3000] {
            assert!(cache.extend_committed(size, to, &batch_nodes(&leaves, size, to)));
            size = to;
            assert_eq!(cache.size(), size);
            check(&cache, &leaves);
        }
        assert_eq!(cache.lowest_level(), 4);
    }

    #[test]
    fn refuses_a_batch_that_does_not_follow_or_lacks_a_node() {
        let leaves = leaves(300);
        let cache = NodeCache::new(1 << 20);
        assert!(cache.extend_committed(0, 100, &batch_nodes(&leaves, 0, 100)));
        // Leaves 100..200 were never seen: 200..300 cannot follow.
        assert!(!cache.extend_committed(200, 300, &batch_nodes(&leaves, 200, 300)));
        let mut nodes = batch_nodes(&leaves, 100, 300);
        nodes.remove(nodes.len() / 2);
        assert!(!cache.extend_committed(100, 300, &nodes));
        assert_eq!(cache.size(), 100);
        check(&cache, &leaves);
        assert!(cache.extend_committed(100, 300, &batch_nodes(&leaves, 100, 300)));
        check(&cache, &leaves);
    }

    /// The filler follows the head a follower serves and reads exactly the
    /// stored nodes.
    #[tokio::test]
    async fn the_filler_follows_the_served_head_from_the_store() {
        use crate::leadership::FollowerView;
        use merklog_storage::testing::{temp_sqlite, TestLog};
        use merklog_storage::SqliteStore;

        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let mut log = TestLog::new();
        let mut leaf_hashes = Vec::new();
        let (role_tx, role) = watch::channel(InstanceRole::Follower(FollowerView {
            latest: None,
            leader: None,
            read_only: true,
        }));
        // Room for 300 nodes: from level 1 up to 157 leaves (152 nodes),
        // from level 4 up at 2,000 leaves (244 nodes; from level 3, 494).
        let cache = Arc::new(NodeCache::new(300 * 32));
        let _filler = spawn_filler(
            cache.clone(),
            store.clone(),
            role,
            &crate::tasks::Tasks::new().0,
        )
        .unwrap();
        for (batch_size, lowest) in [(100, 1), (57, 1), (1843, 4)] {
            let batch = log.next_batch(batch_size, 40);
            leaf_hashes.extend(batch.leaves.iter().map(|l| l.leaf_hash()));
            store.append_batch(&batch).await.unwrap();
            role_tx.send_replace(InstanceRole::Follower(FollowerView {
                latest: Some(batch.tree_head.clone()),
                leader: None,
                read_only: true,
            }));
            let size = batch.tree_head.head.tree_size;
            tokio::time::timeout(Duration::from_secs(10), async {
                while cache.size() < size {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the filler catches up within 10 s");
            assert_eq!(cache.size(), size);
            assert_eq!(cache.lowest_level(), lowest);
            check(&cache, &leaf_hashes);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_the_definition_whatever_the_steps(
            targets in proptest::collection::vec(1u64..600, 1..6),
            max_nodes in 0u64..700,
        ) {
            let leaves = leaves(600);
            let cache = NodeCache::new(max_nodes as usize * 32);
            let mut targets = targets;
            targets.sort_unstable();
            for target in targets {
                fill(&cache, &leaves, target);
                check(&cache, &leaves);
            }
        }
    }
}
