//! The transport's request deadline and per-connection concurrency limit
//! (with load shedding: a request past the limit is refused at once),
//! shown without timing assumptions: appends are held in an open sequencer
//! batch (a long batch delay) until the test completes the batch, so no
//! request can finish early by luck.

use std::sync::Arc;
use std::time::Duration;

use merklog_proto::v1::{self, log_client::LogClient};
use merklog_server::{SequencerConfig, ServerConfig, TransportLimits};
use merklog_sth::LogSigner;
use merklog_tests::{TestDb, TestServer};
use tonic::transport::Endpoint;
use tonic::Code;

/// Long enough that no batch closes by its delay while a test runs.
const HELD: Duration = Duration::from_secs(600);

fn append(entry: &[u8]) -> v1::AppendRequest {
    v1::AppendRequest {
        entries: vec![entry.to_vec()],
    }
}

fn holding_config(max_batch_entries: usize, transport: TransportLimits) -> ServerConfig {
    ServerConfig {
        sequencer: SequencerConfig {
            max_batch_entries,
            max_batch_delay: HELD,
            ..SequencerConfig::default()
        },
        transport,
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn requests_past_the_deadline_are_cut_but_appends_still_commit() {
    let db = TestDb::sqlite();
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let config = holding_config(
        1000,
        TransportLimits {
            request_timeout: Duration::from_millis(50),
            ..TransportLimits::default()
        },
    );
    let server = TestServer::start(Arc::new(db.open().await.unwrap()), signer.clone(), config)
        .await
        .unwrap();
    let mut client = server.client().await.unwrap();

    // The batch stays open for HELD: only the server's deadline can answer,
    // and it says what became of the entries.
    let cut = client.append(append(b"late")).await.unwrap_err();
    assert_eq!(cut.code(), Code::DeadlineExceeded, "{cut:?}");
    assert_eq!(
        cut.message(),
        "Append took longer than the server's request timeout of 50 ms; the entries of \
         this call may or may not have been stored: appending them again is safe, an entry \
         already stored is answered with its index"
    );

    // The entry was queued before the deadline: stopping the server
    // commits its batch.
    server.stop().await.unwrap();

    // With the server's deadline at its default (30 s), a shorter deadline
    // of the client's own (grpc-timeout) cuts the request instead, in the
    // transport (tonic answers CANCELLED; the client's own timer, when it
    // has one, reports DEADLINE_EXCEEDED first).
    let config = holding_config(1000, TransportLimits::default());
    let store = Arc::new(db.open().await.unwrap());
    let server = TestServer::start(store, signer.clone(), config)
        .await
        .unwrap();
    let mut request = tonic::Request::new(append(b"later"));
    request.set_timeout(Duration::from_millis(50));
    let cut = server
        .client()
        .await
        .unwrap()
        .append(request)
        .await
        .unwrap_err();
    assert_eq!(cut.code(), Code::Cancelled, "{cut:?}");
    server.stop().await.unwrap();

    // A retry finds both entries committed.
    let store = Arc::new(db.open().await.unwrap());
    let server = TestServer::start(store, signer, ServerConfig::default())
        .await
        .unwrap();
    let retried = server
        .client()
        .await
        .unwrap()
        .append(v1::AppendRequest {
            entries: vec![b"late".to_vec(), b"later".to_vec()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retried.entries.iter().all(|e| e.duplicate), "{retried:?}");
    assert_eq!(retried.tree_head.unwrap().tree_size, 2);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn one_connection_cannot_exceed_its_concurrency_limit() {
    let db = TestDb::sqlite();
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    // A batch closes at two entries; one request per connection at a time.
    let config = holding_config(
        2,
        TransportLimits {
            max_concurrent_requests_per_connection: 1,
            ..TransportLimits::default()
        },
    );
    let server = TestServer::start(Arc::new(db.open().await.unwrap()), signer, config)
        .await
        .unwrap();
    // Clones of a channel share its one HTTP/2 connection.
    let shared = Endpoint::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let spawn_append = |entry: &'static [u8]| {
        let mut c = LogClient::new(shared.clone());
        tokio::spawn(async move { c.append(append(entry)).await.map(|r| r.into_inner()) })
    };
    let a = spawn_append(b"a");
    let b = spawn_append(b"b");

    // Were both in the service, they would fill the batch and commit
    // together. With the limit, whichever comes second is refused at once
    // (load shedding); the first waits in the open batch and cannot finish
    // before another entry arrives.
    while !a.is_finished() && !b.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (refused, held) = if a.is_finished() { (a, b) } else { (b, a) };
    let refused = refused.await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(!held.is_finished());

    // Another connection is not held up, and completes the held batch.
    let mut other = server.client().await.unwrap();
    other.append(append(b"c")).await.unwrap();
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.tree_head.unwrap().tree_size, 2);
    server.stop().await.unwrap();
}
