//! Store reads of concurrent proofs, merged into one query.
//!
//! Under load, dozens of proofs wait on the store at once, each for the few
//! rows below the node cache. A query costs the store and the service far
//! more per statement (a round trip, a bind, an execute) than per row, so
//! the reads that queue while [`MAX_IN_FLIGHT`] queries run go out together
//! as one. An idle service sends each read at once: merging adds no delay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use merklog_merkle::{Hash, NodeId};
use merklog_storage::{LogStore, StorageError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::status::ServiceError;
use crate::tasks::Tasks;

/// How many merged queries may run at once.
const MAX_IN_FLIGHT: usize = 2;

/// The most reads merged into one query (about 5 to 25 nodes each).
const MAX_MERGED: usize = 128;

type Reply = oneshot::Sender<Result<Vec<Hash>, StorageError>>;

struct Read {
    ids: Vec<NodeId>,
    reply: Reply,
}

/// A handle for reading node hashes through the merging task.
pub(crate) struct NodeReads {
    reads: mpsc::UnboundedSender<Read>,
    /// The store queries the reads took so far (also the metric
    /// [`PROOF_NODE_QUERIES`](crate::metrics::PROOF_NODE_QUERIES)).
    #[cfg(test)]
    queries: Arc<AtomicU64>,
}

impl NodeReads {
    /// Starts the task that merges reads from `store`, and its queries,
    /// through `tasks`; it ends once the handle is dropped and the reads in
    /// flight are answered.
    pub(crate) fn start<S: LogStore + Send + Sync + 'static>(store: Arc<S>, tasks: &Tasks) -> Self {
        let (reads, queue) = mpsc::unbounded_channel();
        let queries = Arc::new(AtomicU64::new(0));
        tasks.spawn(
            "proof node reads",
            merge(store, queue, queries.clone(), tasks.clone()),
        );
        NodeReads {
            reads,
            #[cfg(test)]
            queries,
        }
    }

    /// Reads the hashes of `ids`, in order, as
    /// [`LogStore::node_hashes`] does.
    pub(crate) async fn node_hashes(&self, ids: Vec<NodeId>) -> Result<Vec<Hash>, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ServiceError::Unavailable("the service is shutting down".into());
        self.reads
            .send(Read { ids, reply })
            .map_err(|_| stopped())?;
        Ok(answer.await.map_err(|_| stopped())??)
    }

    /// How many store queries the reads took so far.
    #[cfg(test)]
    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

async fn merge<S: LogStore + Send + Sync + 'static>(
    store: Arc<S>,
    mut queue: mpsc::UnboundedReceiver<Read>,
    queries: Arc<AtomicU64>,
    tasks: Tasks,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut reads = vec![first];
        while reads.len() < MAX_MERGED {
            match queue.try_recv() {
                Ok(read) => reads.push(read),
                Err(_) => break,
            }
        }
        let store = store.clone();
        let queries = queries.clone();
        tasks.spawn("proof node reads", async move {
            answer(store.as_ref(), reads, &queries).await;
            drop(slot);
        });
    }
}

/// Answers `reads` with one query; if it fails, each read on its own, so
/// that every caller gets its own answer or error.
async fn answer<S: LogStore>(store: &S, reads: Vec<Read>, queries: &AtomicU64) {
    if reads.len() > 1 {
        let all: Vec<NodeId> = reads.iter().flat_map(|r| r.ids.iter().copied()).collect();
        counted(queries);
        if let Ok(hashes) = store.node_hashes(&all).await {
            let mut hashes = hashes.into_iter();
            for read in reads {
                let mine: Vec<Hash> = hashes.by_ref().take(read.ids.len()).collect();
                let _ = read.reply.send(Ok(mine));
            }
            return;
        }
    }
    for read in reads {
        counted(queries);
        let _ = read.reply.send(store.node_hashes(&read.ids).await);
    }
}

fn counted(queries: &AtomicU64) {
    queries.fetch_add(1, Ordering::Relaxed);
    crate::metrics::proof_node_query();
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_storage::testing::{temp_sqlite, TestLog};
    use merklog_storage::SqliteStore;

    /// 300 reads queued at once (a current-thread runtime runs the merging
    /// task only once all are sent) take 3 queries of at most 128, and each
    /// gets exactly what a read of its own would; a read of a node that is
    /// not stored fails alone.
    #[tokio::test(flavor = "current_thread")]
    async fn queued_reads_share_queries_and_keep_their_own_answers() {
        let (path, _dir) = temp_sqlite();
        let store = Arc::new(SqliteStore::open_path(&path).await.unwrap());
        let mut log = TestLog::new();
        store.append_batch(&log.next_batch(1000, 40)).await.unwrap();
        let reads = NodeReads::start(store.clone(), &Tasks::new().0);
        let wanted: Vec<Vec<NodeId>> = (0..300u64)
            .map(|i| {
                if i == 299 {
                    vec![NodeId::leaf(7), NodeId::leaf(5000)]
                } else {
                    vec![
                        NodeId::leaf(i * 3),
                        NodeId::new(1, i),
                        NodeId::new(3, i % 125),
                    ]
                }
            })
            .collect();
        let answers =
            futures::future::join_all(wanted.iter().map(|ids| reads.node_hashes(ids.clone())))
                .await;
        for (ids, answer) in wanted.iter().zip(answers) {
            match store.node_hashes(ids).await {
                Ok(expected) => assert_eq!(answer.unwrap(), expected, "{ids:?}"),
                Err(_) => assert!(
                    matches!(answer, Err(ServiceError::DataLoss(_))),
                    "{answer:?}"
                ),
            }
        }
        // 128 + 128 merged; the query of the last 44, holding the missing
        // node, fails and its reads go one by one: 3 + 44.
        assert_eq!(reads.queries(), 3 + 44);
    }
}
