//! Every `merklog` command that talks to a log, run as a user runs it,
//! against a log that lies (issue 22): it exits with code 1 and names the
//! problem on stderr (for `audit`, the problems go to stdout and the count
//! to stderr). With no lie, every command exits 0 through the same liar.
//!
//! The honest log is a `merklog serve` process; the liar runs in this test
//! and forwards to it.

mod common;

// The same liar as the library's tests (`merklog_tests::liar`): the
// binary's exit code and stderr can only be tested from this package, which
// does not depend on `merklog-tests`.
#[path = "../../../tests/src/liar.rs"]
#[expect(dead_code, reason = "this test does not stop the liar explicitly")]
mod liar;

use std::path::PathBuf;

use liar::{Lie, LyingLog};
use merklog_client::json::TreeHeadJson;
use merklog_client::{Client, TrustState};

/// A command that talks to a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Append,
    Sth,
    /// From 0 to the latest signed size.
    Entries,
    /// Leaf 1.
    ProveInclusion,
    /// From size 2 to the latest.
    ProveConsistency,
    /// `--once --check-entries`.
    Monitor,
    Audit,
}

use Command::*;

const ALL: [Command; 7] = [
    Append,
    Sth,
    Entries,
    ProveInclusion,
    ProveConsistency,
    Monitor,
    Audit,
];

/// What a refusal must say.
#[derive(Debug, Clone, Copy)]
enum Says {
    /// On stderr, after "VERIFICATION FAILED: ".
    Stderr(&'static str),
    /// `audit`'s findings: this on stdout (a `PROBLEM:` line), the count on
    /// stderr.
    Finding(&'static str),
}

use Says::*;

const WRONG_LOG: Says = Stderr("not to the pinned log");
const BAD_SIGNATURE: Says = Stderr("bad signature:");
const FUTURE: Says = Stderr("future head:");
const TIME: Says = Stderr("time went back:");
const FORK: Says = Stderr("fork:");
const ROLLBACK: Says = Stderr("rollback:");
const BAD_PROOF: Says = Stderr("bad inclusion proof:");
const UNEXPECTED: Says = Stderr("the log answered with");
const BAD_ENTRY: Says = Stderr("bad entry:");

/// `(lie, [(command, what its refusal says)])`.
fn table() -> Vec<(Lie, Vec<(Command, Says)>)> {
    let all = |says: Says| ALL.iter().map(|&c| (c, says)).collect::<Vec<_>>();
    let proof_readers = |audit: Says| {
        vec![
            (Append, BAD_PROOF),
            (Entries, BAD_PROOF),
            (ProveInclusion, BAD_PROOF),
            (Audit, audit),
        ]
    };
    vec![
        (
            Lie::BadInclusionProof,
            proof_readers(Finding("the log serves hash")),
        ),
        (
            Lie::NeighbourProof,
            proof_readers(Finding("the log serves hash")),
        ),
        (
            Lie::NeighbourAnswer,
            vec![
                (Append, BAD_PROOF),
                (Entries, UNEXPECTED),
                (ProveInclusion, UNEXPECTED),
                (Monitor, UNEXPECTED),
                (Audit, UNEXPECTED),
            ],
        ),
        (Lie::ForeignKey, all(WRONG_LOG)),
        (Lie::ForeignLogId, all(WRONG_LOG)),
        (Lie::ForgedSignature, all(BAD_SIGNATURE)),
        (Lie::FutureHead, all(FUTURE)),
        (Lie::BackDatedHead, all(TIME)),
        (Lie::Fork, all(FORK)),
        (Lie::BadConsistencyProof, all(FORK)),
        (
            Lie::Rollback(2),
            ALL.iter()
                .map(|&c| (c, if c == Append { BAD_PROOF } else { ROLLBACK }))
                .collect(),
        ),
        (
            Lie::TamperedEntry,
            vec![
                (Entries, BAD_ENTRY),
                (Monitor, BAD_ENTRY),
                (Audit, Finding("its bytes hash to")),
            ],
        ),
        (
            Lie::SubstitutedEntry,
            vec![
                (Append, UNEXPECTED),
                (Entries, BAD_ENTRY),
                (Monitor, Stderr("root mismatch:")),
                (Audit, Finding("root mismatch at size")),
            ],
        ),
    ]
}

struct World {
    _server: common::Server,
    liar: LyingLog,
    dir: tempfile::TempDir,
    public_key: PathBuf,
    /// The head of size 4, which every command starts from (in its state
    /// file) while the log has grown past it.
    trusted: TreeHeadJson,
    runs: u32,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (key_path, signer) = common::new_log_key(dir.path());
        let db = format!("sqlite://{}", dir.path().join("log.db").display());
        let server = common::start(&db, &key_path, &dir.path().join("server.log")).await;
        let key = signer.public_key().clone();
        let mut client = Client::connect(&server.url, key).await.unwrap();
        for batch in [["a", "b"], ["c", "d"], ["e", "f"]] {
            let entries = batch.iter().map(|e| e.as_bytes().to_vec()).collect();
            client.append(entries).await.unwrap();
        }
        let trusted = client.head_at(4).await.unwrap().to_json();
        let liar = LyingLog::start(&server.url, signer).await.unwrap();
        World {
            _server: server,
            liar,
            public_key: dir.path().join("public.pem"),
            dir,
            trusted,
            runs: 0,
        }
    }

    /// Runs `command` against the liar with a fresh state file holding the
    /// head of size 4; returns its exit code, stdout and stderr.
    async fn run(&mut self, command: Command) -> (Option<i32>, String, String) {
        self.runs += 1;
        let state = self.dir.path().join(format!("state-{}.json", self.runs));
        let saved = TrustState {
            tree_head: self.trusted.clone(),
            right_edge: None,
        };
        std::fs::write(&state, serde_json::to_string(&saved).unwrap()).unwrap();
        let entry = format!("appended {}", self.runs);
        let args: Vec<&str> = match command {
            Append => vec!["append", &entry],
            Sth => vec!["sth"],
            Entries => vec!["entries", "--start", "0"],
            ProveInclusion => vec!["prove", "inclusion", "--index", "1"],
            ProveConsistency => vec!["prove", "consistency", "--first", "2"],
            Monitor => vec!["monitor", "--once", "--check-entries"],
            Audit => vec!["audit"],
        };
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_merklog"))
            .args(&args)
            .arg("--server")
            .arg(self.liar.url())
            .arg("--public-key")
            .arg(&self.public_key)
            .arg("--state")
            .arg(&state)
            .env_clear()
            .output()
            .await
            .expect("run merklog");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_refuses_every_lie_that_concerns_it() {
    let mut world = World::new().await;
    let mut failures = Vec::new();

    world.liar.tell(Lie::None);
    for command in ALL {
        let (code, _, stderr) = world.run(command).await;
        if code != Some(0) {
            failures.push(format!("{command:?} with no lie: exit {code:?}: {stderr}"));
        }
    }

    let mut pairs = 0;
    for (lie, cases) in table() {
        world.liar.tell(lie);
        for (command, says) in cases {
            pairs += 1;
            let (code, stdout, stderr) = world.run(command).await;
            let pair = format!("{command:?} against the lie {lie:?}");
            if code != Some(1) {
                failures.push(format!("{pair}: exit {code:?} (expected 1): {stderr}"));
                continue;
            }
            let named = match says {
                Stderr(text) => stderr.contains("VERIFICATION FAILED: ") && stderr.contains(text),
                Finding(text) => {
                    stderr.contains("VERIFICATION FAILED: audit found")
                        && stdout
                            .lines()
                            .any(|l| l.starts_with("PROBLEM: ") && l.contains(text))
                }
            };
            if !named {
                failures.push(format!(
                    "{pair}: exit 1 but the problem is not named ({says:?}):\nstdout: {stdout}\nstderr: {stderr}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {pairs} (command, lie) pairs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
