//! Several instances on one PostgreSQL database: exactly one sequences,
//! followers refuse appends naming the leader and serve reads, a follower
//! takes over when the leader is killed, and nothing acknowledged is lost or
//! forked across the takeover. A read-only instance on a read-only session
//! serves reads and never leads.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    append_one, check_log, free_port, new_log_key, serve_expecting_exit, start_on, Seen, Server,
};
use merklog_proto::v1::{self, log_client::LogClient};
use merklog_proto::{hashes_from_wire, required_sth};
use merklog_sth::PublicKey;
use tonic::Code;

struct Instance {
    port: u16,
    url: String,
}

impl Instance {
    fn new() -> Self {
        let port = free_port();
        Instance {
            port,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn start(&self, db: &str, key: &std::path::Path, log: &std::path::Path) -> Server {
        start_on(
            self.port,
            db,
            key,
            log,
            &[
                "--leader-election",
                "--advertise-address",
                &self.url,
                "--poll-interval-ms",
                "200",
            ],
        )
        .await
    }
}

async fn try_append(
    url: &str,
    key: &PublicKey,
    entry: &[u8],
) -> Result<(u64, merklog_sth::SignedTreeHead), tonic::Status> {
    let mut client = LogClient::connect(url.to_owned())
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    append_one(&mut client, key, entry.to_vec()).await
}

/// Retries an append at `url` until it is accepted; panics after 30 s.
async fn append_when_leading(url: &str, key: &PublicKey, entry: &[u8]) -> u64 {
    for _ in 0..300 {
        if let Ok((index, _)) = try_append(url, key, entry).await {
            return index;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not start sequencing within 30 s");
}

/// The refusal a follower gives, once it names a leader (it learns the
/// leader at its first poll after start-up), with that leader.
async fn refusal(url: &str, key: &PublicKey) -> (String, Option<String>) {
    let mut last = (String::new(), None);
    for _ in 0..100 {
        let status = try_append(url, key, b"refused")
            .await
            .expect_err("a follower refuses appends");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let leader = status
            .metadata()
            .get("merklog-leader")
            .map(|v| v.to_str().unwrap().to_owned());
        last = (status.message().to_owned(), leader);
        if last.1.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Appends single entries to whichever instance accepts them until `stop`,
/// adding a permit to `acks` for each acknowledged. A refusal must be what
/// a follower or a dead leader gives: UNAVAILABLE (a follower's refusal, a
/// refused connection) or a transport error made on this side; any other
/// answer fails the test.
async fn writer(
    urls: [String; 2],
    key: PublicKey,
    id: usize,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    acks: Arc<tokio::sync::Semaphore>,
) {
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        for url in &urls {
            let entry = format!("writer {id} seq {seq}").into_bytes();
            match try_append(url, &key, &entry).await {
                Ok((index, head)) => {
                    seen.lock().unwrap().record(index, entry, head);
                    acks.add_permits(1);
                    seq += 1;
                }
                Err(status)
                    if status.code() == Code::Unavailable
                        || std::error::Error::source(&status).is_some() => {}
                Err(status) => panic!("writer {id}: {url} answered {status:?}"),
            }
        }
        // Not a synchronisation: it keeps the writers from spinning on a
        // follower's refusals.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the writers have had `n` more appends acknowledged.
async fn acknowledged(acks: &tokio::sync::Semaphore, n: u32, when: &str) {
    tokio::time::timeout(Duration::from_secs(30), acks.acquire_many(n))
        .await
        .unwrap_or_else(|_| panic!("no {n} appends acknowledged {when} within 30 s"))
        .unwrap()
        .forget();
}

async fn latest_size(url: &str) -> u64 {
    let mut client = LogClient::connect(url.to_owned()).await.unwrap();
    let sth = client
        .get_signed_tree_head(v1::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    sth.tree_size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_dies_without_forking() {
    let (db, _guard) = merklog_storage::testing::TempPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, signer) = new_log_key(dir.path());
    let public_path = dir.path().join("public.pem");
    let key = signer.public_key().clone();
    let log = dir.path().join("servers.log");
    eprintln!("server logs: {}", log.display());

    let (a, b) = (Instance::new(), Instance::new());
    let mut server_a = a.start(&db, &key_path, &log).await;
    let first = append_when_leading(&a.url, &key, b"first").await;
    assert_eq!(first, 0);
    let server_b = b.start(&db, &key_path, &log).await;

    // B follows: it names A and serves what A committed.
    let (message, leader) = refusal(&b.url, &key).await;
    assert_eq!(leader.as_deref(), Some(a.url.as_str()), "{message}");
    assert!(
        message.contains(&format!("leader at {}", a.url)),
        "{message}"
    );
    for _ in 0..100 {
        if latest_size(&b.url).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        latest_size(&b.url).await,
        1,
        "the follower serves the leader's head"
    );

    // A read-only instance over a read-only session: reads, never leads.
    let read_only_db = format!(
        "{db}{}options=-c%20default_transaction_read_only%3Don",
        if db.contains('?') { '&' } else { '?' }
    );
    let c = Instance::new();
    let _server_c = start_on(
        c.port,
        &read_only_db,
        &key_path,
        &log,
        &[
            "--read-only",
            "--public-key",
            public_path.to_str().unwrap(),
            "--poll-interval-ms",
            "200",
        ],
    )
    .await;
    let (message, leader) = refusal(&c.url, &key).await;
    assert!(message.contains("read-only"), "{message}");
    assert_eq!(leader.as_deref(), Some(a.url.as_str()), "{message}");

    // Writers append through whoever leads while A is killed.
    let seen = Arc::new(Mutex::new(Seen::default()));
    seen.lock()
        .unwrap()
        .acknowledged
        .push((first, b"first".to_vec()));
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(tokio::sync::Semaphore::new(0));
    let writers: Vec<_> = (0..4)
        .map(|id| {
            tokio::spawn(writer(
                [a.url.clone(), b.url.clone()],
                key.clone(),
                id,
                seen.clone(),
                stop.clone(),
                acks.clone(),
            ))
        })
        .collect();
    acknowledged(&acks, 20, "by A").await;
    server_a.child.start_kill().expect("SIGKILL");
    server_a.child.wait().await.unwrap();
    let acknowledged_before = seen.lock().unwrap().acknowledged.len();
    // Whatever the writers had acknowledged by A but not yet counted.
    acks.forget_permits(usize::MAX);
    append_when_leading(&b.url, &key, b"after the takeover").await;
    // The writers themselves get appends through B.
    acknowledged(&acks, 20, "by B after the takeover").await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    eprintln!(
        "{acknowledged_before} appends acknowledged before the kill, {} in all",
        seen.acknowledged.len()
    );
    assert!(
        acknowledged_before > 1 && seen.acknowledged.len() > acknowledged_before,
        "appends were acknowledged before ({acknowledged_before}) and after the takeover ({})",
        seen.acknowledged.len()
    );

    // A comes back as a follower of B.
    let _server_a = a.start(&db, &key_path, &log).await;
    let (message, leader) = refusal(&a.url, &key).await;
    assert_eq!(leader.as_deref(), Some(b.url.as_str()), "{message}");

    let mut client = LogClient::connect(b.url.clone()).await.unwrap();
    check_log(&mut client, &key, &seen).await;
    // The read-only instance catches up and proves inclusion against B's head.
    let n = latest_size(&b.url).await;
    let mut reader = LogClient::connect(c.url.clone()).await.unwrap();
    let mut served = 0;
    for _ in 0..100 {
        served = latest_size(&c.url).await;
        if served == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, n, "the read-only instance serves the latest head");
    let proof = reader
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            tree_size: 0,
            leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(0)),
        })
        .await
        .unwrap()
        .into_inner();
    let head = required_sth(proof.tree_head.as_ref(), "tree_head").unwrap();
    key.verify(&head).unwrap();
    merklog_merkle::verify_inclusion(
        0,
        head.head.tree_size,
        &merklog_merkle::leaf_hash(b"first"),
        &hashes_from_wire(&proof.proof, "proof").unwrap(),
        &head.head.root_hash,
    )
    .unwrap();

    // Two terms are on record, A's then B's, and A's second start follows.
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    let terms: Vec<(i64, String)> =
        sqlx::query_as("SELECT term, address FROM leader_terms ORDER BY term")
            .fetch_all(&pool)
            .await
            .unwrap();
    let addresses: Vec<&str> = terms.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(addresses, [a.url.as_str(), b.url.as_str()]);
    drop(server_b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_standalone_instance_refuses_to_start_while_one_runs() {
    let (db, _guard) = merklog_storage::testing::TempPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (key_path, signer) = new_log_key(dir.path());
    let key = signer.public_key().clone();
    let log = dir.path().join("servers.log");

    let first = Instance::new();
    let mut running = start_on(first.port, &db, &key_path, &log, &[]).await;
    append_when_leading(&first.url, &key, b"first").await;

    let listen = format!("127.0.0.1:{}", free_port());
    let second = serve_expecting_exit([
        "--listen".as_ref(),
        listen.as_ref(),
        "--database-url".as_ref(),
        db.as_ref(),
        "--key".as_ref(),
        key_path.as_os_str(),
    ])
    .await;
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another instance sequences this log (term 1 at {})",
            first.url
        )),
        "{stderr}"
    );

    // Once the first is gone, the next one starts and continues the log.
    running.child.start_kill().unwrap();
    running.child.wait().await.unwrap();
    let _next = start_on(first.port, &db, &key_path, &log, &[]).await;
    let index = append_when_leading(&first.url, &key, b"second").await;
    assert_eq!(index, 1);
}

/// A SQLite file has no leader election: a second `merklog serve` on it is
/// refused at once, naming the file and the holder, while the first goes on
/// appending; once the first has stopped, the next one serves the log on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_serve_on_one_sqlite_file_is_refused_while_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, signer) = new_log_key(dir.path());
    let key = signer.public_key().clone();
    let log = dir.path().join("servers.log");
    let db = dir.path().join("log.db");
    let db_arg = db.to_str().unwrap();

    let first = Instance::new();
    let mut running = start_on(first.port, db_arg, &key_path, &log, &[]).await;
    append_when_leading(&first.url, &key, b"first").await;

    // Named by a URL rather than a path: the same file all the same.
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
            .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--database-url", &format!("sqlite://{}", db.display())])
            .arg("--key")
            .arg(&key_path)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("a refused serve exits at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let pid = running.child.id().unwrap();
    let canonical = std::fs::canonicalize(&db).unwrap();
    assert!(
        stderr.contains(&format!(
            "another merklog process (pid {pid}) holds the SQLite store {} (lock file {}.lock)",
            canonical.display(),
            canonical.display()
        )),
        "{stderr}"
    );

    // The first serves on, undisturbed.
    assert_eq!(
        append_when_leading(&first.url, &key, b"still first").await,
        1
    );

    // Killed (no clean stop), it leaves the lock file but not the lock.
    running.child.start_kill().unwrap();
    running.child.wait().await.unwrap();
    assert!(dir.path().join("log.db.lock").exists());
    let _next = start_on(first.port, db_arg, &key_path, &log, &[]).await;
    assert_eq!(append_when_leading(&first.url, &key, b"second").await, 2);
}
