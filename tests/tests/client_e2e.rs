//! The verifying client against a real server: every answer is checked, and
//! the trusted head only moves forward along consistency proofs.

mod client_common;

use client_common::{signer, Log, Scratch};
use merklog_cli::client::audit::{audit, AuditOptions};
use merklog_cli::client::monitor::check_once;
use merklog_cli::client::Progress;
use merklog_client::{Client, ClientError, TrustState};
use merklog_merkle::leaf_hash;
use merklog_tests::TestDb;

#[tokio::test]
async fn client_appends_proves_and_keeps_a_trusted_head() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    let scratch = Scratch::new();
    let state = scratch.path("client-state.json");
    let mut client = log.client().await.with_state_file(&state).unwrap();
    assert!(client.trusted_head().is_none());

    let info = client.log_info().await.unwrap();
    assert_eq!(info.log_id, log.signer.public_key().log_id());

    let receipt = client
        .append(vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()])
        .await
        .unwrap();
    assert_eq!(receipt.head.tree_size(), 3);
    assert_eq!(receipt.entries[1].proof.leaf_index, 1);
    assert_eq!(receipt.entries[1].proof.leaf_hash, leaf_hash(b"two"));
    assert_eq!(client.trusted_head().unwrap().tree_size(), 3);

    // A duplicate keeps its index; a new entry grows the tree.
    let receipt = client
        .append(vec![b"two".to_vec(), b"four".to_vec()])
        .await
        .unwrap();
    assert!(receipt.entries[0].duplicate);
    assert_eq!(receipt.entries[0].proof.leaf_index, 1);
    assert_eq!(receipt.entries[1].proof.leaf_index, 3);
    assert_eq!(receipt.head.tree_size(), 4);

    let by_index = client.inclusion_by_index(2, None).await.unwrap();
    let by_hash = client
        .inclusion_by_leaf_hash(leaf_hash(b"three"), None)
        .await
        .unwrap();
    let by_entry = client.inclusion_by_entry(b"three", None).await.unwrap();
    assert_eq!(by_index, by_hash);
    assert_eq!(by_hash, by_entry);
    assert_eq!(by_index.proof.tree_size, 4);
    // Against an older signed head.
    let old = client.inclusion_by_index(0, Some(3)).await.unwrap();
    assert_eq!(old.head.tree_size(), 3);
    assert!(client.inclusion_by_index(3, Some(3)).await.is_err());

    let c = client.consistency(3, None).await.unwrap();
    assert_eq!((c.proof.first_size, c.proof.second_size), (3, 4));
    let c0 = client.consistency(0, Some(3)).await.unwrap();
    assert!(c0.first_head.is_none() && c0.proof.proof.is_empty());
    assert!(matches!(
        client.consistency(2, None).await,
        Err(ClientError::NoSignedHead { tree_size: 2 })
    ));

    let entries = client.entries(1, 10).await.unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].data, b"two");
    assert_eq!(entries[2].index, 3);

    // An entry that is not in the log is NOT_FOUND, not a proof.
    match client.inclusion_by_entry(b"never appended", None).await {
        Err(ClientError::Status { code, .. }) => assert_eq!(code, tonic::Code::NotFound),
        other => panic!("unexpected {other:?}"),
    }

    // The state survives a restart of the client and is checked on load.
    let (saved, _) = TrustState::load(&state, log.signer.public_key())
        .unwrap()
        .unwrap();
    assert_eq!(saved.tree_size(), 4);
    let again = log.client().await.with_state_file(&state).unwrap();
    assert_eq!(again.trusted_head().unwrap().tree_size(), 4);
    let stranger = signer();
    let err = Client::connect(&log.server.url(), stranger.public_key().clone())
        .await
        .unwrap()
        .with_state_file(&state)
        .unwrap_err();
    assert!(err.is_verification_failure(), "{err}");
}

/// Many proofs at once, in calls of at most the log's page size: each
/// equals the proof asked alone, in the order asked, repeats included.
#[tokio::test]
async fn client_proves_many_leaves_in_few_calls() {
    let mut config = client_common::config();
    config.limits.max_page_size = 3;
    let log = Log::start_with(TestDb::sqlite(), signer(), config).await;
    let mut client = log.client().await;
    assert!(client
        .inclusions_by_index(&[], None)
        .await
        .unwrap()
        .is_empty());
    let entries = (0..10u8).map(|i| vec![b'e', i]).collect();
    client.append(entries).await.unwrap();
    client.append(vec![b"last".to_vec()]).await.unwrap();

    let latest = [0, 10, 4, 4, 7, 1, 2, 9];
    let older = [9, 0, 4, 4, 7, 1, 2];
    for (size, asked) in [(None, &latest[..]), (Some(10), &older[..])] {
        let proven = client.inclusions_by_index(asked, size).await.unwrap();
        assert_eq!(proven.len(), asked.len());
        for (&index, proof) in asked.iter().zip(proven) {
            let alone = client.inclusion_by_index(index, size).await.unwrap();
            assert_eq!(proof.unwrap(), alone, "leaf {index}");
        }
    }
    // A leaf beyond the tree fails the call, saying which.
    match client.inclusions_by_index(&[0, 10], Some(10)).await {
        Err(ClientError::Status { code, message }) => {
            assert_eq!(code, tonic::Code::OutOfRange);
            assert!(message.contains("leaves[1].leaf_index"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// A log longer than its page size is read page by page: the entries, the
/// audit and the monitor's check of new entries ask for at most a page per
/// call (the log refuses longer pages).
#[tokio::test]
async fn logs_longer_than_a_page_are_read_page_by_page() {
    let mut config = client_common::config();
    config.limits.max_page_size = 3;
    let log = Log::start_with(TestDb::sqlite(), signer(), config).await;
    let mut client = log.client().await;
    let entries: Vec<Vec<u8>> = (0..11u8).map(|i| vec![b'e', i]).collect();
    client.append(entries.clone()).await.unwrap();
    assert_eq!(client.page_size().await.unwrap(), 3);

    let read = client.entries(0, 11).await.unwrap();
    let got: Vec<(u64, Vec<u8>)> = read.into_iter().map(|e| (e.index, e.data)).collect();
    let want: Vec<(u64, Vec<u8>)> = (0..).zip(entries).collect();
    assert_eq!(got, want);

    let report = audit(
        &mut client,
        AuditOptions { proofs: true },
        &mut Progress::quiet(),
    )
    .await
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.entries_checked, report.proofs_checked), (11, 6));

    let scratch = Scratch::new();
    let mut monitor = log
        .client()
        .await
        .with_state_file(scratch.path("state.json"))
        .unwrap();
    let step = check_once(&mut monitor, true, &mut Progress::quiet())
        .await
        .unwrap();
    assert_eq!(step.entries_checked, 11);
}

#[tokio::test]
async fn client_pinned_to_another_key_trusts_nothing() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    log.append_batches(&[&["a"]]).await;
    let stranger = signer();
    let mut client = Client::connect(&log.server.url(), stranger.public_key().clone())
        .await
        .unwrap();
    assert!(matches!(
        client.log_info().await,
        Err(ClientError::WrongLog { .. })
    ));
    assert!(matches!(
        client.latest_head().await,
        Err(ClientError::WrongLog { .. })
    ));
    assert!(matches!(
        client.append(vec![b"b".to_vec()]).await,
        Err(ClientError::WrongLog { .. })
    ));
    assert!(client.trusted_head().is_none());
}

#[tokio::test]
async fn client_reports_an_unreachable_log_as_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::connect(&addr.to_string(), signer().public_key().clone())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err}");
    assert!(!err.is_verification_failure());
}

#[tokio::test]
async fn client_sends_its_bearer_token() {
    use merklog_server::{token_hash, AuthConfig, ServerConfig};
    let text = format!(
        "[[client]]\nname = \"ingest\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n",
        token_hash("writer-token")
    );
    let config = ServerConfig {
        auth: AuthConfig::from_toml(&text).unwrap(),
        ..client_common::config()
    };
    let db = TestDb::sqlite();
    let key = signer();
    let store = std::sync::Arc::new(db.open().await.unwrap());
    let server = merklog_tests::TestServer::start(store, key.clone(), config)
        .await
        .unwrap();

    let mut anonymous = Client::connect(&server.url(), key.public_key().clone())
        .await
        .unwrap();
    match anonymous.append(vec![b"x".to_vec()]).await {
        Err(
            e @ ClientError::Status {
                code: tonic::Code::Unauthenticated,
                ..
            },
        ) => {
            assert!(!e.is_verification_failure());
        }
        other => panic!("unexpected {other:?}"),
    }
    // Reads need no token here.
    assert_eq!(anonymous.latest_head().await.unwrap().tree_size(), 0);

    let mut writer = Client::connect(&server.url(), key.public_key().clone())
        .await
        .unwrap()
        .with_token("writer-token")
        .unwrap();
    let receipt = writer.append(vec![b"x".to_vec()]).await.unwrap();
    assert_eq!(receipt.head.tree_size(), 1);

    // And through the CLI.
    let scratch = Scratch::new();
    let mut args = merklog_cli::client::LogArgs {
        server: server.url(),
        public_key: scratch.key_file(&key),
        state: None,
        token: Some("writer-token".into()),
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
        safety: merklog_cli::client::SafetyArgs::default(),
    };
    let append = |log: merklog_cli::client::LogArgs| merklog_cli::client::append::AppendArgs {
        log,
        entries: vec!["y".into()],
        files: vec![],
        whole: false,
        out: merklog_cli::client::OutputArgs { json: true },
    };
    let mut out = Vec::new();
    merklog_cli::client::append::run(append(args.clone()), &mut out)
        .await
        .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(printed["entries"][0]["leaf_index"], 1);
    args.token = None;
    let err = merklog_cli::client::append::run(append(args), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}
