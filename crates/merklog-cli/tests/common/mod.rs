//! Running the `merklog` binary in tests.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use merklog_proto::v1::{self, log_client::LogClient};

/// A `merklog serve` process, killed when dropped.
pub struct Server {
    pub child: tokio::process::Child,
    pub url: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `merklog serve` on a free port with `extra` arguments and waits
/// until it answers.
pub async fn start_with(database_url: &str, key: &Path, log: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .arg("--key")
        .arg(key)
        .args(extra)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn merklog serve");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if let Ok(mut c) = LogClient::connect(url.clone()).await {
            if c.get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
                .await
                .is_ok()
            {
                return Server { child, url };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("merklog serve did not become ready; see its log");
}

/// Starts `merklog serve` as [`start_with`] does, with no extra arguments.
pub async fn start(database_url: &str, key: &Path, log: &Path) -> Server {
    start_with(database_url, key, log, &[]).await
}
