//! What a client refuses before it trusts or sends anything: a head the log
//! dated in the future, and a bearer token bound for a plain-text address
//! that is not this machine.

mod client_common;

use std::sync::Arc;

use client_common::{config, signer, Log, Scratch};
use merklog_cli::client::sth::{self, SthArgs};
use merklog_cli::client::OutputArgs;
use merklog_client::{Client, ClientError};
use merklog_server::Clock;
use merklog_tests::{TestDb, TestServer};

/// The log's clock, an hour ahead of this machine's.
struct HourAhead;

impl Clock for HourAhead {
    fn now_ms(&self) -> u64 {
        merklog_server::SystemClock.now_ms() + 3_600_000
    }
}

/// A log whose heads are signed with its real key, dated an hour from now.
async fn log_an_hour_ahead() -> Log {
    let db = TestDb::sqlite();
    let store = Arc::new(db.open().await.expect("open the store"));
    let signer = signer();
    let server =
        TestServer::start_with_clock(store.clone(), signer.clone(), config(), Arc::new(HourAhead))
            .await
            .expect("start the server");
    let log = Log {
        server,
        store,
        signer,
        db,
    };
    let mut raw = log.server.client().await.unwrap();
    raw.append(merklog_proto::v1::AppendRequest {
        entries: vec![b"from the future".to_vec()],
    })
    .await
    .unwrap();
    log
}

#[tokio::test]
async fn a_head_dated_in_the_future_is_refused_and_not_trusted() {
    let log = log_an_hour_ahead().await;
    let scratch = Scratch::new();
    let state = scratch.path("state.json");

    let mut client = log
        .client()
        .await
        .with_state_file(&state)
        .expect("no state yet");
    let err = client.latest_head().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::FutureHead {
                tree_size: 1,
                max_skew_ms: 300_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(client.trusted_head().is_none());
    assert!(!state.exists(), "a future head is not saved");

    // The command: exit code 1, naming the failure and the option.
    let args = SthArgs {
        log: log.args(&scratch, Some(state.clone())),
        out: OutputArgs { json: true },
    };
    let err = sth::run(args.clone(), &mut Vec::new()).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert_eq!(err.kind(), "future_head");
    let text = err.to_string();
    assert!(text.starts_with("future head: "), "{text}");
    assert!(text.contains("--max-clock-skew"), "{text}");
    assert!(!state.exists());

    // A user who knows the clocks differ can allow for it.
    let mut allowed = args;
    allowed.log.safety.max_clock_skew = 2 * 3600;
    let mut out = Vec::new();
    sth::run(allowed, &mut out).await.unwrap();
    let head: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(head["tree_size"], 1);
}

#[tokio::test]
async fn a_token_goes_in_clear_text_only_to_this_machine() {
    let log = Log::start(TestDb::sqlite(), signer()).await;
    let scratch = Scratch::new();

    // An unroutable address and a name: refused before any connection is
    // tried (a connection to the first would wait out its 10 s timeout and
    // fail as a transport error instead).
    for server in ["http://10.255.255.1:7300", "http://log.example:7300"] {
        let mut args = SthArgs {
            log: log.args(&scratch, None),
            out: OutputArgs { json: false },
        };
        args.log.server = server.into();
        args.log.token = Some("writer-token".into());
        let err = sth::run(args, &mut Vec::new()).await.unwrap_err();
        assert_eq!(err.kind(), "insecure_token", "{server}: {err}");
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains(server), "{text}");
        assert!(text.contains("--allow-insecure-token"), "{text}");
    }

    // Loopback is this machine: the token goes.
    let mut args = SthArgs {
        log: log.args(&scratch, None),
        out: OutputArgs { json: false },
    };
    assert!(args.log.server.starts_with("http://127.0.0.1:"));
    args.log.token = Some("writer-token".into());
    sth::run(args, &mut Vec::new()).await.unwrap();

    // The library refuses the same way for a token added after connecting.
    let unconnected = Client::connect_with(
        "http://10.255.255.1:7300",
        log.signer.public_key().clone(),
        merklog_client::ClientOptions {
            token: Some("t".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(unconnected, ClientError::InsecureToken { .. }),
        "{unconnected:?}"
    );
}
