//! A panic in a task the server runs beside the transport (the sequencer,
//! or a reader task: the merged proof node reads) is a failure, not a clean
//! stop: `serve` (and so `TestServer::stop` in every test) returns it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use merklog_merkle::NodeId;
use merklog_proto::v1;
use merklog_server::{ServeError, ServerConfig};
use merklog_sth::LogSigner;
use merklog_storage::testing::{AppendHook, HookedStore};
use merklog_storage::Batch;
use merklog_tests::{TestDb, TestServer};

/// Panics in every append once armed (the start-up write of the empty
/// head goes through before the test arms it).
#[derive(Default)]
struct PanicWhenArmed(AtomicBool);

impl AppendHook for PanicWhenArmed {
    async fn before(&self, _: &Batch) -> merklog_storage::Result<()> {
        assert!(!self.0.load(Ordering::SeqCst), "injected sequencer panic");
        Ok(())
    }
}

#[tokio::test]
async fn a_panicked_sequencer_fails_the_stop() {
    let db = TestDb::sqlite();
    let store = Arc::new(HookedStore {
        inner: db.open().await.unwrap(),
        hook: PanicWhenArmed::default(),
    });
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let server = TestServer::start(store.clone(), signer, ServerConfig::default())
        .await
        .unwrap();
    let mut client = server.client().await.unwrap();
    client
        .append(v1::AppendRequest {
            entries: vec![b"before".to_vec()],
        })
        .await
        .expect("appends go through before the hook is armed");

    store.hook.0.store(true, Ordering::SeqCst);
    let status = client
        .append(v1::AppendRequest {
            entries: vec![b"after".to_vec()],
        })
        .await
        .expect_err("the sequencer panicked during this append");
    // The caller learns only that its append did not go through.
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::Internal
        ),
        "{status:?}"
    );

    let err = server
        .stop()
        .await
        .expect_err("a stop after a panic is not clean");
    match err.downcast_ref::<ServeError>() {
        Some(ServeError::TaskPanicked { task, message }) => {
            assert_eq!(*task, "sequencer");
            assert!(message.contains("injected sequencer panic"), "{message}");
        }
        other => panic!("expected TaskPanicked, got {other:?} ({err})"),
    }
}

/// Without a panic the same stop is clean (the test above fails for the
/// panic, not for the hook).
#[tokio::test]
async fn an_unarmed_hook_stops_cleanly() {
    let db = TestDb::sqlite();
    let store = Arc::new(HookedStore {
        inner: db.open().await.unwrap(),
        hook: PanicWhenArmed::default(),
    });
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let server = TestServer::start(store, signer, ServerConfig::default())
        .await
        .unwrap();
    let mut client = server.client().await.unwrap();
    client
        .append(v1::AppendRequest {
            entries: vec![b"x".to_vec()],
        })
        .await
        .unwrap();
    server.stop().await.unwrap();
}

/// Panics in every node read once armed: a store read that panics inside
/// the task that answers proofs' node reads.
#[derive(Default)]
struct PanicOnNodeRead(AtomicBool);

impl AppendHook for PanicOnNodeRead {
    fn before_node_read(&self, _: &[NodeId]) {
        assert!(!self.0.load(Ordering::SeqCst), "injected reader panic");
    }
}

fn proof_of_leaf_0() -> v1::GetInclusionProofRequest {
    v1::GetInclusionProofRequest {
        leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(0)),
        tree_size: 4,
    }
}

#[tokio::test]
async fn a_panicked_reader_task_fails_the_stop() {
    let db = TestDb::sqlite();
    let store = Arc::new(HookedStore {
        inner: db.open().await.unwrap(),
        hook: PanicOnNodeRead::default(),
    });
    let mut config = ServerConfig::default();
    // No node cache: every proof reads its nodes through the merged reads.
    config.limits.node_cache_bytes = 0;
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let server = TestServer::start(store.clone(), signer, config)
        .await
        .unwrap();
    let mut client = server.client().await.unwrap();
    client
        .append(v1::AppendRequest {
            entries: ["a", "b", "c", "d"].map(|e| e.as_bytes().to_vec()).to_vec(),
        })
        .await
        .unwrap();
    // Unarmed, the proof is read and answered: the panic below is the
    // hook's, not a broken proof path.
    let proof = client.get_inclusion_proof(proof_of_leaf_0()).await.unwrap();
    assert_eq!(proof.into_inner().proof.len(), 2);

    store.hook.0.store(true, Ordering::SeqCst);
    let status = client
        .get_inclusion_proof(proof_of_leaf_0())
        .await
        .expect_err("the task reading the proof's nodes panicked");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    let err = server
        .stop()
        .await
        .expect_err("a stop after a reader panic is not clean");
    match err.downcast_ref::<ServeError>() {
        Some(ServeError::TaskPanicked { task, message }) => {
            assert_eq!(*task, "proof node reads");
            assert!(message.contains("injected reader panic"), "{message}");
        }
        other => panic!("expected TaskPanicked, got {other:?} ({err})"),
    }
}
