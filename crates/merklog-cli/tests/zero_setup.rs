//! `merklog serve` with no flags at all, in an empty directory: it creates
//! its key and its SQLite store under `./data`, takes appends, and a
//! restart continues the same log with the same key.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{append_one, free_port};
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_sth::LogSigner;

/// Starts `merklog serve` with no arguments in `cwd`, listening where
/// `MERKLOG_LISTEN` says (the one setting a test must make, so that tests
/// do not share port 7300), with no other `MERKLOG_*` variable from the
/// test's environment; waits until it answers.
async fn serve_bare(cwd: &Path, port: u16) -> tokio::process::Child {
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cwd.join("serve.log"))
        .unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MERKLOG_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("serve")
        .current_dir(cwd)
        .env("MERKLOG_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::from(output.try_clone().unwrap()))
        .stderr(Stdio::from(output))
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
                return child;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "merklog serve exited with {status}: {}",
                std::fs::read_to_string(cwd.join("serve.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("merklog serve did not become ready; see its log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_no_flags_sets_itself_up_and_takes_appends() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");

    let mut server = serve_bare(dir.path(), port).await;
    let key_path = dir.path().join("data/log-key.pem");
    let pem = std::fs::read_to_string(&key_path).expect("./data/log-key.pem was created");
    let signer = LogSigner::from_pkcs8_pem(&pem).unwrap();
    let key = signer.public_key().clone();
    assert!(dir.path().join("data/merklog.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key_path), 0o600, "the key is its owner's only");
        assert_eq!(mode(&dir.path().join("data/merklog.db")), 0o600);
    }
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("created a new log key"), "{log}");
    assert!(log.contains(&key.log_id().to_string()), "{log}");

    let mut client = LogClient::connect(url.clone()).await.unwrap();
    let (index, head) = append_one(&mut client, &key, b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!((index, head.head.tree_size), (0, 1));

    // A restart with no flags finds the same key and store and goes on.
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let _server = serve_bare(dir.path(), port).await;
    assert_eq!(
        std::fs::read_to_string(&key_path).unwrap(),
        pem,
        "the key is kept, not replaced"
    );
    let mut client = LogClient::connect(url).await.unwrap();
    let (index, head) = append_one(&mut client, &key, b"again".to_vec())
        .await
        .unwrap();
    assert_eq!((index, head.head.tree_size), (1, 2));
}
