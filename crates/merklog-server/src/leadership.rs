//! Who sequences: this instance alone, whichever of several instances holds
//! the leader lock, or nobody here (a read-only instance).
//!
//! The service reads the current [`InstanceRole`] from a watch channel for every
//! request: a leader appends through its sequencer, a follower refuses
//! appends with UNAVAILABLE naming the leader, and both serve reads. A
//! follower learns the latest signed tree head by polling the store and
//! checking the head's signature before serving it.

use std::sync::Arc;
use std::time::Duration;

use merklog_sth::{LogSigner, PublicKey, SignedTreeHead};
use merklog_storage::{LeaderLease, LogStore, StorageError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{Deployment, SequencerConfig, ServerConfig};
use crate::node_cache::NodeCache;
use crate::sequencer::{Sequencer, SequencerHandle, StartupError};
use crate::status::ServiceError;
use crate::ServeError;

/// What this instance does with appends right now.
#[derive(Clone)]
pub enum InstanceRole {
    /// This instance sequences: appends go to its sequencer.
    Leader(SequencerHandle),
    /// Another instance sequences, or none does for the moment; this one
    /// serves reads of what is committed.
    Follower(FollowerView),
}

/// What a follower knows of the log and its leader.
#[derive(Clone, Debug)]
pub struct FollowerView {
    /// The latest signed tree head read from the store, signature checked;
    /// `None` until a leader has started the log.
    pub latest: Option<SignedTreeHead>,
    /// Where the leader is, when one holds the lock.
    pub leader: Option<String>,
    /// This instance never sequences (`--read-only`).
    pub read_only: bool,
}

impl InstanceRole {
    /// Returns the latest signed tree head this instance serves.
    pub fn latest(&self) -> Option<SignedTreeHead> {
        match self {
            InstanceRole::Leader(sequencer) => Some(sequencer.latest()),
            InstanceRole::Follower(view) => view.latest.clone(),
        }
    }

    /// Returns the sequencer to append through, or why there is none here.
    ///
    /// # Errors
    /// [`ServiceError::NotLeader`] on a follower.
    pub fn sequencer(&self) -> Result<SequencerHandle, ServiceError> {
        match self {
            InstanceRole::Leader(sequencer) => Ok(sequencer.clone()),
            InstanceRole::Follower(view) => Err(ServiceError::NotLeader {
                leader: view.leader.clone(),
                read_only: view.read_only,
            }),
        }
    }
}

/// The log's keys as one instance holds them: a read-only instance needs
/// only the public key.
#[derive(Clone)]
pub struct LogKeys {
    pub public: PublicKey,
    pub signer: Option<LogSigner>,
}

impl From<LogSigner> for LogKeys {
    fn from(signer: LogSigner) -> Self {
        LogKeys {
            public: signer.public_key().clone(),
            signer: Some(signer),
        }
    }
}

impl From<PublicKey> for LogKeys {
    fn from(public: PublicKey) -> Self {
        LogKeys {
            public,
            signer: None,
        }
    }
}

/// How often a follower polls the store, and a leader checks its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polling {
    pub interval: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            interval: Duration::from_millis(500),
        }
    }
}

/// Reads the latest stored head, if any, and checks it was signed by `key`.
///
/// # Errors
/// [`StartupError::Storage`] when the store cannot be read;
/// [`StartupError::Inconsistent`] when the head is not signed by `key`.
pub async fn read_verified_head<S: LogStore>(
    store: &S,
    key: &PublicKey,
) -> Result<Option<SignedTreeHead>, StartupError> {
    let Some(head) = store.latest_tree_head().await? else {
        return Ok(None);
    };
    key.verify(&head).map_err(|e| {
        StartupError::Inconsistent(format!(
            "the latest tree head (size {}) is not signed by the log key (log ID {}): {e}",
            head.head.tree_size,
            key.log_id()
        ))
    })?;
    Ok(Some(head))
}

/// Everything a follower or candidate leader needs.
pub(crate) struct Coordinator<S> {
    pub store: Arc<S>,
    pub key: PublicKey,
    /// `None` on a read-only instance: it can never lead.
    pub signer: Option<LogSigner>,
    pub clock: Arc<dyn Clock>,
    pub sequencer: SequencerConfig,
    pub advertise: String,
    pub polling: Polling,
    pub role: watch::Sender<InstanceRole>,
    pub node_cache: Arc<NodeCache>,
}

impl<S: LogStore + Send + Sync + 'static> Coordinator<S> {
    /// Follows, and leads whenever it holds the lock, until `stop` turns
    /// true; then hands back the lead and lets the batch in flight finish.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            if let Some(signer) = &self.signer {
                match self.store.try_lead(&self.advertise).await {
                    Ok(Some(lease)) => {
                        self.lead(signer.clone(), lease, &mut stop).await;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot try for the leader lock"),
                }
            }
            self.refresh_view().await;
            self.pause(&mut stop).await;
        }
    }

    /// Waits one poll interval, or less if `stop` changes.
    async fn pause(&self, stop: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(self.polling.interval) => {}
        }
    }

    /// Publishes the latest stored head and the leader's address.
    async fn refresh_view(&self) {
        let latest = match read_verified_head(self.store.as_ref(), &self.key).await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the latest tree head");
                None
            }
        };
        let leader = match self.store.leader_term().await {
            Ok(term) => term.and_then(|t| {
                // A replica sees no locks: it names the last known leader.
                (t.lock_held || self.signer.is_none()).then_some(t.address)
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the leader's address");
                None
            }
        };
        let read_only = self.signer.is_none();
        self.role.send_modify(|role| {
            let served = role.latest();
            // Never step back to an older head than this instance served
            // (a replica that fell behind, a store restored from backup):
            // callers would take it for a rollback of the log.
            let latest = match (latest, served) {
                (Some(new), Some(old)) if new.head.tree_size < old.head.tree_size => {
                    tracing::warn!(
                        stored = new.head.tree_size,
                        served = old.head.tree_size,
                        "the store's latest head is older than the one served; keeping it"
                    );
                    Some(old)
                }
                (new, old) => new.or(old),
            };
            *role = InstanceRole::Follower(FollowerView {
                latest,
                leader,
                read_only,
            });
        });
    }

    /// Follows a standalone instance's start-up, which took the lock and
    /// started the sequencer itself (failing the start-up if it could not):
    /// sequences while `lease` holds, and if it is lost (a database
    /// restart) goes on as a coordinator that takes it back once it can.
    pub async fn run_leading(
        self,
        lease: LeaderLease,
        sequencer: (SequencerHandle, JoinHandle<()>),
        mut stop: watch::Receiver<bool>,
    ) {
        self.hold(lease, sequencer, &mut stop).await;
        self.run(stop).await;
    }

    /// Sequences while `lease` holds; returns when it is lost or `stop`
    /// turns true.
    async fn lead(&self, signer: LogSigner, lease: LeaderLease, stop: &mut watch::Receiver<bool>) {
        let started = Sequencer::start(
            self.store.clone(),
            signer,
            self.clock.clone(),
            self.sequencer.clone(),
            self.node_cache.clone(),
        )
        .await;
        match started {
            Ok(sequencer) => self.hold(lease, sequencer, stop).await,
            Err(e) => {
                tracing::error!(term = lease.term(), error = %e, "took the leader lock but cannot sequence; giving it up");
                lease.release().await;
                self.pause(stop).await;
            }
        }
    }

    /// Serves appends through `sequencer` while `lease` holds; returns when
    /// it is lost or `stop` turns true.
    async fn hold(
        &self,
        mut lease: LeaderLease,
        (handle, task): (SequencerHandle, JoinHandle<()>),
        stop: &mut watch::Receiver<bool>,
    ) {
        let term = lease.term();
        tracing::info!(term, address = %self.advertise, tree_size = handle.latest().head.tree_size, "leading: this instance sequences appends");
        crate::metrics::leader(true);
        self.role.send_replace(InstanceRole::Leader(handle.clone()));
        let stopping = loop {
            tokio::select! {
                _ = stop.changed() => break true,
                () = tokio::time::sleep(self.polling.interval) => {
                    if let Err(e) = lease.check().await {
                        tracing::error!(term, error = %e, "lost the lead; no more appends here");
                        break false;
                    }
                }
            }
        };
        crate::metrics::leader(false);
        self.role.send_replace(InstanceRole::Follower(FollowerView {
            latest: Some(handle.latest()),
            leader: None,
            read_only: false,
        }));
        drop(handle);
        if stopping {
            // Let the batch in flight commit and answer its callers before
            // the lock goes: the next leader starts from what is committed.
            if let Err(e) = task.await {
                if e.is_panic() {
                    // The instance is stopping: hand the panic on, so that
                    // `Running::finish` reports it instead of a clean stop.
                    lease.release().await;
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        } else {
            // Another instance may lead already: stop at once. A commit cut
            // short is rolled back, or refused by the schema if it races the
            // new leader's first batch.
            task.abort();
            let _ = task.await;
        }
        lease.release().await;
    }
}

/// What runs beside the transport: the sequencer of a standalone instance,
/// or the coordinator that follows and leads.
pub(crate) enum Running {
    /// A standalone instance on a store without a leader lock (an
    /// in-memory SQLite database, a test's store).
    Standalone {
        role: watch::Sender<InstanceRole>,
        sequencer: JoinHandle<()>,
    },
    Coordinated {
        stop: watch::Sender<bool>,
        coordinator: JoinHandle<()>,
    },
}

impl Running {
    /// Starts what `config.deployment` asks for and returns the role the
    /// service reads.
    pub(crate) async fn start<S: LogStore + Send + Sync + 'static>(
        config: &ServerConfig,
        keys: &LogKeys,
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        local: Option<std::net::SocketAddr>,
        node_cache: Arc<NodeCache>,
    ) -> Result<(watch::Receiver<InstanceRole>, Running), ServeError> {
        // A standalone instance takes the lock and starts sequencing here,
        // failing the start-up if it cannot; every instance on PostgreSQL
        // then runs the coordinator, which for a standalone one keeps the
        // lock as an elected leader does: it checks the lock every poll
        // interval and, should its session break (a database restart),
        // stops appending until it holds the lock again.
        let (role, role_rx, signer, advertise, leading) =
            match (&config.deployment, keys.signer.clone()) {
                (Deployment::Standalone, Some(signer)) => {
                    let address =
                        local.map_or_else(|| "unknown".to_owned(), |a| format!("http://{a}"));
                    let lease = take_sole_lead(store.as_ref(), &address).await?;
                    let (sequencer, task) = Sequencer::start(
                        store.clone(),
                        signer.clone(),
                        clock.clone(),
                        config.sequencer.clone(),
                        node_cache.clone(),
                    )
                    .await?;
                    crate::metrics::leader(true);
                    let (role, role_rx) = watch::channel(InstanceRole::Leader(sequencer.clone()));
                    let Some(lease) = lease else {
                        let running = Running::Standalone {
                            role,
                            sequencer: task,
                        };
                        return Ok((role_rx, running));
                    };
                    let leading = Some((lease, (sequencer, task)));
                    (role, role_rx, Some(signer), address, leading)
                }
                (Deployment::Standalone | Deployment::LeaderElection { .. }, None) => {
                    return Err(ServeError::Config(
                        "an instance that may sequence needs the log's private key".into(),
                    ));
                }
                (deployment, signer) => {
                    // A head that this key did not sign is refused before
                    // serving, as the sequencer's start-up checks would.
                    let latest = read_verified_head(store.as_ref(), &keys.public).await?;
                    let (role, role_rx) = watch::channel(InstanceRole::Follower(FollowerView {
                        latest,
                        leader: None,
                        read_only: signer.is_none(),
                    }));
                    let advertise = match deployment {
                        Deployment::LeaderElection { advertise } => advertise.clone(),
                        _ => String::new(),
                    };
                    (role, role_rx, signer, advertise, None)
                }
            };
        let coordinator = Coordinator {
            store,
            key: keys.public.clone(),
            signer,
            clock,
            sequencer: config.sequencer.clone(),
            advertise,
            polling: config.polling,
            role,
            node_cache,
        };
        let (stop, stop_rx) = watch::channel(false);
        let task = match leading {
            Some((lease, sequencer)) => {
                tokio::spawn(coordinator.run_leading(lease, sequencer, stop_rx))
            }
            None => tokio::spawn(coordinator.run(stop_rx)),
        };
        let running = Running::Coordinated {
            stop,
            coordinator: task,
        };
        Ok((role_rx, running))
    }

    /// Lets the batch in flight commit, then gives up the lead. Call once
    /// the transport has stopped (and dropped the service).
    ///
    /// # Errors
    /// [`ServeError::TaskPanicked`] when the sequencer (or the coordinator
    /// that ran it) panicked: its callers were failed, and a stop that
    /// looked clean would hide it.
    pub(crate) async fn finish(self) -> Result<(), ServeError> {
        let (task, ended) = match self {
            Running::Standalone { role, sequencer } => {
                // With the role's sender gone, nothing holds a sender to the
                // sequencer: it drains what is queued and exits.
                drop(role);
                ("sequencer", sequencer.await)
            }
            Running::Coordinated { stop, coordinator } => {
                let _ = stop.send(true);
                ("coordinator or sequencer", coordinator.await)
            }
        };
        match ended {
            Err(e) if e.is_panic() => Err(ServeError::TaskPanicked {
                task,
                message: panic_message(e.into_panic()),
            }),
            _ => Ok(()),
        }
    }
}

/// The text of a panic's payload, when it has one.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |text| (*text).to_owned()),
    }
}

/// Takes the leader lock for a standalone instance, so that a second one
/// started on the same database by mistake refuses to start (after 5 s on
/// PostgreSQL, at once on a SQLite file's lock) instead of failing every
/// batch of the first, or, on SQLite, serving heads of its own. `None` on
/// a store without leader election (an in-memory SQLite database).
async fn take_sole_lead<S: LogStore>(
    store: &S,
    address: &str,
) -> Result<Option<LeaderLease>, ServeError> {
    // A predecessor killed a moment ago holds the lock until PostgreSQL
    // notices its session is gone: give it a few seconds.
    for _ in 0..SOLE_LEAD_ATTEMPTS {
        match store.try_lead(address).await {
            Ok(Some(lease)) => return Ok(Some(lease)),
            Err(StorageError::Unsupported { .. }) => return Ok(None),
            // The kernel frees a file lock when its process dies: no grace.
            Err(e @ StorageError::StoreLocked { .. }) => {
                return Err(StartupError::Inconsistent(e.to_string()).into())
            }
            Err(e) => return Err(StartupError::Storage(e).into()),
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let holder = match store.leader_term().await {
        Ok(Some(term)) if term.lock_held => format!(" (term {} at {})", term.term, term.address),
        _ => String::new(),
    };
    Err(StartupError::Inconsistent(format!(
        "another instance sequences this log{holder}; stop it first, or run every \
         instance with --leader-election"
    ))
    .into())
}

/// How often a standalone instance tries for the lock, 100 ms apart.
const SOLE_LEAD_ATTEMPTS: u32 = 50;

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use merklog_merkle::{Hash, NodeId};
    use merklog_sth::TreeHead;
    use merklog_storage::{Batch, Entry, LeafNodes, Result};

    use super::*;

    /// A store whose latest head the test sets; nothing else is read by a
    /// follower's refresh.
    struct HeadOnly(Mutex<Option<SignedTreeHead>>);

    impl LogStore for HeadOnly {
        async fn append_batch(&self, _: &Batch) -> Result<()> {
            unreachable!("a follower does not append")
        }
        async fn node_hashes(&self, _: &[NodeId]) -> Result<Vec<Hash>> {
            unreachable!()
        }
        async fn entries(&self, _: u64, _: u64) -> Result<Vec<Entry>> {
            unreachable!()
        }
        async fn find_by_leaf_hash(&self, _: &[Hash]) -> Result<Vec<(Hash, u64)>> {
            unreachable!()
        }
        async fn leaf_count(&self) -> Result<u64> {
            unreachable!()
        }
        async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>> {
            Ok(self.0.lock().unwrap().clone())
        }
        async fn tree_head_at_size(&self, _: u64) -> Result<Option<SignedTreeHead>> {
            unreachable!()
        }
        async fn tree_heads(&self, _: Option<TreeHead>, _: u32) -> Result<Vec<SignedTreeHead>> {
            unreachable!()
        }
        async fn leaves_with_nodes(&self, _: u64, _: u64) -> Result<Vec<LeafNodes>> {
            unreachable!()
        }
        async fn leader_term(&self) -> Result<Option<merklog_storage::LeaderTerm>> {
            Ok(None)
        }
        async fn find_events_by_id(
            &self,
            _: &[String],
        ) -> Result<Vec<merklog_storage::StoredEventRef>> {
            unreachable!()
        }
        async fn search_events(
            &self,
            _: &merklog_storage::EventQuery,
            _: u64,
        ) -> Result<Vec<merklog_storage::EventHit>> {
            unreachable!()
        }
    }

    fn size_of(role: &watch::Receiver<InstanceRole>) -> Option<u64> {
        role.borrow().latest().map(|h| h.head.tree_size)
    }

    #[tokio::test]
    async fn a_follower_serves_newer_heads_but_never_an_older_one() {
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let head = |tree_size| {
            signer.sign(TreeHead {
                tree_size,
                timestamp_ms: tree_size,
                root_hash: Hash([tree_size as u8; 32]),
            })
        };
        let store = Arc::new(HeadOnly(Mutex::new(None)));
        let (role, role_rx) = watch::channel(InstanceRole::Follower(FollowerView {
            latest: None,
            leader: None,
            read_only: true,
        }));
        let coordinator = Coordinator {
            store: store.clone(),
            key: signer.public_key().clone(),
            signer: None,
            clock: Arc::new(crate::SystemClock),
            sequencer: SequencerConfig::default(),
            advertise: String::new(),
            polling: Polling::default(),
            role,
            node_cache: Arc::default(),
        };
        coordinator.refresh_view().await;
        assert_eq!(size_of(&role_rx), None, "no head stored yet");
        *store.0.lock().unwrap() = Some(head(5));
        coordinator.refresh_view().await;
        assert_eq!(size_of(&role_rx), Some(5));
        // The store falls behind (a lagging replica, a restore).
        *store.0.lock().unwrap() = Some(head(3));
        coordinator.refresh_view().await;
        assert_eq!(size_of(&role_rx), Some(5));
        *store.0.lock().unwrap() = Some(head(8));
        coordinator.refresh_view().await;
        assert_eq!(size_of(&role_rx), Some(8));
        // A head this key did not sign is never served.
        let other = LogSigner::generate(&mut rand_core::OsRng);
        *store.0.lock().unwrap() = Some(other.sign(TreeHead {
            tree_size: 9,
            timestamp_ms: 9,
            root_hash: Hash([9; 32]),
        }));
        coordinator.refresh_view().await;
        assert_eq!(size_of(&role_rx), Some(8));
    }
}
