//! Audit events over real gRPC, on the embedded SQLite store and on
//! PostgreSQL (`DATABASE_URL`): AppendEvents receipts checked by the
//! verifying client, event-id deduplication, `submitted_by` from the
//! token, the reserved prefix of the opaque Append, searches with every
//! filter, pagination while appends go on, and the field each bad input is
//! refused for.

mod client_common;

use std::sync::Arc;

use client_common::signer;
use merklog_client::{Client, ClientError};
use merklog_event::{
    ActionMatch, ActorInput, EventInput, EventQuery, OriginInput, Outcome, ResourceInput, TimeField,
};
use merklog_proto::v1;
use merklog_server::{token_hash, AuthConfig, ServerConfig};
use merklog_sth::LogSigner;
use merklog_tests::{TestDb, TestServer};
use tonic::Code;

/// A change to a request, for the table of bad inputs.
type Change<T> = Box<dyn Fn(&mut T)>;

const WRITER: &str = "writer-token";

/// A log whose one writer is named "ingest", reads open.
struct EventLog {
    server: TestServer,
    signer: LogSigner,
    _db: TestDb,
}

impl EventLog {
    async fn start(db: TestDb) -> EventLog {
        let text = format!(
            "[[client]]\nname = \"ingest\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n",
            token_hash(WRITER)
        );
        let config = ServerConfig {
            auth: AuthConfig::from_toml(&text).unwrap(),
            ..client_common::config()
        };
        let signer = signer();
        let store = Arc::new(db.open().await.unwrap());
        let server = TestServer::start(store, signer.clone(), config)
            .await
            .unwrap();
        EventLog {
            server,
            signer,
            _db: db,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&self.server.url(), self.signer.public_key().clone())
            .await
            .unwrap()
            .with_token(WRITER)
            .unwrap()
    }

    /// A raw gRPC call carrying the writer's token.
    fn authorized<T>(message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.metadata_mut()
            .insert("authorization", format!("Bearer {WRITER}").parse().unwrap());
        req
    }
}

fn event(actor: &str, action: &str, occurred_at: &str) -> EventInput {
    EventInput {
        event_id: None,
        occurred_at: occurred_at.into(),
        actor: ActorInput {
            id: actor.into(),
            kind: "user".into(),
        },
        action: action.into(),
        resource: None,
        outcome: "success".into(),
        origin: None,
        request_id: None,
        trace_id: None,
        attributes: None,
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Integration times of everything appended in a test: the last hour to
/// the next.
fn window(time_field: TimeField) -> EventQuery {
    let now = now_nanos();
    EventQuery {
        page_size: 100,
        ..EventQuery::window(
            time_field,
            now - 3600 * 1_000_000_000,
            now + 3600 * 1_000_000_000,
        )
    }
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

on_both_backends!(
    appended_events_come_back_verified_and_deduplicated,
    the_opaque_append_refuses_event_leaves,
    searches_filter_and_order_newest_first,
    pages_neither_repeat_nor_skip_while_appends_go_on,
    bad_inputs_are_refused_naming_the_field,
);

async fn appended_events_come_back_verified_and_deduplicated(db: TestDb) {
    let log = EventLog::start(db).await;
    let mut client = log.client().await;
    let mut login = event("alice", "user.login", "2026-12-03T10:00:00.5+01:00");
    login.event_id = Some("evt-1".into());
    login.attributes = Some(serde_json::json!({"mfa": true, "n": 2}));
    login.resource = Some(ResourceInput {
        kind: "account".into(),
        id: "42".into(),
    });
    login.origin = Some(OriginInput {
        service: Some("web".into()),
        host: None,
        source_ip: Some("10.0.0.7".into()),
    });
    let generated = event("bob", "user.logout", "2026-12-03T10:01:00Z");
    let receipt = client
        .append_events(vec![login.clone(), generated, login.clone()])
        .await
        .unwrap();
    assert_eq!(receipt.head.tree_size(), 2);
    let [first, second, third] = &receipt.events[..] else {
        panic!("three answers")
    };
    assert_eq!((first.proof.leaf_index, first.duplicate), (0, false));
    assert_eq!(first.stored.event.event_id, "evt-1");
    assert_eq!(first.stored.event.submitted_by, "ingest");
    assert_eq!(
        first.stored.event.occurred_at.text(),
        "2026-12-03T10:00:00.5+01:00"
    );
    assert_eq!(
        first.proof.leaf_hash,
        merklog_merkle::leaf_hash(&first.entry)
    );
    assert!(merklog_event::is_event_entry(&first.entry));
    // A generated id is a UUIDv7.
    assert_eq!((second.proof.leaf_index, second.duplicate), (1, false));
    let id = &second.stored.event.event_id;
    assert_eq!((id.len(), &id[14..15]), (36, "7"), "{id}");
    // The same id later in the call: the original leaf.
    assert_eq!((third.proof.leaf_index, third.duplicate), (0, true));
    assert_eq!(third.proof.leaf_hash, first.proof.leaf_hash);
    assert_eq!(third.entry, first.entry);
    assert!(third.same_as_sent);

    // Across calls: the original index, hash and bytes, nothing added.
    let again = client.append_events(vec![login.clone()]).await.unwrap();
    assert_eq!(again.head.tree_size(), 2);
    assert!(again.events[0].duplicate);
    assert_eq!(again.events[0].proof.leaf_index, 0);
    assert_eq!(again.events[0].entry, first.entry);
    // Another event under a stored id is answered with the stored one, and
    // the client says it differs.
    let mut other = event("mallory", "user.login", "2026-12-03T11:00:00Z");
    other.event_id = Some("evt-1".into());
    let clash = client.append_events(vec![other]).await.unwrap();
    assert!(clash.events[0].duplicate && !clash.events[0].same_as_sent);
    assert_eq!(clash.events[0].stored.event.actor.id, "alice");

    // A duplicate batched behind its own first write (pipelined batches)
    // still lands on one leaf: many callers, one id.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut c = log.client().await;
        let mut e = event("carol", "file.read", "2026-12-03T12:00:00Z");
        e.event_id = Some("evt-race".into());
        e.attributes = Some(serde_json::json!({"caller": i}));
        tasks.push(tokio::spawn(async move { c.append_events(vec![e]).await }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        let r = t.await.unwrap().unwrap();
        indexes.push(r.events[0].proof.leaf_index);
    }
    indexes.dedup();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert_eq!(client.latest_head().await.unwrap().tree_size(), 3);

    // An anonymous caller cannot append events where rules exist.
    let mut anonymous = Client::connect(&log.server.url(), log.signer.public_key().clone())
        .await
        .unwrap();
    match anonymous
        .append_events(vec![event("x", "y", "2026-12-03T10:00:00Z")])
        .await
    {
        Err(ClientError::Status {
            code: Code::Unauthenticated,
            ..
        }) => {}
        other => panic!("unexpected {other:?}"),
    }
}

async fn the_opaque_append_refuses_event_leaves(db: TestDb) {
    let log = EventLog::start(db).await;
    let mut rpc = log.server.client().await.unwrap();
    let mut forged = merklog_event::ENTRY_PREFIX.to_vec();
    forged.extend_from_slice(br#"{"event":{},"salt":""}"#);
    let status = rpc
        .append(EventLog::authorized(v1::AppendRequest {
            entries: vec![b"fine".to_vec(), forged],
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("entries[1]: starts with"),
        "{}",
        status.message()
    );
    // A caller cannot name who submitted.
    let mut wire = merklog_proto::events::event_input_to_wire(&event(
        "alice",
        "user.login",
        "2026-12-03T10:00:00Z",
    ));
    wire.submitted_by = "root".into();
    let status = rpc
        .append_events(EventLog::authorized(v1::AppendEventsRequest {
            events: vec![wire],
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("events[0].submitted_by: is output only"),
        "{}",
        status.message()
    );
    assert_eq!(
        log.client().await.latest_head().await.unwrap().tree_size(),
        0
    );
}

async fn searches_filter_and_order_newest_first(db: TestDb) {
    let log = EventLog::start(db).await;
    let mut client = log.client().await;
    let mut all = Vec::new();
    for (i, (actor, action, outcome)) in [
        ("alice", "user.login", "success"),
        ("bob", "user.login", "failure"),
        ("alice", "db.query", "success"),
        ("carol", "user.logout", "denied"),
        ("alice", "user.login", "denied"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut e = event(actor, action, &format!("2026-12-03T10:0{i}:00Z"));
        e.outcome = outcome.into();
        e.resource = Some(ResourceInput {
            kind: "doc".into(),
            id: format!("d{}", i % 2),
        });
        e.origin = Some(OriginInput {
            service: Some(if i < 3 { "web" } else { "api" }.into()),
            host: Some(format!("h{i}")),
            source_ip: Some(format!("10.0.0.{i}")),
        });
        e.request_id = Some(format!("req-{i}"));
        e.trace_id = Some(format!("trace-{}", i % 2));
        e.attributes = Some(
            serde_json::json!({"n": i, "tags": {"team": if i % 2 == 0 { "red" } else { "blue" }}}),
        );
        // One call per event: integration times differ or tie, either way
        // the order is (time, index) descending.
        let r = client.append_events(vec![e]).await.unwrap();
        all.push(r.events[0].stored.event.event_id.clone());
    }
    let mut reader = log.client().await;
    // Everything, newest first.
    let page = reader
        .search_events(&window(TimeField::IntegratedAt))
        .await
        .unwrap();
    let indexes: Vec<u64> = page.hits.iter().map(|h| h.proof.leaf_index).collect();
    assert_eq!(indexes, [4, 3, 2, 1, 0]);
    assert!(page.next_cursor.is_none());
    // By occurred time.
    let page = reader
        .search_events(&EventQuery {
            since_nanos: merklog_event::OccurredAt::parse("2026-12-03T10:01:00Z")
                .unwrap()
                .unix_nanos(),
            until_nanos: merklog_event::OccurredAt::parse("2026-12-03T10:04:00Z")
                .unwrap()
                .unix_nanos(),
            ..window(TimeField::OccurredAt)
        })
        .await
        .unwrap();
    let indexes: Vec<u64> = page.hits.iter().map(|h| h.proof.leaf_index).collect();
    assert_eq!(indexes, [3, 2, 1]);
    let filters: Vec<(EventQuery, Vec<u64>)> = vec![
        (
            EventQuery {
                actor_id: Some("alice".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![4, 2, 0],
        ),
        (
            EventQuery {
                actor_kind: Some("service".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![],
        ),
        (
            EventQuery {
                action: Some(ActionMatch::Exact("user.login".into())),
                ..window(TimeField::IntegratedAt)
            },
            vec![4, 1, 0],
        ),
        (
            EventQuery {
                action: Some(ActionMatch::Prefix("user.".into())),
                ..window(TimeField::IntegratedAt)
            },
            vec![4, 3, 1, 0],
        ),
        (
            EventQuery {
                resource_kind: Some("doc".into()),
                resource_id: Some("d1".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![3, 1],
        ),
        (
            EventQuery {
                outcome: Some(Outcome::Denied),
                ..window(TimeField::IntegratedAt)
            },
            vec![4, 3],
        ),
        (
            EventQuery {
                origin_service: Some("api".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![4, 3],
        ),
        (
            EventQuery {
                origin_host: Some("h2".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![2],
        ),
        (
            EventQuery {
                source_ip: Some("10.0.0.1".parse().unwrap()),
                ..window(TimeField::IntegratedAt)
            },
            vec![1],
        ),
        (
            EventQuery {
                request_id: Some("req-3".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![3],
        ),
        (
            EventQuery {
                trace_id: Some("trace-0".into()),
                ..window(TimeField::IntegratedAt)
            },
            vec![4, 2, 0],
        ),
        (
            EventQuery {
                event_id: Some(all[1].clone()),
                ..window(TimeField::IntegratedAt)
            },
            vec![1],
        ),
        (
            EventQuery {
                attributes_contain: Some(
                    serde_json::json!({"tags": {"team": "blue"}})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
                ..window(TimeField::IntegratedAt)
            },
            vec![3, 1],
        ),
        (
            EventQuery {
                actor_id: Some("alice".into()),
                outcome: Some(Outcome::Success),
                action: Some(ActionMatch::Prefix("db.".into())),
                ..window(TimeField::IntegratedAt)
            },
            vec![2],
        ),
    ];
    for (q, expected) in filters {
        let page = reader.search_events(&q).await.unwrap();
        let indexes: Vec<u64> = page.hits.iter().map(|h| h.proof.leaf_index).collect();
        assert_eq!(indexes, expected, "{q:?}");
        for hit in &page.hits {
            assert!(q.matches(&hit.stored.event, hit.proof.leaf_index, hit.integrated_ms));
            assert_eq!(hit.proof.tree_size, page.head.tree_size());
        }
    }
}

async fn pages_neither_repeat_nor_skip_while_appends_go_on(db: TestDb) {
    let log = EventLog::start(db).await;
    let mut client = log.client().await;
    let first: Vec<EventInput> = (0..25)
        .map(|i| event(&format!("u{i}"), "page.test", "2026-12-03T10:00:00Z"))
        .collect();
    for chunk in first.chunks(5) {
        client.append_events(chunk.to_vec()).await.unwrap();
    }
    // A writer appends on its own task while the reader pages.
    let mut writer = log.client().await;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let appender = tokio::spawn(async move {
        let mut n = 0;
        loop {
            if stop_rx.try_recv().is_ok() {
                return n;
            }
            writer
                .append_events(vec![event(
                    &format!("late{n}"),
                    "page.test",
                    "2026-12-03T10:00:00Z",
                )])
                .await
                .unwrap();
            n += 1;
        }
    });
    // Occurred time: every event of this test shares one, so the order is
    // by index alone, and events appended meanwhile are newer than the
    // cursor and do not show up on later pages.
    let mut query = EventQuery {
        action: Some(ActionMatch::Exact("page.test".into())),
        page_size: 4,
        ..window(TimeField::OccurredAt)
    };
    let t = merklog_event::OccurredAt::parse("2026-12-03T10:00:00Z")
        .unwrap()
        .unix_nanos();
    query.since_nanos = t - 1_000_000_000;
    query.until_nanos = t + 1_000_000_000;
    let mut reader = log.client().await;
    let page = reader.search_events(&query).await.unwrap();
    let top = page.hits[0].proof.leaf_index;
    let mut seen: Vec<u64> = page.hits.iter().map(|h| h.proof.leaf_index).collect();
    let mut cursor = page.next_cursor;
    let mut pages = 1;
    while let Some(c) = cursor {
        query.cursor = Some(c);
        let page = reader.search_events(&query).await.unwrap();
        seen.extend(page.hits.iter().map(|h| h.proof.leaf_index));
        cursor = page.next_cursor;
        pages += 1;
    }
    stop_tx.send(()).unwrap();
    appender.await.unwrap();
    let expected: Vec<u64> = (0..=top).rev().collect();
    assert_eq!(
        seen, expected,
        "every event up to the first page's newest, once, in order"
    );
    assert!(pages >= 7, "{pages} pages");
}

async fn bad_inputs_are_refused_naming_the_field(db: TestDb) {
    let log = EventLog::start(db).await;
    let mut rpc = log.server.client().await.unwrap();
    let good = merklog_proto::events::event_input_to_wire(&event(
        "alice",
        "user.login",
        "2026-12-03T10:00:00Z",
    ));
    let append_cases: Vec<(Change<v1::Event>, &str)> = vec![
        (
            Box::new(|e| e.occurred_at = "yesterday".into()),
            "events[0].occurred_at: ",
        ),
        (
            Box::new(|e| e.outcome = "maybe".into()),
            "events[0].outcome: ",
        ),
        (
            Box::new(|e| e.attributes = "[1,2]".into()),
            "events[0].attributes",
        ),
        (
            Box::new(|e| e.attributes = "{".into()),
            "events[0].attributes: not JSON",
        ),
        (
            Box::new(|e| e.action = "a".repeat(129)),
            "events[0].action: ",
        ),
        (Box::new(|e| e.actor = None), "events[0].actor: required"),
        (
            Box::new(|e| e.submitted_by = "x".into()),
            "events[0].submitted_by: ",
        ),
    ];
    for (change, expected) in append_cases {
        let mut e = good.clone();
        change(&mut e);
        let status = rpc
            .append_events(EventLog::authorized(v1::AppendEventsRequest {
                events: vec![e],
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().starts_with(expected),
            "{} (expected {expected})",
            status.message()
        );
    }
    let status = rpc
        .append_events(EventLog::authorized(v1::AppendEventsRequest {
            events: vec![],
        }))
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("events: at least one"),
        "{}",
        status.message()
    );

    let ok = v1::SearchEventsRequest {
        since: "2026-12-03T00:00:00Z".into(),
        until: "2026-12-04T00:00:00Z".into(),
        ..Default::default()
    };
    rpc.search_events(ok.clone()).await.unwrap();
    let search_cases: Vec<(Change<v1::SearchEventsRequest>, &str)> = vec![
        (Box::new(|r| r.since.clear()), "since: required"),
        (
            Box::new(|r| r.until = "2026-13-01T00:00:00Z".into()),
            "until: not an RFC 3339 time",
        ),
        (
            Box::new(|r| r.outcome = Some("maybe".into())),
            "outcome: must be one of",
        ),
        (
            Box::new(|r| r.actor_id = Some("a".repeat(300))),
            "actor_id: ",
        ),
        (
            Box::new(|r| r.attributes_contain = "[1]".into()),
            "attributes_contain: must be a JSON object",
        ),
        (
            Box::new(|r| r.page_size = 1001),
            "page_size: 1001 hits asked; at most 1000",
        ),
        (
            Box::new(|r| r.since = "2020-01-01T00:00:00Z".into()),
            "until: ",
        ),
        (Box::new(|r| r.cursor = "%%%".into()), "cursor: "),
        (
            Box::new(|r| r.time_field = 9),
            "time_field: unknown value 9",
        ),
    ];
    for (change, expected) in search_cases {
        let mut r = ok.clone();
        change(&mut r);
        let status = rpc.search_events(r).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        assert!(
            status.message().starts_with(expected),
            "{} (expected {expected})",
            status.message()
        );
    }
    let info = rpc
        .get_log_info(v1::GetLogInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.max_events_per_append, 1000);
    assert_eq!(info.max_events_page_size, 1000);
    assert_eq!(info.max_search_window_seconds, 366 * 86_400);
}
