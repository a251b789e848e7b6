//! The client raises the alarms a hostile or broken log should trigger:
//! offline `verify` given two signed heads of one size with different roots,
//! or a head its proof does not use; a state file whose head fails its
//! check; a monitor whose state file vanished, then shown a rollback or a
//! fork; and a monitor whose log keeps refusing to prove consistency.
//!
//! The monitor tests run against a fake log that this file controls: it
//! signs whatever tree it is given with the log's key, and can be told to
//! refuse consistency proofs, which no honest server does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use merklog_cli::client::monitor::{self, Monitor, MonitorArgs, MAX_CONSISTENCY_REFUSALS};
use merklog_cli::client::verify::{check, VerifyArgs};
use merklog_cli::client::{CommandError, OutputArgs, Progress, SafetyArgs};
use merklog_client::json::{InclusionProofJson, ProofJson, TreeHeadJson};
use merklog_client::ClientError;
use merklog_merkle::{
    consistency_proof, inclusion_proof, leaf_hash, merkle_tree_hash, Hash, NodeId, NodeSource,
};
use merklog_proto::v1::{self, log_server};
use merklog_proto::{hashes_to_wire, sth_to_wire};
use merklog_sth::{LogSigner, TreeHead};
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

/// Leaf hashes as a node source, to compute proofs.
struct Leaves(Vec<Hash>);

impl NodeSource for Leaves {
    type Error = ();
    fn node_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ()> {
        Ok(ids
            .iter()
            .map(|id| merkle_tree_hash(&self.0[id.first_leaf() as usize..=id.last_leaf() as usize]))
            .collect())
    }
}

fn leaves(entries: &[Vec<u8>]) -> Leaves {
    Leaves(entries.iter().map(|e| leaf_hash(e)).collect())
}

fn entries(names: &[&str]) -> Vec<Vec<u8>> {
    names.iter().map(|n| n.as_bytes().to_vec()).collect()
}

/// What the fake log serves now.
struct FakeState {
    signer: LogSigner,
    entries: Vec<Vec<u8>>,
    head: v1::SignedTreeHead,
    timestamp_ms: u64,
    /// The status GetConsistencyProof answers between two different sizes
    /// instead of a proof, when set.
    refuse: Option<Status>,
}

#[derive(Clone)]
struct FakeLog(Arc<Mutex<FakeState>>);

impl FakeLog {
    fn new(signer: &LogSigner, tree: Vec<Vec<u8>>) -> Self {
        let log = FakeLog(Arc::new(Mutex::new(FakeState {
            signer: signer.clone(),
            entries: Vec::new(),
            head: v1::SignedTreeHead::default(),
            timestamp_ms: 1_700_000_000_000,
            refuse: None,
        })));
        log.serve_tree(tree);
        log
    }

    /// Serves `tree` from now on, under a newly signed head: a log that
    /// grows, or, for a tree that is not an extension, one that forks or
    /// rolls back.
    fn serve_tree(&self, tree: Vec<Vec<u8>>) {
        let mut s = self.0.lock().unwrap();
        s.timestamp_ms += 1000;
        let sth = s.signer.sign(TreeHead {
            tree_size: tree.len() as u64,
            timestamp_ms: s.timestamp_ms,
            root_hash: merkle_tree_hash(&leaves(&tree).0),
        });
        s.head = sth_to_wire(&sth, &s.signer.public_key().log_id());
        s.entries = tree;
    }

    fn refuse_consistency(&self, status: Option<Status>) {
        self.0.lock().unwrap().refuse = status;
    }

    async fn start(&self) -> FakeServer {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://{}", incoming.local_addr().unwrap());
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(log_server::LogServer::new(self.clone()))
                .serve_with_incoming(incoming),
        );
        FakeServer { url, task }
    }
}

struct FakeServer {
    url: String,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl FakeServer {
    /// Stops listening: a client that connects now is refused.
    async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tonic::async_trait]
impl log_server::Log for FakeLog {
    async fn append(
        &self,
        _: Request<v1::AppendRequest>,
    ) -> Result<Response<v1::AppendResponse>, Status> {
        Err(Status::unimplemented("the fake log is read-only"))
    }

    async fn get_signed_tree_head(
        &self,
        _: Request<v1::GetSignedTreeHeadRequest>,
    ) -> Result<Response<v1::SignedTreeHead>, Status> {
        Ok(Response::new(self.0.lock().unwrap().head.clone()))
    }

    async fn get_inclusion_proof(
        &self,
        _: Request<v1::GetInclusionProofRequest>,
    ) -> Result<Response<v1::InclusionProof>, Status> {
        Err(Status::unimplemented("not needed by the monitor"))
    }

    async fn get_inclusion_proofs(
        &self,
        _: Request<v1::GetInclusionProofsRequest>,
    ) -> Result<Response<v1::InclusionProofs>, Status> {
        Err(Status::unimplemented("not needed by the monitor"))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<v1::GetConsistencyProofRequest>,
    ) -> Result<Response<v1::ConsistencyProof>, Status> {
        let v1::GetConsistencyProofRequest {
            first_size: m,
            second_size: n,
        } = request.into_inner();
        let s = self.0.lock().unwrap();
        let size = s.entries.len() as u64;
        if m != n {
            if let Some(refusal) = &s.refuse {
                return Err(Status::new(refusal.code(), refusal.message()));
            }
        }
        if m > n || n > size {
            return Err(Status::out_of_range(format!("{m}..{n} is beyond {size}")));
        }
        if m == n && n != size {
            return Err(Status::not_found(
                "the fake log signed only its latest head",
            ));
        }
        let proof = consistency_proof(&leaves(&s.entries), m, n).unwrap();
        Ok(Response::new(v1::ConsistencyProof {
            first_size: m,
            second_size: n,
            proof: hashes_to_wire(&proof),
            tree_head: (n == size).then(|| s.head.clone()),
        }))
    }

    async fn get_entries(
        &self,
        request: Request<v1::GetEntriesRequest>,
    ) -> Result<Response<v1::GetEntriesResponse>, Status> {
        let v1::GetEntriesRequest { start, end } = request.into_inner();
        let s = self.0.lock().unwrap();
        let end = end.min(s.entries.len() as u64);
        let entries = (start..end)
            .map(|i| {
                let data = s.entries[i as usize].clone();
                v1::Entry {
                    leaf_index: i,
                    leaf_hash: leaf_hash(&data).0.to_vec(),
                    data,
                    integrated_ms: 1,
                }
            })
            .collect();
        Ok(Response::new(v1::GetEntriesResponse { entries }))
    }

    async fn get_entry_and_proof(
        &self,
        _: Request<v1::GetEntryAndProofRequest>,
    ) -> Result<Response<v1::EntryAndProof>, Status> {
        Err(Status::unimplemented("not needed by the monitor"))
    }

    async fn get_log_info(
        &self,
        _: Request<v1::GetLogInfoRequest>,
    ) -> Result<Response<v1::LogInfo>, Status> {
        let s = self.0.lock().unwrap();
        let key = s.signer.public_key();
        Ok(Response::new(v1::LogInfo {
            public_key_der: key.der().to_vec(),
            public_key_pem: key.pem(),
            log_id: key.log_id().0.to_vec(),
            hash_algorithm: "SHA-256".into(),
            signature_algorithm: "ECDSA P-256".into(),
            max_entry_bytes: 1 << 20,
            max_entries_per_append: 100,
            max_page_size: 100,
            max_request_bytes: 0,
            ..Default::default()
        }))
    }

    async fn append_events(
        &self,
        _: Request<v1::AppendEventsRequest>,
    ) -> Result<Response<v1::AppendEventsResponse>, Status> {
        Err(Status::unimplemented("the fake log is read-only"))
    }

    async fn search_events(
        &self,
        _: Request<v1::SearchEventsRequest>,
    ) -> Result<Response<v1::SearchEventsResponse>, Status> {
        Err(Status::unimplemented("the fake log holds no events"))
    }

    async fn list_tree_heads(
        &self,
        _: Request<v1::ListTreeHeadsRequest>,
    ) -> Result<Response<v1::ListTreeHeadsResponse>, Status> {
        Err(Status::unimplemented("the fake log lists no heads"))
    }
}

fn signer() -> LogSigner {
    LogSigner::generate(&mut rand_core::OsRng)
}

fn key_file(dir: &Path, signer: &LogSigner, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, signer.public_key().pem()).unwrap();
    path
}

fn monitor_args(url: &str, key: PathBuf, state: PathBuf, once: bool) -> MonitorArgs {
    MonitorArgs {
        server: url.to_owned(),
        public_key: key,
        state,
        token: None,
        once,
        interval: 0,
        max_age: None,
        check_entries: false,
        tls: Default::default(),
        safety: SafetyArgs::default(),
        out: OutputArgs { json: true },
    }
}

fn saved_size(state: &Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    v["tree_head"]["tree_size"].as_u64().unwrap()
}

/// Runs one check of `monitor`, returning its result and its warnings.
async fn check_monitor(
    monitor: &mut Monitor,
) -> (Result<monitor::MonitorStep, ClientError>, String) {
    let mut warnings = Vec::new();
    let result = monitor.check(&mut Progress::quiet(), &mut warnings).await;
    (result, String::from_utf8(warnings).unwrap())
}

#[tokio::test]
async fn monitor_keeps_its_verified_head_when_the_state_file_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let log = FakeLog::new(&key, entries(&["e0", "e1", "e2", "e3", "e4", "e5"]));
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let args = monitor_args(
        &server.url,
        key_file(dir.path(), &key, "log.pem"),
        state.clone(),
        false,
    );
    let mut monitor = Monitor::new(&args, key.public_key().clone()).unwrap();

    let (step, warnings) = check_monitor(&mut monitor).await;
    let step = step.unwrap();
    assert!(step.previous.is_none(), "first look");
    assert_eq!(saved_size(&state), 6);
    assert!(warnings.is_empty(), "{warnings}");

    // The file vanishes; the log grows honestly. The new head is checked
    // against the head kept in memory, the loss is reported, and the file
    // is written again.
    std::fs::remove_file(&state).unwrap();
    log.serve_tree(entries(&["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]));
    let (step, warnings) = check_monitor(&mut monitor).await;
    let step = step.unwrap();
    assert_eq!(
        step.previous.map(|p| p.tree_size),
        Some(6),
        "not a first look"
    );
    assert_eq!(step.tree_head.tree_size, 8);
    assert!(warnings.contains("WARNING"), "{warnings}");
    assert!(warnings.contains("has disappeared"), "{warnings}");
    assert!(
        warnings.contains(&state.display().to_string()),
        "{warnings}"
    );
    assert_eq!(saved_size(&state), 8, "the state file is written again");

    // The file vanishes again, and the log rolls back: caught.
    std::fs::remove_file(&state).unwrap();
    log.serve_tree(entries(&["e0", "e1", "e2"]));
    let (result, warnings) = check_monitor(&mut monitor).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Rollback {
                trusted_size: 8,
                new_size: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_verification_failure());
    assert!(warnings.contains("has disappeared"), "{warnings}");
    assert!(!state.exists(), "the rolled-back head is not saved");

    // Or the log shows another tree of the same size: a fork, caught.
    let mut forked = entries(&["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"]);
    forked[7] = b"rewritten".to_vec();
    log.serve_tree(forked);
    let (result, _) = check_monitor(&mut monitor).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Fork {
                trusted_size: 8,
                new_size: 8,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(monitor.verified_head().unwrap().tree_size(), 8);
}

#[tokio::test]
async fn monitor_checks_an_older_state_file_against_its_verified_head() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let log = FakeLog::new(&key, entries(&["e0", "e1", "e2"]));
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let args = monitor_args(
        &server.url,
        key_file(dir.path(), &key, "log.pem"),
        state.clone(),
        false,
    );
    let mut monitor = Monitor::new(&args, key.public_key().clone()).unwrap();
    check_monitor(&mut monitor).await.0.unwrap();
    let old = std::fs::read(&state).unwrap();
    log.serve_tree(entries(&["e0", "e1", "e2", "e3", "e4", "e5"]));
    check_monitor(&mut monitor).await.0.unwrap();

    // An old copy of the file is put back, and the log rolls back to it.
    std::fs::write(&state, old).unwrap();
    log.serve_tree(entries(&["e0", "e1", "e2"]));
    let (result, warnings) = check_monitor(&mut monitor).await;
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Rollback {
                trusted_size: 6,
                new_size: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        warnings.contains("older than the head of size 6"),
        "{warnings}"
    );
}

#[tokio::test]
async fn monitor_alarms_when_the_log_keeps_refusing_a_consistency_proof() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let log = FakeLog::new(&key, entries(&["e0", "e1", "e2", "e3"]));
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let key_path = key_file(dir.path(), &key, "log.pem");
    let args = monitor_args(&server.url, key_path.clone(), state.clone(), false);
    let mut monitor = Monitor::new(&args, key.public_key().clone()).unwrap();
    check_monitor(&mut monitor).await.0.unwrap();

    // A new signed head, and a log that will not prove it follows the old.
    log.serve_tree(entries(&["e0", "e1", "e2", "e3", "e4", "e5"]));
    log.refuse_consistency(Some(Status::failed_precondition(
        "no consistency proof between these trees",
    )));
    for attempt in 1..MAX_CONSISTENCY_REFUSALS {
        let (result, warnings) = check_monitor(&mut monitor).await;
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Status {
                    code: Code::FailedPrecondition,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.is_verification_failure(), "retried at first: {err}");
        assert!(
            warnings.contains(&format!("{attempt} of {MAX_CONSISTENCY_REFUSALS}")),
            "{warnings}"
        );
    }
    let (result, _) = check_monitor(&mut monitor).await;
    let err = result.unwrap_err();
    match &err {
        ClientError::ConsistencyRefused {
            first_size: 4,
            second_size: 6,
            refusals,
            code: Code::FailedPrecondition,
            message,
        } => {
            assert_eq!(*refusals, MAX_CONSISTENCY_REFUSALS);
            assert!(message.contains("no consistency proof"), "{message}");
        }
        other => panic!("expected an alarm, got {other}"),
    }
    assert!(err.is_verification_failure());
    let text = err.to_string();
    assert!(text.contains("size 6") && text.contains("size 4"), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert_eq!(saved_size(&state), 4, "the unproven head is not trusted");

    // The command itself stops with exit code 1 instead of retrying forever.
    let failure = tokio::time::timeout(
        Duration::from_secs(60),
        monitor::run(
            monitor_args(&server.url, key_path, state.clone(), false),
            &mut Vec::new(),
        ),
    )
    .await
    .expect("the monitor stops at the limit")
    .unwrap_err();
    assert_eq!(failure.exit_code(), 1, "{failure}");
    assert_eq!(failure.to_json()["error"]["kind"], "consistency_refused");
}

#[tokio::test]
async fn monitor_counts_refusals_from_one_size_and_retries_outages() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let mut tree = entries(&["e0", "e1", "e2", "e3"]);
    let log = FakeLog::new(&key, tree.clone());
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let key_path = key_file(dir.path(), &key, "log.pem");
    let args = monitor_args(&server.url, key_path.clone(), state.clone(), false);
    let mut monitor = Monitor::new(&args, key.public_key().clone()).unwrap();
    check_monitor(&mut monitor).await.0.unwrap();

    // An overloaded or unavailable log is not refusing: no alarm however
    // long it lasts.
    tree.push(b"e4".to_vec());
    log.serve_tree(tree.clone());
    log.refuse_consistency(Some(Status::unavailable("overloaded")));
    for _ in 0..MAX_CONSISTENCY_REFUSALS + 2 {
        let err = check_monitor(&mut monitor).await.0.unwrap_err();
        assert!(!err.is_verification_failure(), "{err}");
    }

    // A log that grows between checks changes the larger size each time;
    // the refusals still count, as it never extends the trusted size.
    log.refuse_consistency(Some(Status::failed_precondition("no")));
    for i in 1..=MAX_CONSISTENCY_REFUSALS {
        tree.push(format!("more {i}").into_bytes());
        log.serve_tree(tree.clone());
        let (result, warnings) = check_monitor(&mut monitor).await;
        let err = result.unwrap_err();
        if i < MAX_CONSISTENCY_REFUSALS {
            assert!(!err.is_verification_failure(), "{err}");
            assert!(
                warnings.contains(&format!("{i} of {MAX_CONSISTENCY_REFUSALS}")),
                "{warnings}"
            );
        } else {
            assert!(
                matches!(err, ClientError::ConsistencyRefused { first_size: 4, .. }),
                "{err}"
            );
        }
    }

    // Once the log proves consistency, the count starts over.
    log.refuse_consistency(None);
    let step = check_monitor(&mut monitor).await.0.unwrap();
    assert_eq!(step.previous.map(|p| p.tree_size), Some(4));

    // A log that is down stays a retried error, in the command too.
    server.stop().await;
    let err = check_monitor(&mut monitor).await.0.unwrap_err();
    assert!(!err.is_verification_failure(), "{err}");
    // Its port now closes every connection at once: each one accepted is
    // an attempt of the monitor, which must keep coming.
    let addr = args.server.trim_start_matches("http://");
    let down = tokio::net::TcpListener::bind(addr).await.unwrap();
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    let closer = tokio::spawn(async move {
        while let Ok((stream, _)) = down.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let still_running = tokio::time::timeout(
        Duration::from_secs(3),
        monitor::run(
            monitor_args(&args.server, key_path, state, false),
            &mut Vec::new(),
        ),
    )
    .await;
    closer.abort();
    assert!(
        still_running.is_err(),
        "the monitor stopped: {still_running:?}"
    );
    let attempts = attempts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(attempts >= 2, "the monitor tried {attempts} time(s) in 3 s");
}

#[tokio::test]
async fn a_state_file_that_fails_its_check_is_blamed_not_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let log = FakeLog::new(&key, entries(&["e0", "e1"]));
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let key_path = key_file(dir.path(), &key, "log.pem");
    monitor::run(
        monitor_args(&server.url, key_path, state.clone(), true),
        &mut Vec::new(),
    )
    .await
    .unwrap();

    // The same state file, checked with another key (a key rotated, or a
    // wrong --public-key).
    let other = signer();
    let other_log = FakeLog::new(&other, entries(&["e0", "e1"]));
    let other_server = other_log.start().await;
    let failure = monitor::run(
        monitor_args(
            &other_server.url,
            key_file(dir.path(), &other, "other.pem"),
            state.clone(),
            true,
        ),
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(failure.exit_code(), 1, "{failure}");
    assert_eq!(failure.kind(), "bad_state");
    let text = failure.to_string();
    assert!(text.contains(&state.display().to_string()), "{text}");
    assert!(text.contains("saved state (not the log)"), "{text}");
}

/// Writes `value` as JSON to `dir/name`.
fn save(dir: &Path, name: &str, value: &impl serde::Serialize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(value).unwrap()).unwrap();
    path
}

#[test]
fn verify_reports_a_fork_and_a_head_its_proof_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let key_path = key_file(dir.path(), &key, "log.pem");
    let tree = entries(&["a", "b", "c", "d", "e"]);
    let head = |tree: &[Vec<u8>], ts: u64| {
        let sth = key.sign(TreeHead {
            tree_size: tree.len() as u64,
            timestamp_ms: ts,
            root_hash: merkle_tree_hash(&leaves(tree).0),
        });
        TreeHeadJson::new(&sth, key.public_key().log_id())
    };
    let h5 = save(dir.path(), "h5.json", &head(&tree, 1));
    let h3 = save(dir.path(), "h3.json", &head(&tree[..3], 1));
    let mut other = tree.clone();
    other[4] = b"rewritten".to_vec();
    let forked = save(dir.path(), "forked.json", &head(&other, 2));
    let proof = save(
        dir.path(),
        "proof.json",
        &ProofJson::Inclusion(InclusionProofJson {
            leaf_index: 1,
            tree_size: 5,
            leaf_hash: leaf_hash(b"b"),
            root_hash: merkle_tree_hash(&leaves(&tree).0),
            proof: inclusion_proof(&leaves(&tree), 1, 5).unwrap(),
        }),
    );
    let args = |heads: Vec<PathBuf>| VerifyArgs {
        public_key: key_path.clone(),
        heads,
        proof: Some(proof.clone()),
        entry: None,
        entry_file: None,
        out: OutputArgs { json: false },
    };
    check(&args(vec![h5.clone()])).expect("the usual case verifies");

    let err = check(&args(vec![h5.clone(), forked])).unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(
        matches!(
            err,
            CommandError::Client(ClientError::Fork {
                trusted_size: 5,
                new_size: 5,
                ..
            })
        ),
        "{err}"
    );

    let err = check(&args(vec![h5, h3])).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let text = err.to_string();
    assert!(text.contains("#2 has size 3"), "{text}");
    assert!(text.contains("would not be checked"), "{text}");
}

/// A clock the test sets.
#[derive(Debug, Default)]
struct TestClock(std::sync::atomic::AtomicU64);

impl TestClock {
    fn set(&self, ms: u64) {
        self.0.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl merklog_client::Clock for TestClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn max_age_raises_its_alarm_for_an_old_head_and_for_an_unreachable_log() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    let log = FakeLog::new(&key, entries(&["e0", "e1"]));
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let args = monitor_args(
        &server.url,
        key_file(dir.path(), &key, "log.pem"),
        state.clone(),
        false,
    );
    let signed = log.0.lock().unwrap().timestamp_ms;
    let clock = Arc::new(TestClock::default());
    clock.set(signed + 10_000);
    let options = merklog_client::ClientOptions {
        clock: clock.clone(),
        ..merklog_client::ClientOptions::default()
    };
    let mut monitor = Monitor::with_options(&args, key.public_key().clone(), options);
    let max_age = Duration::from_secs(60);

    // A head 10 s old is fresh; the same head 61 s later is stale.
    let step = check_monitor(&mut monitor).await.0.unwrap();
    assert!(monitor.stale_head(&step, max_age).is_none());
    clock.set(signed + 61_000);
    let step = check_monitor(&mut monitor).await.0.unwrap();
    let alarm = monitor.stale_head(&step, max_age).expect("a stale head");
    assert!(
        matches!(
            alarm,
            monitor::StaleLog::OldHead {
                tree_size: 2,
                age_ms: 61_000,
                ..
            }
        ),
        "{alarm:?}"
    );
    let text = CommandError::from(alarm).to_string();
    assert!(text.starts_with("stale head: "), "{text}");
    assert!(text.contains("(1700000001000 ms)"), "{text}");
    assert!(text.contains("2023-11-14T22:13:21.000Z"), "{text}");
    assert!(
        text.contains("61 s ago, more than --max-age 60 s"),
        "{text}"
    );

    // The log goes away after that check passed (at +61 s): unreachable
    // for 30 s is tolerated, for 61 s it is the alarm.
    server.stop().await;
    clock.set(signed + 91_000);
    let (err, _) = check_monitor(&mut monitor).await;
    let err = err.unwrap_err();
    assert!(!err.is_verification_failure(), "{err}");
    assert!(monitor.unreachable(&err, max_age).is_none());
    clock.set(signed + 122_001);
    let alarm = monitor.unreachable(&err, max_age).expect("unreachable");
    assert!(
        matches!(alarm, monitor::StaleLog::Unreachable { for_ms: 61_001, .. }),
        "{alarm:?}"
    );
    let err = CommandError::from(alarm);
    assert_eq!(err.exit_code(), 3);
    assert_eq!(err.kind(), "unreachable");
    assert!(
        err.to_string().contains("last error: cannot connect"),
        "{err}"
    );
}

#[tokio::test]
async fn monitor_exits_3_with_max_age_and_prints_json_lines_with_the_checks_time() {
    let dir = tempfile::tempdir().unwrap();
    let key = signer();
    // The fake log dates its heads in November 2023: long ago.
    let log = FakeLog::new(&key, entries(&["e0", "e1", "e2"]));
    let server = log.start().await;
    let state = dir.path().join("state.json");
    let key_path = key_file(dir.path(), &key, "log.pem");
    let args = |url: &str, state: &Path, max_age: Option<u64>| MonitorArgs {
        max_age: max_age.map(Duration::from_secs),
        ..monitor_args(url, key_path.clone(), state.to_owned(), true)
    };

    // Without --max-age an old head passes: one JSON line, with the time
    // of the check.
    let mut out = Vec::new();
    monitor::run(args(&server.url, &state, None), &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    let line: serde_json::Value = serde_json::from_str(printed.trim_end()).unwrap();
    assert_eq!(line["ok"], true);
    assert_eq!(line["tree_head"]["tree_size"], 3);
    let at_ms = line["checked_at_ms"].as_u64().unwrap();
    assert_eq!(
        line["checked_at"],
        merklog_event::format_rfc3339(i64::try_from(at_ms).unwrap() * 1_000_000, 3)
    );

    // With it, the check passes (the head is saved) and the alarm follows.
    log.serve_tree(entries(&["e0", "e1", "e2", "e3"]));
    let mut out = Vec::new();
    let err = monitor::run(args(&server.url, &state, Some(3600)), &mut out)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert_eq!(err.kind(), "stale_head");
    assert_eq!(saved_size(&state), 4);
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(printed.lines().count(), 1, "{printed}");
    assert_eq!(err.to_json()["error"]["exit_code"], 3);

    // The log stops. With --once the last contact is the saved head's time,
    // long ago: the alarm; without --max-age, a check that could not be
    // made (2); with a state file that holds no head, the monitor has only
    // just started: 2 as well.
    let url = server.url.clone();
    server.stop().await;
    let err = monitor::run(args(&url, &state, Some(3600)), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 3, "{err}");
    assert_eq!(err.kind(), "unreachable");
    let err = monitor::run(args(&url, &state, None), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let fresh = dir.path().join("fresh.json");
    let err = monitor::run(args(&url, &fresh, Some(3600)), &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
}
