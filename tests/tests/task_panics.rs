//! A panic in a task the server runs beside the transport is a failure,
//! not a clean stop: `serve` (and so `TestServer::stop` in every test)
//! returns it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
