//! Crash safety: the `merklog` server is killed with SIGKILL at random
//! moments during sustained concurrent appends, 20 times, and restarted each
//! time. Afterwards every acknowledged entry must be in the log at the index
//! it was given, every head ever seen must be consistent with the final one,
//! and the whole log must recompute to the final root.
//!
//! The test cannot pass idly: each cycle is killed only after it has
//! acknowledged appends of its own, and a writer stops only on what a dead
//! server gives (UNAVAILABLE, or a transport error made on this side); any
//! other answer fails the test.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{append_one, check_log, new_log_key, start, Seen};
use merklog_proto::v1::log_client::LogClient;
use merklog_sth::PublicKey;
use tokio::sync::Semaphore;

const KILLS: usize = 20;
const WRITERS: usize = 16;
/// Appends each cycle acknowledges before its kill can come.
const ACKS_BEFORE_KILL: u32 = 8;

/// Returns true for what a call to a server killed under it gives: the
/// server cannot answer UNAVAILABLE itself once dead, but tonic reports a
/// refused or broken connection as UNAVAILABLE, or with the I/O error as
/// its source (made on this side, not sent by the server).
fn server_died(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable || std::error::Error::source(status).is_some()
}

/// Appends until the server dies, recording what was acknowledged and
/// adding a permit to `acks` for each.
async fn writer(
    url: String,
    key: PublicKey,
    cycle: usize,
    id: usize,
    seen: Arc<Mutex<Seen>>,
    acks: Arc<Semaphore>,
) {
    // A connection refused: the server died before this writer connected.
    let Ok(mut client) = LogClient::connect(url).await else {
        return;
    };
    for seq in 0.. {
        let entry = format!("cycle {cycle} writer {id} seq {seq}").into_bytes();
        match append_one(&mut client, &key, entry.clone()).await {
            Ok((index, sth)) => {
                seen.lock().unwrap().record(index, entry, sth);
                acks.add_permits(1);
            }
            Err(status) if server_died(&status) => return,
            Err(status) => {
                panic!("cycle {cycle} writer {id}: the server answered {status:?}, not a crash")
            }
        }
    }
}

/// A small deterministic generator; the seed is printed so a failure can be
/// replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn kill_and_restart_repeatedly(database_url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, signer) = new_log_key(dir.path());
    let key = signer.public_key().clone();
    let log = dir.path().join("server.log");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}, server log {}", log.display());
    let mut rng = XorShift(seed);
    let seen = Arc::new(Mutex::new(Seen::default()));

    for cycle in 0..KILLS {
        let mut server = start(database_url, &key_path, &log).await;
        let before = seen.lock().unwrap().acknowledged.len();
        let acks = Arc::new(Semaphore::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|id| {
                tokio::spawn(writer(
                    server.url.clone(),
                    key.clone(),
                    cycle,
                    id,
                    seen.clone(),
                    acks.clone(),
                ))
            })
            .collect();
        // This cycle's own appends are acknowledged first; the kill then
        // comes at a random moment of the sustained appends.
        tokio::time::timeout(Duration::from_secs(30), acks.acquire_many(ACKS_BEFORE_KILL))
            .await
            .unwrap_or_else(|_| panic!("cycle {cycle}: no appends acknowledged within 30 s"))
            .unwrap()
            .forget();
        tokio::time::sleep(Duration::from_millis(rng.next() % 400)).await;
        server.child.start_kill().expect("SIGKILL");
        server.child.wait().await.unwrap();
        for w in writers {
            tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .expect("writers notice the dead server")
                .unwrap();
        }
        let acknowledged = seen.lock().unwrap().acknowledged.len() - before;
        assert!(
            acknowledged >= ACKS_BEFORE_KILL as usize,
            "cycle {cycle} acknowledged {acknowledged} appends"
        );
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    let server = start(database_url, &key_path, &log).await;
    let mut client = LogClient::connect(server.url.clone()).await.unwrap();
    check_log(&mut client, &key, &seen).await;
    eprintln!(
        "{} acknowledged entries and {} heads survived {KILLS} kills",
        seen.acknowledged.len(),
        seen.heads.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_appends_loses_nothing_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("log.db").display());
    kill_and_restart_repeatedly(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_appends_loses_nothing_postgres() {
    let (url, _guard) = merklog_storage::testing::TempPostgres::create().await;
    kill_and_restart_repeatedly(&url).await;
}
