//! `merklog serve --metrics-listen` exposes every metric of
//! `merklog_server::metrics::ALL` (the list docs/OPERATIONS.md documents, as
//! checked here too) from start, as the Prometheus text format at `/metrics`
//! only, and each one moves after the event it counts.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use merklog_proto::v1::{self, log_client::LogClient};
use merklog_server::metrics::{self as m, Kind, ALL};
use merklog_server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;
use tonic::Code;

/// An HTTP answer: status, content type and body.
struct Answer {
    status: u16,
    content_type: Option<String>,
    body: String,
}

async fn get(addr: &str, path: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let content_type = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned());
    Answer {
        status,
        content_type,
        body: body.to_owned(),
    }
}

/// One scrape: every sample by its series as rendered
/// (`name{label="value"}`), and the `# TYPE` of every name.
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut samples = BTreeMap::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (series, value) = line.rsplit_once(' ').expect("series value");
                samples.insert(series.to_owned(), value.parse().expect("a number"));
            }
        }
        Scrape {
            samples,
            types,
            text,
        }
    }

    /// The value of `series`; fails the test when it is not served.
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("{series} is not served:\n{}", self.text))
    }
}

fn series(name: &str, label: Option<(&str, &str)>) -> String {
    match label {
        Some((k, v)) => format!("{name}{{{k}=\"{v}\"}}"),
        None => name.to_owned(),
    }
}

async fn scrape(addr: &str) -> Scrape {
    let answer = get(addr, "/metrics").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    Scrape::parse(answer.body)
}

/// Scrapes until `ready` holds (a gauge that a background task updates, a
/// connection the server notices), failing after 30 s.
async fn scrape_until(addr: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = scrape(addr).await;
        if ready(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within 30 s:\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks that every metric of [`ALL`] is served with its type, every
/// series of it (each value of its label), and counters at 0.
fn assert_all_present_at_start(s: &Scrape) {
    for metric in ALL {
        assert_eq!(
            s.types.get(metric.name).map(String::as_str),
            Some(metric.kind.name()),
            "# TYPE of {}:\n{}",
            metric.name,
            s.text
        );
        let labels: Vec<Option<(&str, &str)>> = match metric.label {
            Some((k, values)) => values.iter().map(|v| Some((k, *v))).collect(),
            None => vec![None],
        };
        for label in labels {
            match metric.kind {
                Kind::Counter => assert_eq!(s.get(&series(metric.name, label)), 0.0),
                Kind::Gauge => {
                    s.get(&series(metric.name, label));
                }
                Kind::Histogram => {
                    assert_eq!(s.get(&format!("{}_count", metric.name)), 0.0);
                    s.get(&format!("{}_sum", metric.name));
                    for le in metric.buckets {
                        let bucket = format!("{}_bucket{{le=\"{le}\"}}", metric.name);
                        assert_eq!(s.get(&bucket), 0.0, "{bucket}");
                    }
                    s.get(&format!("{}_bucket{{le=\"+Inf\"}}", metric.name));
                }
            }
        }
    }
}

fn with_token<T>(message: T, authorization: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().unwrap());
    request
}

/// The size of the append held in the database: what it holds in flight
/// (its body, counted twice, and its answer) leaves no room for a page.
const HELD_ENTRY_BYTES: usize = 60_000;

const WRITER: &str = "Bearer writer-secret";
const READER: &str = "Bearer reader-secret";

async fn append(
    client: &mut LogClient<Channel>,
    authorization: &str,
    entries: &[&[u8]],
) -> Result<v1::AppendResponse, tonic::Status> {
    let entries = entries.iter().map(|e| e.to_vec()).collect();
    client
        .append(with_token(v1::AppendRequest { entries }, authorization))
        .await
        .map(tonic::Response::into_inner)
}

async fn inclusion_proof(client: &mut LogClient<Channel>, leaf_index: u64) {
    client
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(leaf_index)),
            tree_size: 0,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_served_from_start_and_moves_with_its_event() {
    let (db, _guard) = merklog_storage::testing::TempPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = common::new_log_key(dir.path());
    let public_key = dir.path().join("public.pem");
    let auth = dir.path().join("auth.toml");
    std::fs::write(
        &auth,
        format!(
            "[[client]]\nname = \"w\"\nrole = \"writer\"\ntoken_sha256 = \"{}\"\n\
             [[client]]\nname = \"r\"\nrole = \"reader\"\ntoken_sha256 = \"{}\"\n",
            merklog_server::token_hash("writer-secret"),
            merklog_server::token_hash("reader-secret"),
        ),
    )
    .unwrap();
    // Requests of at most 128 KiB and pages of 4 MiB make a GetEntries page
    // the largest call, and the bytes in flight are bounded at exactly one:
    // a page asked for while a large append is in flight is refused.
    let limits = Limits {
        max_request_bytes: 128 << 10,
        max_response_bytes: 4 << 20,
        ..Limits::default()
    };
    let page_slack = limits.largest_call_bytes() - limits.max_entries_answer_bytes();
    assert!(
        page_slack < 2 * HELD_ENTRY_BYTES,
        "a page and the held append fit together"
    );
    let max_request = limits.max_request_bytes.to_string();
    let max_response = limits.max_response_bytes.to_string();
    let max_inflight = limits.largest_call_bytes().to_string();
    let metrics_addr = format!("127.0.0.1:{}", common::free_port());
    let leader = common::start_with(
        &db,
        &key,
        &dir.path().join("leader.log"),
        &[
            "--metrics-listen",
            &metrics_addr,
            "--auth-file",
            auth.to_str().unwrap(),
            "--max-request-bytes",
            &max_request,
            "--max-response-bytes",
            &max_response,
            "--max-inflight-bytes",
            &max_inflight,
        ],
    )
    .await;

    // The endpoint: the exposition format's content type, /metrics only.
    let answer = get(&metrics_addr, "/metrics").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for path in ["/", "/metric", "/metrics/x", "/health"] {
        assert_eq!(get(&metrics_addr, path).await.status, 404, "{path}");
    }

    // From start: every series, counters at 0, histograms with buckets.
    let s = scrape(&metrics_addr).await;
    assert_all_present_at_start(&s);
    assert_eq!(
        s.get(&series(m::BUILD_INFO, Some(("version", m::VERSION)))),
        1.0
    );
    assert_eq!(s.get(m::LEADER), 1.0);
    assert_eq!(s.get(m::NODE_CACHE_LEAVES), 0.0);
    let s = scrape_until(&metrics_addr, "the empty log's head", |s| {
        s.samples.contains_key(m::HEAD_AGE_SECONDS) && s.get(m::TREE_SIZE) == 0.0
    })
    .await;
    assert!(s.get(m::HEAD_AGE_SECONDS) >= 0.0, "{}", s.text);

    let mut client = LogClient::connect(leader.url.clone()).await.unwrap();
    let ok = series(m::APPEND_CALLS, Some(("outcome", "ok")));

    // An append of two entries: one batch of 2.
    append(&mut client, WRITER, &[b"one", b"two"])
        .await
        .unwrap();
    let s = scrape(&metrics_addr).await;
    assert_eq!(s.get(m::APPENDED_ENTRIES), 2.0);
    assert_eq!(s.get(&ok), 1.0);
    assert_eq!(s.get(m::TREE_SIZE), 2.0);
    let count = |s: &Scrape, name: &str| s.get(&format!("{name}_count"));
    assert_eq!(count(&s, m::BATCH_ENTRIES), 1.0);
    assert_eq!(s.get(&format!("{}_sum", m::BATCH_ENTRIES)), 2.0);
    assert_eq!(
        s.get(&format!("{}_bucket{{le=\"1\"}}", m::BATCH_ENTRIES)),
        0.0
    );
    assert_eq!(
        s.get(&format!("{}_bucket{{le=\"2\"}}", m::BATCH_ENTRIES)),
        1.0
    );
    assert_eq!(count(&s, m::INTEGRATION_SECONDS), 1.0);
    assert!(s.get(&format!("{}_sum", m::INTEGRATION_SECONDS)) > 0.0);
    // The cache's filler takes the new leaves in on its next round.
    scrape_until(&metrics_addr, "the node cache taking the leaves in", |s| {
        s.get(m::NODE_CACHE_LEAVES) > 0.0
    })
    .await;

    // The same entries again: answered as duplicates, nothing appended.
    let again = append(&mut client, WRITER, &[b"one", b"two"])
        .await
        .unwrap();
    assert!(again.entries.iter().all(|e| e.duplicate));
    let s = scrape(&metrics_addr).await;
    assert_eq!(s.get(&ok), 2.0);
    assert_eq!(s.get(m::APPENDED_ENTRIES), 2.0);

    // A refused append counts under its code.
    let refused = append(&mut client, WRITER, &[]).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let s = scrape(&metrics_addr).await;
    assert_eq!(
        s.get(&series(
            m::APPEND_CALLS,
            Some(("outcome", "invalid_argument"))
        )),
        1.0
    );

    // Each reason access control refuses for.
    let refusals: [(&str, Option<&str>, Code); 4] = [
        (m::AUTH_MISSING_TOKEN, None, Code::Unauthenticated),
        (
            m::AUTH_UNKNOWN_TOKEN,
            Some("Bearer not-a-token"),
            Code::Unauthenticated,
        ),
        (
            m::AUTH_MALFORMED_HEADER,
            Some("Basic d3JpdGVyOnNlY3JldA=="),
            Code::Unauthenticated,
        ),
        (
            m::AUTH_INSUFFICIENT_ROLE,
            Some(READER),
            Code::PermissionDenied,
        ),
    ];
    assert_eq!(refusals.len(), m::AUTH_REASONS.len());
    for (reason, authorization, code) in refusals {
        let request = v1::AppendRequest {
            entries: vec![b"denied".to_vec()],
        };
        let status = match authorization {
            Some(a) => client.append(with_token(request, a)).await,
            None => client.append(request).await,
        }
        .unwrap_err();
        assert_eq!(status.code(), code, "{reason}: {status:?}");
        let s = scrape(&metrics_addr).await;
        assert_eq!(
            s.get(&series(m::AUTH_FAILURES, Some(("reason", reason)))),
            1.0,
            "{reason}"
        );
    }

    // A proof reads the nodes below the cache from the store.
    let before = scrape(&metrics_addr).await.get(m::PROOF_NODE_QUERIES);
    inclusion_proof(&mut client, 0).await;
    let s = scrape(&metrics_addr).await;
    assert!(s.get(m::PROOF_NODE_QUERIES) > before, "{}", s.text);

    // The head's age grows while the log is idle, and falls back once a
    // new head is signed.
    let idle = scrape(&metrics_addr).await.get(m::HEAD_AGE_SECONDS);
    let s = scrape_until(&metrics_addr, "the head ageing while idle", |s| {
        s.get(m::HEAD_AGE_SECONDS) >= idle + 1.0
    })
    .await;
    let aged = s.get(m::HEAD_AGE_SECONDS);
    append(&mut client, WRITER, &[b"three"]).await.unwrap();
    scrape_until(&metrics_addr, "a fresh head's age", |s| {
        s.get(m::HEAD_AGE_SECONDS) < aged
    })
    .await;

    // One more connection is counted while it is open.
    let open = scrape(&metrics_addr).await.get(m::CONNECTIONS);
    assert!(open >= 1.0, "the test's own connection is open");
    let mut second = LogClient::connect(leader.url.clone()).await.unwrap();
    second
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap();
    scrape_until(&metrics_addr, "a second connection", |s| {
        s.get(m::CONNECTIONS) > open
    })
    .await;
    drop(second);

    // An append held in the database (its tables locked by the test):
    // the queue and the bytes in flight show it; a page asked for meanwhile
    // finds the bytes in flight at their bound; the append's connection is
    // then ended, and its batch fails as a storage error.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE tree_heads IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut writer = client.clone();
    let held =
        tokio::spawn(async move { append(&mut writer, WRITER, &[&[7u8; HELD_ENTRY_BYTES]]).await });
    scrape_until(&metrics_addr, "an append waiting in the queue", |s| {
        s.get(m::QUEUE_DEPTH) >= 1.0 && s.get(m::INFLIGHT_BYTES) > 0.0
    })
    .await;
    let page = client
        .get_entries(v1::GetEntriesRequest { start: 0, end: 3 })
        .await
        .unwrap_err();
    assert_eq!(page.code(), Code::ResourceExhausted, "{page:?}");
    assert_eq!(scrape(&metrics_addr).await.get(m::INFLIGHT_REFUSED), 1.0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // The held append's statement waits for the lock.
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
             AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut *lock)
        .await
        .unwrap();
        if ended > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held append never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed = held.await.unwrap().unwrap_err();
    lock.rollback().await.unwrap();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    let s = scrape(&metrics_addr).await;
    assert_eq!(
        s.get(&series(
            m::STORAGE_ERRORS,
            Some(("operation", m::STORAGE_BATCH))
        )),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(
        s.get(&series(m::APPEND_CALLS, Some(("outcome", "unavailable")))),
        1.0
    );
    scrape_until(
        &metrics_addr,
        "the queue and bytes in flight drained",
        |s| s.get(m::QUEUE_DEPTH) == 0.0 && s.get(m::INFLIGHT_BYTES) == 0.0,
    )
    .await;
    // The log goes on after the failed batch.
    append(&mut client, WRITER, &[b"after"]).await.unwrap();

    // A read-only instance of the same log: not the leader, it serves the
    // leader's head; with one connection allowed, a second is refused.
    let follower_metrics = format!("127.0.0.1:{}", common::free_port());
    let follower = common::start_with(
        &db,
        &key,
        &dir.path().join("follower.log"),
        &[
            "--read-only",
            "--public-key",
            public_key.to_str().unwrap(),
            "--metrics-listen",
            &follower_metrics,
            "--max-connections",
            "1",
        ],
    )
    .await;
    let s = scrape_until(&follower_metrics, "the follower's head", |s| {
        s.get(m::TREE_SIZE) == 4.0
    })
    .await;
    assert_eq!(s.get(m::LEADER), 0.0);
    assert_eq!(s.get(m::CONNECTIONS_REFUSED), 0.0);
    // The readiness check's connection may still hold the one slot for a
    // moment after the start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut holder = loop {
        if let Ok(mut c) = LogClient::connect(follower.url.clone()).await {
            if c.get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
                .await
                .is_ok()
            {
                break c;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never took a connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if let Ok(mut c) = LogClient::connect(follower.url.clone()).await {
        let refused = c
            .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
            .await;
        assert!(refused.is_err(), "a second connection was served");
    }
    scrape_until(&follower_metrics, "a refused connection", |s| {
        s.get(m::CONNECTIONS_REFUSED) >= 1.0
    })
    .await;
    holder
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap();
}

/// The metrics table of docs/OPERATIONS.md lists exactly [`ALL`]: names,
/// types, labels and label values.
#[test]
fn the_documented_table_is_the_list_the_server_records() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/OPERATIONS.md"
    ))
    .unwrap();
    let table = docs
        .split_once("| metric | type | labels | meaning |\n|---|---|---|---|\n")
        .expect("the metrics table in docs/OPERATIONS.md")
        .1;
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut documented = Vec::new();
    for row in table.lines().take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.trim_matches('|').split(" | ").collect();
        assert_eq!(cells.len(), 4, "{row}");
        let name = ticked(cells[0]).concat();
        let kind = cells[1].trim().to_owned();
        let label = ticked(cells[2])
            .split_first()
            .map(|(label, values)| (label.clone(), values.to_vec()));
        documented.push((name, kind, label));
    }
    let recorded: Vec<_> = ALL
        .iter()
        .map(|metric| {
            let label = metric.label.map(|(label, values)| {
                // The version varies by release: the table names the label.
                let values = if values == [m::VERSION] {
                    Vec::new()
                } else {
                    values.iter().map(|v| (*v).to_owned()).collect()
                };
                (label.to_owned(), values)
            });
            (metric.name.to_owned(), metric.kind.name().to_owned(), label)
        })
        .collect();
    assert_eq!(documented, recorded);
}
