//! Running the `merklog` binary in tests.

#![allow(dead_code, reason = "each test binary uses part of this module")]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use merklog_merkle::{leaf_hash, merkle_tree_hash, verify_consistency, verify_inclusion, Hash};
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_proto::{hash_from_wire, hashes_from_wire, required_sth};
use merklog_sth::{LogSigner, PublicKey, SignedTreeHead};
use tonic::transport::Channel;

/// A `merklog serve` process, killed when dropped.
pub struct Server {
    pub child: tokio::process::Child,
    pub url: String,
}

/// Writes a new log key to `dir/key.pem`, and its public key to
/// `dir/public.pem`; returns the key file's path and the signer.
pub fn new_log_key(dir: &Path) -> (PathBuf, LogSigner) {
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let key_path = dir.join("key.pem");
    std::fs::write(&key_path, signer.to_pkcs8_pem()).unwrap();
    std::fs::write(dir.join("public.pem"), signer.public_key().pem()).unwrap();
    (key_path, signer)
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
    start_on(free_port(), database_url, key, log, extra).await
}

/// How long a test waits for a `merklog serve` to become ready, or to
/// exit when it is expected to refuse; past it the process is killed and
/// the test fails, so that no test hangs on a server.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `merklog serve` on `port` as [`start_with`] does. `key` is passed
/// as `--key` unless `extra` names a `--public-key`.
///
/// # Panics
/// When the server exits before it answers, or does not answer within
/// [`SERVE_TIMEOUT`] (it is killed then); the message holds its log.
pub async fn start_on(
    port: u16,
    database_url: &str,
    key: &Path,
    log: &Path,
    extra: &[&str],
) -> Server {
    let log_path = log;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", database_url])
        .args(if extra.contains(&"--public-key") {
            vec![]
        } else {
            vec!["--key".as_ref(), key.as_os_str()]
        })
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn merklog serve");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + SERVE_TIMEOUT;
    let server_log = || std::fs::read_to_string(log_path).unwrap_or_default();
    loop {
        if let Some(status) = child.try_wait().expect("poll merklog serve") {
            panic!(
                "merklog serve exited ({status}) before it was ready; its log:\n{}",
                server_log()
            );
        }
        let ready = tokio::time::timeout(Duration::from_secs(5), async {
            let mut client = LogClient::connect(url.clone()).await.ok()?;
            client
                .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
                .await
                .ok()
        })
        .await;
        if matches!(ready, Ok(Some(_))) {
            return Server { child, url };
        }
        if tokio::time::Instant::now() > deadline {
            // Dropping the child kills it.
            panic!(
                "merklog serve did not become ready within {SERVE_TIMEOUT:?}; its log:\n{}",
                server_log()
            );
        }
        // Nothing signals readiness but an answer: ask again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `merklog serve` with `args` when it is expected to refuse to start,
/// and returns its output.
///
/// # Panics
/// When it has not exited within [`SERVE_TIMEOUT`]: it is killed, and the
/// test fails saying so instead of hanging.
pub async fn serve_expecting_exit<I, A>(args: I) -> std::process::Output
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
        .arg("serve")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn merklog serve");
    match tokio::time::timeout(SERVE_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.expect("wait for merklog serve"),
        // The dropped future dropped the child, which killed it.
        Err(_) => panic!(
            "merklog serve {args:?} was expected to refuse to start but was still running \
             after {SERVE_TIMEOUT:?}; killed it"
        ),
    }
}

/// Starts `merklog serve` as [`start_with`] does, with no extra arguments.
pub async fn start(database_url: &str, key: &Path, log: &Path) -> Server {
    start_with(database_url, key, log, &[]).await
}

/// What writers saw acknowledged: each entry with its index, and each head.
#[derive(Default)]
pub struct Seen {
    pub acknowledged: Vec<(u64, Vec<u8>)>,
    pub heads: Vec<SignedTreeHead>,
}

impl Seen {
    pub fn record(&mut self, index: u64, entry: Vec<u8>, head: SignedTreeHead) {
        self.acknowledged.push((index, entry));
        self.heads.push(head);
    }
}

/// Appends one entry and checks the answer: the head is signed by `key` and
/// the proof places the entry under it. Returns the index and head; a
/// refusal is returned, a wrong answer panics.
pub async fn append_one(
    client: &mut LogClient<Channel>,
    key: &PublicKey,
    entry: Vec<u8>,
) -> Result<(u64, SignedTreeHead), tonic::Status> {
    let resp = client
        .append(v1::AppendRequest {
            entries: vec![entry.clone()],
        })
        .await?
        .into_inner();
    let sth = required_sth(resp.tree_head.as_ref(), "tree_head").unwrap();
    key.verify(&sth).expect("acknowledged head is signed");
    let e = &resp.entries[0];
    let proof = hashes_from_wire(&e.inclusion_proof, "proof").unwrap();
    verify_inclusion(
        e.leaf_index,
        sth.head.tree_size,
        &leaf_hash(&entry),
        &proof,
        &sth.head.root_hash,
    )
    .expect("acknowledged proof verifies");
    Ok((e.leaf_index, sth))
}

/// Checks the log `client` serves against what was seen: it recomputes to
/// its signed head, every acknowledged entry is at its index, and every head
/// seen is consistent with the latest.
pub async fn check_log(client: &mut LogClient<Channel>, key: &PublicKey, seen: &Seen) {
    let latest = client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    let latest = required_sth(Some(&latest), "tree_head").unwrap();
    key.verify(&latest).unwrap();
    let n = latest.head.tree_size;

    let mut leaves: Vec<Hash> = Vec::with_capacity(n as usize);
    let mut data: Vec<Vec<u8>> = Vec::with_capacity(n as usize);
    while (leaves.len() as u64) < n {
        let start = leaves.len() as u64;
        let page = client
            .get_entries(v1::GetEntriesRequest {
                start,
                end: (start + 1000).min(n),
            })
            .await
            .unwrap()
            .into_inner();
        for e in page.entries {
            assert_eq!(
                hash_from_wire(&e.leaf_hash, "leaf_hash").unwrap(),
                leaf_hash(&e.data)
            );
            leaves.push(leaf_hash(&e.data));
            data.push(e.data);
        }
    }
    assert_eq!(
        merkle_tree_hash(&leaves),
        latest.head.root_hash,
        "the log recomputes to its head"
    );

    for (index, entry) in &seen.acknowledged {
        assert!(
            *index < n,
            "acknowledged index {index} is beyond the final size {n}"
        );
        assert_eq!(
            &data[*index as usize], entry,
            "acknowledged entry moved or changed"
        );
    }
    for head in &seen.heads {
        assert!(
            head.head.tree_size <= n,
            "a head seen is larger than the final one"
        );
        let proof = client
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                first_size: head.head.tree_size,
                second_size: n,
            })
            .await
            .unwrap()
            .into_inner();
        let proof = hashes_from_wire(&proof.proof, "proof").unwrap();
        verify_consistency(
            head.head.tree_size,
            n,
            &head.head.root_hash,
            &latest.head.root_hash,
            &proof,
        )
        .unwrap_or_else(|e| panic!("head of size {} forked: {e}", head.head.tree_size));
    }
}
