//! A stale leader on PostgreSQL (issue 22): a leader whose batch is in
//! flight loses its lock session without noticing (its lease check does not
//! run: a pause, a partition), a new leader takes over and commits, and
//! then the old batch reaches the database. The old batch must not commit:
//! no fork, no acknowledged entry lost, and the final tree verifies against
//! every head ever stored.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use merklog_merkle::{leaf_hash, merkle_tree_hash, Hash};
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_proto::{hash_from_wire, required_sth};
use merklog_server::{Deployment, Polling, SequencerConfig, ServerConfig};
use merklog_sth::{LogSigner, PublicKey};
use merklog_storage::testing::{AppendHook, HookedStore};
use merklog_storage::{Batch, LogStore};
use merklog_tests::{TestDb, TestServer};
use sqlx::Connection;
use tokio::sync::Notify;
use tonic::transport::Channel;

/// Holds the first batch written after it is armed until released, and
/// passes leader election through.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    /// Signalled when the held batch reaches the gate.
    held: Notify,
    release: Notify,
    /// The first index of the held batch.
    held_at: std::sync::Mutex<Option<u64>>,
    /// Writes attempted after the release (the held one, and any retry).
    writes_after_release: AtomicU32,
}

impl AppendHook for Gate {
    async fn before(&self, batch: &Batch) -> merklog_storage::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            *self.held_at.lock().unwrap() = Some(batch.first_index);
            self.held.notify_one();
            self.release.notified().await;
        }
        if self.held_at.lock().unwrap().is_some() {
            self.writes_after_release.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn leader_election(&self) -> bool {
        true
    }
}

fn config(advertise: &str, poll: Duration) -> ServerConfig {
    ServerConfig {
        deployment: Deployment::LeaderElection {
            advertise: advertise.to_owned(),
        },
        polling: Polling { interval: poll },
        sequencer: SequencerConfig {
            max_batch_delay: Duration::ZERO,
            ..SequencerConfig::default()
        },
        ..ServerConfig::default()
    }
}

/// An acknowledged entry: what the client was told.
#[derive(Debug, Clone)]
struct Ack {
    index: u64,
    leaf_hash: Hash,
    data: Vec<u8>,
}

async fn append(
    client: &mut LogClient<Channel>,
    key: &PublicKey,
    data: &[u8],
) -> Result<Ack, tonic::Status> {
    let reply = client
        .append(v1::AppendRequest {
            entries: vec![data.to_vec()],
        })
        .await?
        .into_inner();
    let head = required_sth(reply.tree_head.as_ref(), "tree_head").unwrap();
    key.verify(&head)
        .expect("an acknowledged head is signed by the log");
    let e = &reply.entries[0];
    let hash = hash_from_wire(&e.leaf_hash, "leaf_hash").unwrap();
    assert_eq!(hash, leaf_hash(data));
    Ok(Ack {
        index: e.leaf_index,
        leaf_hash: hash,
        data: data.to_vec(),
    })
}

/// Appends `data` to the instance of `client` until it is acknowledged
/// (the instance leads); any refusal but UNAVAILABLE (a follower's) fails
/// the test. Panics after 30 s.
async fn append_once_leading(client: &mut LogClient<Channel>, key: &PublicKey, data: &[u8]) -> Ack {
    for _ in 0..600 {
        match append(client, key, data).await {
            Ok(ack) => return ack,
            Err(s) if s.code() == tonic::Code::Unavailable => {}
            Err(s) => panic!("an append to a would-be leader answered {s:?}"),
        }
        // Polling for the takeover, not synchronising with it: the instance
        // reports when it leads by accepting the append.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the instance did not lead within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_leaders_batch_is_refused_after_a_takeover() {
    let db = TestDb::postgres().await;
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let key = signer.public_key().clone();

    // The old leader never checks its lease during the test (poll interval
    // of an hour): it goes on believing it leads, as a paused or
    // partitioned one would.
    let old_store = Arc::new(HookedStore {
        inner: db.open().await.unwrap(),
        hook: Gate::default(),
    });
    let old = TestServer::start(
        old_store.clone(),
        signer.clone(),
        config("http://old.invalid", Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let mut old_client = old.client().await.unwrap();
    let mut acks = Vec::new();
    for i in 0..3 {
        acks.push(append_once_leading(&mut old_client, &key, format!("old {i}").as_bytes()).await);
    }

    let new = TestServer::start(
        Arc::new(db.open().await.unwrap()),
        signer.clone(),
        config("http://new.invalid", Duration::from_millis(50)),
    )
    .await
    .unwrap();
    let mut new_client = new.client().await.unwrap();
    let refusal = append(&mut new_client, &key, b"refused")
        .await
        .expect_err("the new instance follows while the old one holds the lock");
    assert_eq!(refusal.code(), tonic::Code::Unavailable, "{refusal:?}");

    // The old leader's next batch is held on its way to the database.
    old_store.hook.armed.store(true, Ordering::SeqCst);
    let held = old_store.hook.held.notified();
    let stale_append = {
        let mut client = old_client.clone();
        tokio::spawn(async move {
            client
                .append(v1::AppendRequest {
                    entries: vec![b"stale 0".to_vec(), b"stale 1".to_vec()],
                })
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(30), held)
        .await
        .expect("the stale batch reaches the gate");
    assert_eq!(*old_store.hook.held_at.lock().unwrap(), Some(3));

    // Only the old leader's lock session is cut; its pool (which writes the
    // batch) stays up.
    let TestDb::Postgres(_, guard) = &db else {
        unreachable!("a PostgreSQL database")
    };
    let mut admin = sqlx::PgConnection::connect(guard.admin_url())
        .await
        .unwrap();
    let lock_sessions: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'merklog-leader'",
    )
    .bind(guard.name())
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        lock_sessions.len(),
        1,
        "only the old leader holds a lock session"
    );
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(lock_sessions[0])
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended);

    // The new leader takes over and commits at the indexes the held batch
    // was built for (3 and 4) and past them.
    for i in 0..3 {
        acks.push(append_once_leading(&mut new_client, &key, format!("new {i}").as_bytes()).await);
    }
    assert_eq!(
        acks.iter().map(|a| a.index).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    let term = db
        .open()
        .await
        .unwrap()
        .leader_term()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(term.address, "http://new.invalid");
    assert!(term.lock_held);

    // The held batch now reaches the database, and is refused.
    old_store.hook.release.notify_one();
    let stale = tokio::time::timeout(Duration::from_secs(30), stale_append)
        .await
        .expect("the stale append is answered")
        .unwrap();
    let status = stale.expect_err("the stale leader's batch must not be acknowledged");
    assert!(
        old_store.hook.writes_after_release.load(Ordering::SeqCst) >= 1,
        "the held batch was written to the database"
    );
    // Refused by the store: the new leader holds the indexes the batch was
    // built for (the leaves' primary key), so it commits nothing.
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .contains("another instance appended to the log first"),
        "{status:?}"
    );

    // The final log: every acknowledged entry at its index with its leaf
    // hash, no stale entry, and every head ever stored (either leader's)
    // is the root of a prefix of the same leaves.
    let store = db.open().await.unwrap();
    let latest = store.latest_tree_head().await.unwrap().unwrap();
    key.verify(&latest).unwrap();
    let n = latest.head.tree_size;
    assert_eq!(n, 6, "nothing but the acknowledged entries was stored");
    let entries = store.entries(0, n).await.unwrap();
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(&e.entry)).collect();
    for ack in &acks {
        let e = &entries[ack.index as usize];
        assert_eq!(e.entry, ack.data, "acknowledged entry {} moved", ack.index);
        assert_eq!(leaves[ack.index as usize], ack.leaf_hash);
    }
    assert!(entries.iter().all(|e| !e.entry.starts_with(b"stale")));
    let heads = store.tree_heads(None, 1000).await.unwrap();
    assert!(
        heads.len() >= 7,
        "a head per acknowledged append and the empty one"
    );
    for head in &heads {
        key.verify(head).unwrap();
        let size = head.head.tree_size as usize;
        assert_eq!(
            merkle_tree_hash(&leaves[..size]),
            head.head.root_hash,
            "the stored head of size {size} is not a prefix of the final tree: a fork"
        );
    }
    // The new leader serves that same head.
    let served = new_client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(served.tree_size, n);
    assert_eq!(served.root_hash, latest.head.root_hash.0.to_vec());

    old.stop().await.unwrap();
    new.stop().await.unwrap();
}
