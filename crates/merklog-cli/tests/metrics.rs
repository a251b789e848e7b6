//! `merklog serve --metrics-listen` exposes Prometheus metrics that move
//! with the log.

mod common;

use merklog_proto::v1::{self, log_client::LogClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

/// Returns the value of the first sample line starting with `name`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_follow_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = common::new_log_key(dir.path());
    let db = format!("sqlite://{}", dir.path().join("log.db").display());
    let metrics_addr = format!("127.0.0.1:{}", common::free_port());
    let server = common::start_with(
        &db,
        &key,
        &dir.path().join("server.log"),
        &["--metrics-listen", &metrics_addr],
    )
    .await;
    let mut client = LogClient::connect(server.url.clone()).await.unwrap();
    for i in 0..3u8 {
        client
            .append(v1::AppendRequest {
                entries: vec![vec![i; 10], vec![i + 100; 10]],
            })
            .await
            .unwrap();
    }
    let bad = client.append(v1::AppendRequest { entries: vec![] }).await;
    assert!(bad.is_err());

    let text = scrape(&metrics_addr).await;
    assert_eq!(
        sample(&text, "merklog_appended_entries_total"),
        Some(6.0),
        "{text}"
    );
    assert_eq!(sample(&text, "merklog_tree_size"), Some(6.0), "{text}");
    assert_eq!(
        sample(&text, "merklog_append_calls_total{outcome=\"ok\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "merklog_append_calls_total{outcome=\"invalid_argument\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("merklog_integration_seconds"), "{text}");
    assert!(text.contains("merklog_batch_entries"), "{text}");
}
