//! Admission over real HTTP/2: access is decided before a request's body is
//! read, request messages are bounded before they are decoded, the bytes in
//! flight across connections are bounded, health and reflection follow the
//! read rule, and a server without access rules stays on loopback.

mod raw_h2;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_server::{token_hash, AuthConfig, Limits, ServeError, ServerConfig, SystemClock};
use merklog_sth::LogSigner;
use merklog_tests::{TestDb, TestServer};
use prost::Message;
use tonic::Code;

/// Generous: each wait below ends at once when the server behaves; the
/// guard only turns a hang into a failure.
const GUARD: Duration = Duration::from_secs(30);

fn rules(require_read_token: bool) -> AuthConfig {
    AuthConfig::from_toml(&format!(
        "require_read_token = {require_read_token}\n\
         [[client]]\nname = \"ingest\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n\
         [[client]]\nname = \"auditor\"\nrole = \"reader\"\ntoken_sha256 = \"{}\"\n",
        token_hash("writer-token"),
        token_hash("reader-token"),
    ))
    .unwrap()
}

async fn start(config: ServerConfig) -> (TestServer, TestDb) {
    let db = TestDb::sqlite();
    let store = Arc::new(db.open().await.unwrap());
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    (TestServer::start(store, signer, config).await.unwrap(), db)
}

#[tokio::test]
async fn an_anonymous_append_is_refused_before_its_body_is_read() {
    let (server, _db) = start(ServerConfig {
        auth: rules(false),
        ..ServerConfig::default()
    })
    .await;
    let mut send = raw_h2::connect(server.addr).await.unwrap();
    let head = raw_h2::request(server.addr, "/merklog.v1.Log/Append", None);
    let (response, mut body) = send.send_request(head, false).unwrap();
    // 30 M empty entries declared: 60 MB, within the 67.8 MB that used to be
    // decoded before access was checked. Only the first MiB is sent.
    body.send_data(raw_h2::prefix(60_000_000), false).unwrap();
    body.send_data(Bytes::from([0x0a, 0x00].repeat(512 * 1024)), false)
        .unwrap();
    // The answer comes while 59 MB of the body are unsent: the server
    // cannot have decoded it. A server that reads the body first never
    // answers here.
    let response = tokio::time::timeout(GUARD, response)
        .await
        .expect("the refusal must come before the body is complete")
        .unwrap();
    let (code, message) = raw_h2::status(response).await.unwrap();
    assert_eq!(code, Code::Unauthenticated as u32, "{message}");
    assert!(message.contains("bearer token"), "{message}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn request_messages_are_bounded_before_they_are_decoded() {
    let (server, _db) = start(ServerConfig {
        limits: Limits {
            max_request_bytes: 1 << 20,
            ..Limits::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut client = server.client().await.unwrap();

    // A read carries no entries: 2000 leaf hashes (72 KB) is past its bound.
    let leaves = (0..2000)
        .map(|_| v1::LeafRef {
            leaf: Some(v1::leaf_ref::Leaf::LeafHash(vec![7; 32])),
        })
        .collect();
    let e = client
        .get_inclusion_proofs(v1::GetInclusionProofsRequest {
            leaves,
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let bound = Limits::default().max_read_request_bytes();
    assert!(
        e.message().contains("a read request") && e.message().contains(&bound.to_string()),
        "{e:?}"
    );

    // An Append past --max-request-bytes, though each entry is within
    // max entry bytes and their number within max entries per append.
    let e = client
        .append(v1::AppendRequest {
            entries: (0..20u8).map(|i| vec![i; 60 * 1024]).collect(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("--max-request-bytes") && e.message().contains("1048576"),
        "{e:?}"
    );

    // 5000 one-byte entries fit in 15 KB but would decode into 5000 Vecs.
    let e = client
        .append(v1::AppendRequest {
            entries: vec![vec![1]; 5000],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("more than 1008 fields"), "{e:?}");

    // Within the bounds, both work.
    client
        .append(v1::AppendRequest {
            entries: (0..15u8).map(|i| vec![i; 60 * 1024]).collect(),
        })
        .await
        .unwrap();
    server.stop().await.unwrap();
}

/// The body of an Append of `entries` entries of 10,000 bytes, declared
/// one entry longer, so that the server keeps waiting for the rest.
fn partial_append(entries: usize) -> (Bytes, Bytes) {
    let entry = v1::AppendRequest {
        entries: vec![vec![9; 10_000]],
    }
    .encode_to_vec();
    let declared = raw_h2::prefix(entry.len() * (entries + 1));
    (declared, Bytes::from(entry.repeat(entries)))
}

#[tokio::test]
async fn bytes_in_flight_are_bounded_across_connections() {
    // Each held call below takes 2 × 1 MB of request and 100 proofs of
    // reserved answer: 2.29 MB of the 3 MiB. A second one does not fit.
    let (server, _db) = start(ServerConfig {
        limits: Limits {
            max_request_bytes: 1 << 20,
            max_entries_per_append: 100,
            max_page_size: 100,
            max_response_bytes: 256 * 1024,
            ..Limits::default()
        },
        transport: merklog_server::TransportLimits {
            max_inflight_bytes: 3 << 20,
            ..Default::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        // Each on its own connection.
        let mut send = raw_h2::connect(server.addr).await.unwrap();
        let head = raw_h2::request(server.addr, "/merklog.v1.Log/Append", None);
        let (response, mut body) = send.send_request(head, false).unwrap();
        let (declared, entries) = partial_append(100);
        body.send_data(declared, false).unwrap();
        body.send_data(entries, false).unwrap();
        held.push((response, body, send));
    }
    let (first, second): (Vec<_>, Vec<_>) = held
        .into_iter()
        .map(|(response, body, send)| (response, (body, send)))
        .unzip();
    let mut responses = first.into_iter();
    let (a, b) = (responses.next().unwrap(), responses.next().unwrap());
    // Neither body is complete: only a refusal can answer.
    let refused = match tokio::time::timeout(GUARD, futures::future::select(a, b))
        .await
        .expect("one of the two calls must be refused")
    {
        futures::future::Either::Left((r, _)) | futures::future::Either::Right((r, _)) => {
            r.unwrap()
        }
    };
    let (code, message) = raw_h2::status(refused).await.unwrap();
    assert_eq!(code, Code::ResourceExhausted as u32, "{message}");
    assert!(message.contains("--max-inflight-bytes"), "{message}");
    assert!(message.contains("3145728"), "{message}");

    // Once the held call goes, its bytes come back: a whole Append of the
    // same size passes.
    for (mut body, _) in second {
        body.send_reset(h2::Reason::CANCEL);
    }
    let mut client = server.client().await.unwrap();
    let whole = v1::AppendRequest {
        entries: (0..100u32)
            .map(|i| [i.to_be_bytes().to_vec(), vec![9; 9_996]].concat())
            .collect(),
    };
    let appended = tokio::time::timeout(GUARD, async {
        loop {
            match client.append(whole.clone()).await {
                Err(e) if e.code() == Code::ResourceExhausted => tokio::task::yield_now().await,
                other => break other,
            }
        }
    })
    .await
    .expect("the bytes of a cancelled call must come back");
    assert_eq!(appended.unwrap().into_inner().entries.len(), 100);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_follow_the_read_rule() {
    let (server, _db) = start(ServerConfig {
        auth: rules(true),
        ..ServerConfig::default()
    })
    .await;
    let mut send = raw_h2::connect(server.addr).await.unwrap();
    let health = "/grpc.health.v1.Health/Check";
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    for path in [health, reflection] {
        let head = raw_h2::request(server.addr, path, None);
        let (code, message) = raw_h2::call(&mut send, head, &[]).await.unwrap();
        assert_eq!(code, Code::Unauthenticated as u32, "{path}: {message}");
        assert!(message.contains(path), "{message}");
    }
    let head = raw_h2::request(server.addr, health, Some("reader-token"));
    let (code, message) = raw_h2::call(&mut send, head, &[]).await.unwrap();
    assert_eq!(code, Code::Ok as u32, "{message}");

    // Without require_read_token, health stays open.
    server.stop().await.unwrap();
    let (server, _db) = start(ServerConfig {
        auth: rules(false),
        ..ServerConfig::default()
    })
    .await;
    let mut send = raw_h2::connect(server.addr).await.unwrap();
    let head = raw_h2::request(server.addr, health, None);
    let (code, message) = raw_h2::call(&mut send, head, &[]).await.unwrap();
    assert_eq!(code, Code::Ok as u32, "{message}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn open_access_stays_on_loopback_unless_allowed() {
    let db = TestDb::sqlite();
    let store = Arc::new(db.open().await.unwrap());
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let serve = |config: ServerConfig| {
        let (store, signer) = (store.clone(), signer.clone());
        async move {
            let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
            merklog_server::serve(
                listener,
                config,
                store,
                signer,
                Arc::new(SystemClock),
                async {},
            )
            .await
        }
    };
    match serve(ServerConfig::default()).await {
        Err(ServeError::Config(m)) => {
            assert!(m.contains("--allow-open-access"), "{m}");
            assert!(m.contains("MERKLOG_ALLOW_OPEN_ACCESS"), "{m}");
            assert!(m.contains("--auth-file"), "{m}");
        }
        other => panic!("an open server on 0.0.0.0 must be refused: {other:?}"),
    }
    // With the flag, or with access rules, it serves (and stops at once).
    serve(ServerConfig {
        allow_open_access: true,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    serve(ServerConfig {
        auth: rules(false),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    // The harness's loopback server needs neither.
    let server = TestServer::start(store, signer, ServerConfig::default())
        .await
        .unwrap();
    let mut client = LogClient::new(
        tonic::transport::Endpoint::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap();
    server.stop().await.unwrap();
}
