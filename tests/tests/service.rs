//! End-to-end tests of the log service over real gRPC connections, each run
//! on the embedded SQLite store and on PostgreSQL (`DATABASE_URL`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use merklog_merkle::{leaf_hash, verify_consistency, verify_inclusion, Hash};
use merklog_proto::v1::{self, get_inclusion_proof_request::Leaf, log_client::LogClient};
use merklog_proto::{hash_from_wire, hashes_from_wire, sth_from_wire};
use merklog_server::ServerConfig;
use merklog_sth::{LogSigner, PublicKey, SignedTreeHead};
use merklog_storage::testing::{AppendHook, HookedStore};
use merklog_storage::{Batch, LogStore, StorageError};
use merklog_tests::{TestDb, TestServer};
use tonic::transport::Channel;
use tonic::Code;

fn signer() -> LogSigner {
    LogSigner::generate(&mut rand_core::OsRng)
}

/// Checks a head's signature and returns it as a domain value.
fn verified_head(key: &PublicKey, wire: Option<&v1::SignedTreeHead>) -> SignedTreeHead {
    let sth = merklog_proto::required_sth(wire, "tree_head").unwrap();
    key.verify(&sth).expect("tree head signature verifies");
    assert_eq!(wire.unwrap().log_id, key.log_id().0.to_vec());
    sth
}

/// Appends `entry` alone and verifies everything in the answer.
async fn append_verified(
    client: &mut LogClient<Channel>,
    key: &PublicKey,
    entries: Vec<Vec<u8>>,
) -> (Vec<(u64, bool)>, SignedTreeHead) {
    let resp = client
        .append(v1::AppendRequest {
            entries: entries.clone(),
        })
        .await
        .expect("append succeeds")
        .into_inner();
    let sth = verified_head(key, resp.tree_head.as_ref());
    assert_eq!(resp.entries.len(), entries.len());
    let mut out = Vec::new();
    for (entry, appended) in entries.iter().zip(&resp.entries) {
        let hash = hash_from_wire(&appended.leaf_hash, "leaf_hash").unwrap();
        assert_eq!(hash, leaf_hash(entry));
        let proof = hashes_from_wire(&appended.inclusion_proof, "proof").unwrap();
        verify_inclusion(
            appended.leaf_index,
            sth.head.tree_size,
            &hash,
            &proof,
            &sth.head.root_hash,
        )
        .expect("inclusion proof verifies against the returned head");
        out.push((appended.leaf_index, appended.duplicate));
    }
    (out, sth)
}

/// Checks that every head is consistent with the next larger one and with
/// the last; consistency is transitive, so this covers every pair.
async fn check_heads_consistent(client: &mut LogClient<Channel>, heads: &[SignedTreeHead]) {
    let mut by_size: BTreeMap<u64, Hash> = BTreeMap::new();
    for h in heads {
        if let Some(previous) = by_size.insert(h.head.tree_size, h.head.root_hash) {
            assert_eq!(
                previous, h.head.root_hash,
                "two roots at size {}",
                h.head.tree_size
            );
        }
    }
    let sizes: Vec<(u64, Hash)> = by_size.into_iter().collect();
    let last = *sizes.last().unwrap();
    let pairs = sizes
        .windows(2)
        .map(|w| (w[0], w[1]))
        .chain(sizes.iter().map(|&s| (s, last)));
    for ((m, first_root), (n, second_root)) in pairs {
        let resp = client
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                first_size: m,
                second_size: n,
            })
            .await
            .unwrap()
            .into_inner();
        let proof = hashes_from_wire(&resp.proof, "proof").unwrap();
        verify_consistency(m, n, &first_root, &second_root, &proof)
            .unwrap_or_else(|e| panic!("consistency {m} -> {n}: {e}"));
    }
}

fn entry(client: usize, i: usize) -> Vec<u8> {
    format!("client {client} record {i} {}", "x".repeat(200)).into_bytes()
}

async fn concurrent_appends_all_verify(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(db.open().await.unwrap());
    let server = TestServer::start(store, signer.clone(), ServerConfig::default())
        .await
        .unwrap();
    const CLIENTS: usize = 50;
    const PER_CLIENT: usize = 200;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = server.client().await.unwrap();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for i in 0..PER_CLIENT {
                let (placed, sth) = append_verified(&mut client, &key, vec![entry(c, i)]).await;
                assert!(!placed[0].1, "a new entry is not a duplicate");
                seen.push((placed[0].0, entry(c, i), sth));
            }
            seen
        }));
    }
    let mut by_index: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut heads = Vec::new();
    for t in tasks {
        for (index, data, sth) in t.await.unwrap() {
            assert!(
                by_index.insert(index, data).is_none(),
                "index {index} given twice"
            );
            heads.push(sth);
        }
    }
    let total = (CLIENTS * PER_CLIENT) as u64;
    assert_eq!(by_index.len() as u64, total);
    assert!(
        (0..total).all(|i| by_index.contains_key(&i)),
        "indexes are gap-free"
    );

    let mut client = server.client().await.unwrap();
    let latest = client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    let latest = verified_head(&key, Some(&latest));
    assert_eq!(latest.head.tree_size, total);
    heads.push(latest);
    check_heads_consistent(&mut client, &heads).await;

    // The stored entries are the acknowledged ones, at their indexes.
    let mut start = 0;
    while start < total {
        let page = client
            .get_entries(v1::GetEntriesRequest {
                start,
                end: start + 1000,
            })
            .await
            .unwrap()
            .into_inner();
        for e in &page.entries {
            assert_eq!(by_index[&e.leaf_index], e.data);
            assert_eq!(e.leaf_hash, leaf_hash(&e.data).0.to_vec());
        }
        start += page.entries.len() as u64;
    }
    server.stop().await.unwrap();
}

async fn restart_keeps_everything(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let mut acknowledged = Vec::new();
    let first_head;
    {
        let store = Arc::new(db.open().await.unwrap());
        let server = TestServer::start(store, signer.clone(), ServerConfig::default())
            .await
            .unwrap();
        let mut client = server.client().await.unwrap();
        for i in 0..30 {
            let data = vec![entry(0, i), entry(1, i)];
            let (placed, sth) = append_verified(&mut client, &key, data.clone()).await;
            for ((index, _), d) in placed.into_iter().zip(data) {
                acknowledged.push((index, d));
            }
            let _ = sth;
        }
        let head = client
            .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
            .await
            .unwrap()
            .into_inner();
        first_head = verified_head(&key, Some(&head));
        server.stop().await.unwrap();
    }
    // A server with another key refuses the log.
    let store = Arc::new(db.open().await.unwrap());
    let err = merklog_tests::start_error(store.clone(), LogSigner::generate(&mut rand_core::OsRng))
        .await
        .unwrap();
    assert!(
        err.to_string().contains("not signed by this server's key"),
        "unexpected error: {err}"
    );
    // The same key picks up where the log stopped.
    let server = TestServer::start(store, signer.clone(), ServerConfig::default())
        .await
        .unwrap();
    let mut client = server.client().await.unwrap();
    let head = client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified_head(&key, Some(&head)), first_head);
    let (placed, second_head) =
        append_verified(&mut client, &key, vec![b"after restart".to_vec()]).await;
    assert_eq!(placed[0].0, first_head.head.tree_size, "the tree continues");
    for (index, data) in &acknowledged {
        let got = client
            .get_entry_and_proof(v1::GetEntryAndProofRequest {
                leaf_index: *index,
                tree_size: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let e = got.entry.unwrap();
        assert_eq!(&e.data, data);
        let p = got.proof.unwrap();
        let proof = hashes_from_wire(&p.proof, "proof").unwrap();
        verify_inclusion(
            *index,
            p.tree_size,
            &leaf_hash(data),
            &proof,
            &second_head.head.root_hash,
        )
        .unwrap();
    }
    check_heads_consistent(&mut client, &[first_head, second_head]).await;
    server.stop().await.unwrap();
}

async fn duplicates_keep_their_index(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(db.open().await.unwrap());
    let server = TestServer::start(store, signer, ServerConfig::default())
        .await
        .unwrap();
    let mut client = server.client().await.unwrap();
    let (first, _) = append_verified(&mut client, &key, vec![b"a".to_vec(), b"b".to_vec()]).await;
    assert_eq!(first, vec![(0, false), (1, false)]);
    // Resubmitted alone, with a new entry, and twice in one call.
    let (again, sth) = append_verified(
        &mut client,
        &key,
        vec![b"b".to_vec(), b"c".to_vec(), b"c".to_vec(), b"a".to_vec()],
    )
    .await;
    assert_eq!(again, vec![(1, true), (2, false), (2, true), (0, true)]);
    assert_eq!(sth.head.tree_size, 3);
    // A call of duplicates only is answered with the current head.
    let (only, sth2) = append_verified(&mut client, &key, vec![b"a".to_vec()]).await;
    assert_eq!(only, vec![(0, true)]);
    assert_eq!(sth2.head.tree_size, 3);
    // By leaf hash.
    let proof = client
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafHash(leaf_hash(b"c").0.to_vec())),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.leaf_index, 2);
    server.stop().await.unwrap();
}

fn assert_status(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, words: &[&str]) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    for w in words {
        assert!(
            status.message().contains(w),
            "{:?} lacks {w:?}",
            status.message()
        );
    }
}

async fn bad_input_is_rejected_clearly(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(db.open().await.unwrap());
    let server = TestServer::start(store, signer, ServerConfig::default())
        .await
        .unwrap();
    // Appends keep flowing while the bad requests come in.
    let mut writer = server.client().await.unwrap();
    let key2 = key.clone();
    let background = tokio::spawn(async move {
        for i in 0..100 {
            append_verified(&mut writer, &key2, vec![entry(9, i)]).await;
        }
    });
    let mut c = server.client().await.unwrap();
    append_verified(&mut c, &key, vec![b"seed".to_vec()]).await;
    let big = vec![7u8; 64 * 1024 + 1];
    assert_status(
        c.append(v1::AppendRequest { entries: vec![] }).await,
        Code::InvalidArgument,
        &["entries", "at least one"],
    );
    assert_status(
        c.append(v1::AppendRequest {
            entries: vec![b"ok".to_vec(), vec![]],
        })
        .await,
        Code::InvalidArgument,
        &["entries[1]", "empty"],
    );
    assert_status(
        c.append(v1::AppendRequest { entries: vec![big] }).await,
        Code::InvalidArgument,
        &["entries[0]", "65537", "65536"],
    );
    assert_status(
        c.append(v1::AppendRequest {
            entries: (0..1001).map(|i: u32| i.to_be_bytes().to_vec()).collect(),
        })
        .await,
        Code::InvalidArgument,
        &["1001", "1000"],
    );
    let size = c
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner()
        .tree_size;
    assert_status(
        c.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafIndex(1 << 40)),
            tree_size: 0,
        })
        .await,
        Code::OutOfRange,
        &["leaf_index", "1099511627776"],
    );
    assert_status(
        c.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafIndex(0)),
            tree_size: 1 << 40,
        })
        .await,
        Code::OutOfRange,
        &["tree_size", "larger than"],
    );
    assert_status(
        c.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: None,
            tree_size: 0,
        })
        .await,
        Code::InvalidArgument,
        &["leaf_index or leaf_hash"],
    );
    let short_hash = c
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafHash(vec![1; 31])),
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(short_hash.code(), Code::InvalidArgument);
    assert_eq!(
        short_hash.message(),
        "leaf_hash: a leaf hash is 32 bytes, got 31"
    );
    // The request's own fields are checked before the log's state.
    assert_status(
        c.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: None,
            tree_size: 1 << 40,
        })
        .await,
        Code::InvalidArgument,
        &["leaf", "leaf_index or leaf_hash"],
    );
    assert_status(
        c.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafHash(vec![1; 32])),
            tree_size: 0,
        })
        .await,
        Code::NotFound,
        &["0101"],
    );
    let by_index = |i: u64| v1::LeafRef {
        leaf: Some(v1::leaf_ref::Leaf::LeafIndex(i)),
    };
    let by_hash = |h: Vec<u8>| v1::LeafRef {
        leaf: Some(v1::leaf_ref::Leaf::LeafHash(h)),
    };
    let proofs = |leaves: Vec<v1::LeafRef>| v1::GetInclusionProofsRequest {
        leaves,
        tree_size: 0,
    };
    assert_status(
        c.get_inclusion_proofs(proofs(vec![])).await,
        Code::InvalidArgument,
        &["leaves", "at least one"],
    );
    assert_status(
        c.get_inclusion_proofs(proofs((0..1001).map(|_| by_index(0)).collect()))
            .await,
        Code::InvalidArgument,
        &["leaves", "1001", "1000"],
    );
    assert_status(
        c.get_inclusion_proofs(proofs(vec![by_index(0), v1::LeafRef { leaf: None }]))
            .await,
        Code::InvalidArgument,
        &["leaves[1]", "leaf_index or leaf_hash"],
    );
    assert_status(
        c.get_inclusion_proofs(proofs(vec![by_index(0), by_hash(vec![1; 33])]))
            .await,
        Code::InvalidArgument,
        &["leaves[1].leaf_hash", "32 bytes", "33"],
    );
    assert_status(
        c.get_inclusion_proofs(proofs(vec![by_index(0), by_index(0), by_index(1 << 40)]))
            .await,
        Code::OutOfRange,
        &["leaves[2].leaf_index", "1099511627776"],
    );
    assert_status(
        c.get_inclusion_proofs(proofs(vec![
            by_hash(leaf_hash(b"seed").0.to_vec()),
            by_hash(vec![2; 32]),
        ]))
        .await,
        Code::NotFound,
        &["leaves[1].leaf_hash", "0202"],
    );
    assert_status(
        c.get_inclusion_proofs(v1::GetInclusionProofsRequest {
            leaves: vec![by_index(0)],
            tree_size: 1 << 40,
        })
        .await,
        Code::OutOfRange,
        &["tree_size", "larger than"],
    );
    assert_status(
        c.get_consistency_proof(v1::GetConsistencyProofRequest {
            first_size: size,
            second_size: 1,
        })
        .await,
        Code::InvalidArgument,
        &["first_size", "larger than second size 1"],
    );
    assert_status(
        c.get_consistency_proof(v1::GetConsistencyProofRequest {
            first_size: 1 << 40,
            second_size: 0,
        })
        .await,
        Code::OutOfRange,
        &["first_size", "1099511627776", "latest signed size"],
    );
    assert_status(
        c.get_consistency_proof(v1::GetConsistencyProofRequest {
            first_size: 1,
            second_size: 1 << 40,
        })
        .await,
        Code::OutOfRange,
        &["second_size"],
    );
    // A page is cut at the page size (1,000) and at the signed size, as
    // the proto says, not refused.
    let page = c
        .get_entries(v1::GetEntriesRequest {
            start: 0,
            end: u64::MAX,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(!page.is_empty() && page.len() <= 1000, "{}", page.len());
    assert!(page
        .iter()
        .enumerate()
        .all(|(i, e)| e.leaf_index == i as u64));
    assert_status(
        c.get_entries(v1::GetEntriesRequest { start: 5, end: 5 })
            .await,
        Code::InvalidArgument,
        &["end"],
    );
    assert_status(
        c.get_entries(v1::GetEntriesRequest {
            start: 1 << 40,
            end: (1 << 40) + 1,
        })
        .await,
        Code::OutOfRange,
        &["start"],
    );
    assert_status(
        c.get_entry_and_proof(v1::GetEntryAndProofRequest {
            leaf_index: 1 << 40,
            tree_size: 0,
        })
        .await,
        Code::OutOfRange,
        &["leaf_index"],
    );
    background.await.unwrap();
    // Nothing accepted was disturbed: every entry is where it was put.
    let head = c
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(head.tree_size, 101);
    server.stop().await.unwrap();
}

/// Appends that fail on purpose: the next `fail_next` appends fail before
/// writing, and with `fail_after_commit` the next append is written but
/// reported as failed (a connection lost during COMMIT).
#[derive(Default)]
struct Flaky {
    fail_next: AtomicU32,
    fail_after_commit: AtomicU32,
    /// Milliseconds each append takes before it starts: a slow disk.
    append_delay_ms: AtomicU32,
    /// Told each time a batch of leaves reaches the store.
    reached_store: tokio::sync::Notify,
}

fn flaky<S>(inner: S) -> HookedStore<S, Flaky> {
    HookedStore {
        inner,
        hook: Flaky::default(),
    }
}

impl AppendHook for Flaky {
    async fn before(&self, batch: &Batch) -> merklog_storage::Result<()> {
        if !batch.leaves.is_empty() {
            self.reached_store.notify_one();
        }
        let delay = self.append_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay.into())).await;
        }
        if self.fail_next.load(Ordering::SeqCst) > 0 {
            self.fail_next.fetch_sub(1, Ordering::SeqCst);
            return Err(StorageError::Unavailable {
                source: sqlx_io_error(),
            });
        }
        Ok(())
    }
    fn after(&self, _: &Batch) -> merklog_storage::Result<()> {
        if self.fail_after_commit.load(Ordering::SeqCst) > 0 {
            self.fail_after_commit.fetch_sub(1, Ordering::SeqCst);
            return Err(StorageError::Unavailable {
                source: sqlx_io_error(),
            });
        }
        Ok(())
    }
}

fn sqlx_io_error() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "injected failure",
    ))
}

async fn storage_failure_fails_the_batch_then_recovers(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(flaky(db.open().await.unwrap()));
    let server = TestServer::start(store.clone(), signer, ServerConfig::default())
        .await
        .unwrap();
    let mut c = server.client().await.unwrap();
    let (_, before) = append_verified(&mut c, &key, vec![b"one".to_vec()]).await;

    store.hook.fail_next.store(1, Ordering::SeqCst);
    assert_status(
        c.append(v1::AppendRequest {
            entries: vec![b"two".to_vec()],
        })
        .await,
        Code::Unavailable,
        &["storage unavailable", "appending them again is safe"],
    );
    // Nothing of the failed batch is visible, and the next batch proceeds.
    let head = c
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sth_from_wire(&head, "h").unwrap(), before);
    let (placed, _) = append_verified(&mut c, &key, vec![b"two".to_vec()]).await;
    assert_eq!(placed, vec![(1, false)]);

    // A commit that happened but was reported as failed: the caller is told
    // UNAVAILABLE, the service resynchronises and a retry finds the entry.
    store.hook.fail_after_commit.store(1, Ordering::SeqCst);
    assert_status(
        c.append(v1::AppendRequest {
            entries: vec![b"three".to_vec()],
        })
        .await,
        Code::Unavailable,
        &[],
    );
    let (placed, sth) =
        append_verified(&mut c, &key, vec![b"three".to_vec(), b"four".to_vec()]).await;
    assert_eq!(placed, vec![(2, true), (3, false)]);
    check_heads_consistent(&mut c, &[before, sth]).await;
    server.stop().await.unwrap();
}

async fn overload_is_refused_at_once(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(flaky(db.open().await.unwrap()));
    let mut config = ServerConfig::default();
    config.limits.max_entries_per_append = 10;
    config.sequencer.queue_capacity = 20;
    config.sequencer.max_batch_entries = 10;
    let server = TestServer::start(store.clone(), signer, config)
        .await
        .unwrap();
    // Every batch now takes a second: 60 callers of 5 entries overflow a
    // queue of 20 entries.
    store.hook.append_delay_ms.store(1000, Ordering::SeqCst);
    let mut calls = Vec::new();
    for i in 0..60 {
        let mut c = server.client().await.unwrap();
        calls.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let entries = (0..5).map(|j| entry(i, j)).collect();
            let result = c.append(v1::AppendRequest { entries }).await;
            (result.map(|r| r.into_inner()), started.elapsed())
        }));
    }
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        let (result, took) = call.await.unwrap();
        match result {
            Ok(resp) => {
                verified_head(&key, resp.tree_head.as_ref());
                ok += 1;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("retry later"), "{status:?}");
                // Refused without waiting for the queue: quicker than one
                // batch takes (a behaviour, not a speed target).
                assert!(
                    took < std::time::Duration::from_millis(1000),
                    "refusal took {took:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(ok >= 4, "the queued callers are served ({ok} served)");
    assert!(refused > 0, "a full queue refuses callers");
    store.hook.append_delay_ms.store(0, Ordering::SeqCst);
    let mut c = server.client().await.unwrap();
    let (_, head) = append_verified(&mut c, &key, vec![b"after the flood".to_vec()]).await;
    assert_eq!(head.head.tree_size, ok * 5 + 1);
    server.stop().await.unwrap();
}

/// The queue is bounded in bytes as well as in entries: a queue that takes
/// 100 entries but only one full append of the largest entries refuses a
/// second such append while the first waits, naming the bound in bytes.
async fn overload_in_bytes_is_refused_at_once(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(flaky(db.open().await.unwrap()));
    let mut config = ServerConfig::default();
    config.limits.max_entries_per_append = 10;
    config.limits.max_entry_bytes = 1000;
    config.sequencer.queue_capacity = 100;
    config.sequencer.queue_capacity_bytes =
        10 * (1000 + merklog_server::config::QUEUED_ENTRY_OVERHEAD);
    let server = TestServer::start(store.clone(), signer, config)
        .await
        .unwrap();
    let full_append = |i: usize| v1::AppendRequest {
        entries: (0..10)
            .map(|j| {
                let mut e = entry(i, j);
                e.resize(1000, b'.');
                e
            })
            .collect(),
    };
    // The first append's batch is held in the store; its entries keep
    // their place in the queue until they are answered.
    store.hook.append_delay_ms.store(2000, Ordering::SeqCst);
    let mut first_client = server.client().await.unwrap();
    let first = tokio::spawn(async move { first_client.append(full_append(0)).await });
    store.hook.reached_store.notified().await;
    let mut c = server.client().await.unwrap();
    let refusal = c.append(full_append(1)).await.unwrap_err();
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal
            .message()
            .contains("bytes are waiting (capacity 10640)"),
        "{refusal:?}"
    );
    let first = first.await.unwrap().unwrap().into_inner();
    verified_head(&key, first.tree_head.as_ref());
    store.hook.append_delay_ms.store(0, Ordering::SeqCst);
    let (_, head) = append_verified(&mut c, &key, full_append(2).entries).await;
    assert_eq!(head.head.tree_size, 20);
    server.stop().await.unwrap();
}

macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(merklog_tests::TestDb::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(merklog_tests::TestDb::postgres().await).await;
                }
            )*
        }
    };
}

/// Starts a server and appends, in one call each, `calls[i]` entries; returns
/// its key and the signed head of each call.
async fn server_after_calls(
    db: &TestDb,
    calls: &[u32],
) -> (
    TestServer,
    LogClient<Channel>,
    PublicKey,
    Vec<SignedTreeHead>,
) {
    let signer = signer();
    let key = signer.public_key().clone();
    let server = TestServer::start(
        Arc::new(db.open().await.unwrap()),
        signer,
        ServerConfig::default(),
    )
    .await
    .unwrap();
    let mut client = server.client().await.unwrap();
    let mut heads = Vec::new();
    for (call, &n) in calls.iter().enumerate() {
        let entries = (0..n)
            .map(|i| format!("call {call} entry {i}").into_bytes())
            .collect();
        heads.push(append_verified(&mut client, &key, entries).await.1);
    }
    (server, client, key, heads)
}

/// Proofs take the tree's upper levels from the service's node cache once
/// its filler has caught up (every 100 ms), and the rest from the store:
/// asked in two rounds, the second after the filler has had time to catch
/// up, at every size the log had, each proof verifies both times.
async fn proofs_through_the_node_cache_verify(db: TestDb) {
    let (server, mut client, _, heads) = server_after_calls(&db, &[1000; 5]).await;
    let latest = heads.last().unwrap().clone();
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        for index in (0..latest.head.tree_size).step_by(97) {
            for head in heads.iter().filter(|h| h.head.tree_size > index) {
                let proof = client
                    .get_inclusion_proof(v1::GetInclusionProofRequest {
                        tree_size: head.head.tree_size,
                        leaf: Some(Leaf::LeafIndex(index)),
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let leaf = hash_from_wire(&proof.leaf_hash, "leaf_hash").unwrap();
                let path = hashes_from_wire(&proof.proof, "proof").unwrap();
                verify_inclusion(
                    index,
                    head.head.tree_size,
                    &leaf,
                    &path,
                    &head.head.root_hash,
                )
                .unwrap_or_else(|e| panic!("leaf {index} in size {}: {e}", head.head.tree_size));
            }
        }
        check_heads_consistent(&mut client, &heads).await;
    }
    server.stop().await.unwrap();
}

/// A GetInclusionProofs call answers, for every leaf it names (by index or
/// by hash, repeated, in any order), exactly the proof GetInclusionProof
/// gives for it alone, with the signed head once.
async fn many_proofs_in_one_call_equal_single_proofs(db: TestDb) {
    let (server, mut client, key, heads) = server_after_calls(&db, &[300, 377, 454, 531]).await;
    for head in &heads {
        let n = head.head.tree_size;
        // Every 7th leaf by index, every 11th by hash, the last leaf twice.
        let mut wanted: Vec<(u64, v1::LeafRef)> = Vec::new();
        for index in (0..n).step_by(7).chain([n - 1, n - 1]) {
            wanted.push((
                index,
                v1::LeafRef {
                    leaf: Some(v1::leaf_ref::Leaf::LeafIndex(index)),
                },
            ));
        }
        let mut by_hash: Vec<u64> = (3..n).step_by(11).collect();
        by_hash.reverse();
        for index in by_hash {
            let entry = client
                .get_entries(v1::GetEntriesRequest {
                    start: index,
                    end: index + 1,
                })
                .await
                .unwrap()
                .into_inner()
                .entries
                .remove(0);
            wanted.push((
                index,
                v1::LeafRef {
                    leaf: Some(v1::leaf_ref::Leaf::LeafHash(entry.leaf_hash)),
                },
            ));
        }
        for chunk in wanted.chunks(1000) {
            let answer = client
                .get_inclusion_proofs(v1::GetInclusionProofsRequest {
                    leaves: chunk.iter().map(|(_, leaf)| leaf.clone()).collect(),
                    tree_size: n,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(verified_head(&key, answer.tree_head.as_ref()), *head);
            assert_eq!(answer.proofs.len(), chunk.len());
            for ((index, _), proof) in chunk.iter().zip(&answer.proofs) {
                let alone = client
                    .get_inclusion_proof(v1::GetInclusionProofRequest {
                        leaf: Some(Leaf::LeafIndex(*index)),
                        tree_size: n,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(proof.tree_head, None);
                assert_eq!(
                    *proof,
                    v1::InclusionProof {
                        tree_head: None,
                        ..alone
                    },
                    "leaf {index} in size {n}"
                );
                let leaf = hash_from_wire(&proof.leaf_hash, "leaf_hash").unwrap();
                let path = hashes_from_wire(&proof.proof, "proof").unwrap();
                verify_inclusion(*index, n, &leaf, &path, &head.head.root_hash)
                    .unwrap_or_else(|e| panic!("leaf {index} in size {n}: {e}"));
            }
        }
    }
    server.stop().await.unwrap();
}

/// GetEntries answers at most `max_page_size` entries and stops at the
/// signed size; the caller asks again from where a page ended.
async fn entry_pages_are_cut_at_the_page_size(db: TestDb) {
    let signer = signer();
    let key = signer.public_key().clone();
    let mut config = ServerConfig::default();
    config.limits.max_page_size = 3;
    let store = Arc::new(db.open().await.unwrap());
    let server = TestServer::start(store, signer, config).await.unwrap();
    let mut c = server.client().await.unwrap();
    append_verified(&mut c, &key, (1..=5u8).map(|i| vec![i]).collect()).await;
    let page = |start: u64, end: u64| {
        let request = v1::GetEntriesRequest { start, end };
        let mut c = c.clone();
        async move {
            let entries = c.get_entries(request).await.unwrap().into_inner().entries;
            entries
                .iter()
                .map(|e| (e.leaf_index, e.data[0]))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(0, 5).await, [(0, 1), (1, 2), (2, 3)]);
    assert_eq!(page(3, u64::MAX).await, [(3, 4), (4, 5)]);
    assert_eq!(page(1, 2).await, [(1, 2)]);
    server.stop().await.unwrap();
}

on_both_backends!(
    entry_pages_are_cut_at_the_page_size,
    many_proofs_in_one_call_equal_single_proofs,
    proofs_through_the_node_cache_verify,
    concurrent_appends_all_verify,
    restart_keeps_everything,
    duplicates_keep_their_index,
    bad_input_is_rejected_clearly,
    storage_failure_fails_the_batch_then_recovers,
    overload_is_refused_at_once,
    overload_in_bytes_is_refused_at_once,
);

/// The database really goes away (connections cut and refused) and comes
/// back: appends fail with UNAVAILABLE meanwhile, then the service recovers
/// by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_appends_then_recovers() {
    use sqlx::Connection;
    let (url, guard) = merklog_storage::testing::TempPostgres::create().await;
    let signer = signer();
    let key = signer.public_key().clone();
    let store = Arc::new(merklog_storage::AnyStore::open(&url).await.unwrap());
    let server = TestServer::start(store.clone(), signer, ServerConfig::default())
        .await
        .unwrap();
    let mut c = server.client().await.unwrap();
    let (_, before) = append_verified(&mut c, &key, vec![b"before the outage".to_vec()]).await;
    let term = store
        .leader_term()
        .await
        .unwrap()
        .expect("a term at start-up");
    assert!(term.lock_held);

    let mut admin = sqlx::PgConnection::connect(guard.admin_url())
        .await
        .unwrap();
    let name = guard.name().to_owned();
    let set_connections =
        |allow: bool| format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS {allow}");
    sqlx::query(&set_connections(false))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .unwrap();

    for i in 0..3 {
        let mut req = tonic::Request::new(v1::AppendRequest {
            entries: vec![format!("during the outage {i}").into_bytes()],
        });
        // The service must answer before this deadline, not hang.
        req.set_timeout(std::time::Duration::from_secs(20));
        let status = c.append(req).await.expect_err("no database, no append");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }

    sqlx::query(&set_connections(true))
        .execute(&mut admin)
        .await
        .unwrap();
    let resp = append_when_back(&mut c, b"after the outage").await;
    let after = verified_head(&key, resp.tree_head.as_ref());
    assert_eq!(
        resp.entries[0].leaf_index, 1,
        "failed appends left no trace"
    );
    // The outage ended the lock's session too. The instance notices at its
    // next check of the lock (every poll interval), stops sequencing and
    // takes the lock back in a new term, so that a second instance started
    // meanwhile on the same database would be kept out.
    let mut retaken = None;
    for _ in 0..50 {
        match store.leader_term().await.unwrap() {
            Some(t) if t.term > term.term && t.lock_held => {
                retaken = Some(t);
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    }
    let retaken = retaken.expect("the instance takes its lock back within 10 s");
    assert_eq!(retaken.term, term.term + 1, "{retaken:?}");
    let resp = append_when_back(&mut c, b"after taking the lock back").await;
    assert_eq!(resp.entries[0].leaf_index, 2);
    let last = verified_head(&key, resp.tree_head.as_ref());
    check_heads_consistent(&mut c, &[before, after, last]).await;
    server.stop().await.unwrap();
}

/// Appends `entry` until the service takes it, for up to 10 s, accepting
/// only UNAVAILABLE meanwhile.
async fn append_when_back(c: &mut LogClient<Channel>, entry: &[u8]) -> v1::AppendResponse {
    for _ in 0..50 {
        let request = v1::AppendRequest {
            entries: vec![entry.to_vec()],
        };
        match c.append(request).await {
            Ok(resp) => return resp.into_inner(),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
    panic!("the service did not take appends again within 10 s");
}
