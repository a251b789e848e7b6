//! A flood from one client beyond the server's capacity: the flooder gets
//! RESOURCE_EXHAUSTED at once instead of waiting into its deadline, another
//! client on its own connection keeps being served, and the server's peak
//! memory stays bounded.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{append_one, check_log, new_log_key, start_with, Seen};
use merklog_proto::v1::{self, log_client::LogClient};
use tonic::Code;

/// Concurrent calls the flooder keeps open on its one connection.
const FLOOD_CALLS: usize = 64;
/// Requests one connection may have in flight (`serve` flag below).
const PER_CONNECTION: usize = 8;
/// The sequencer's queue, in entries: more than one connection can fill
/// (8 calls × 1,000 entries), so one flooder cannot lock others out.
const QUEUE: usize = 20_000;
/// Single-entry appends of the other client, made while the flood runs.
const POLITE_APPENDS: usize = 20;
/// The memory bound for the server, in KiB.
const MAX_RSS_KIB: u64 = 300 * 1024;

#[derive(Default)]
struct Outcomes {
    ok: AtomicU64,
    exhausted: AtomicU64,
    other: Mutex<Vec<String>>,
}

/// Peak resident memory of process `pid`, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_refused_promptly_and_does_not_starve_others() {
    let dir = tempfile::tempdir().unwrap();
    let (key_path, signer) = new_log_key(dir.path());
    let key = signer.public_key().clone();
    let db = format!("sqlite://{}", dir.path().join("log.db").display());
    let log = dir.path().join("server.log");
    let server = start_with(
        &db,
        &key_path,
        &log,
        &[
            "--queue-capacity",
            &QUEUE.to_string(),
            "--max-concurrent-requests-per-connection",
            &PER_CONNECTION.to_string(),
        ],
    )
    .await;
    let pid = server.child.id().expect("server pid");

    // One connection, many concurrent 1,000-entry calls of 256-byte entries.
    let flood_channel = tonic::transport::Endpoint::from_shared(server.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let outcomes = Arc::new(Outcomes::default());
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..FLOOD_CALLS)
        .map(|id| {
            let mut client = LogClient::new(flood_channel.clone());
            let (outcomes, stop) = (outcomes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let entries = (0..1000)
                        .map(|i| {
                            let mut e = format!("flood {id} {seq} {i} ").into_bytes();
                            e.resize(256, b'.');
                            e
                        })
                        .collect();
                    seq += 1;
                    let mut request = tonic::Request::new(v1::AppendRequest { entries });
                    request.set_timeout(Duration::from_secs(10));
                    match client.append(request).await {
                        Ok(_) => {
                            outcomes.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(s) if s.code() == Code::ResourceExhausted => {
                            outcomes.exhausted.fetch_add(1, Ordering::Relaxed);
                            // A well-behaved client would back off longer;
                            // this keeps the 2-core test machine usable.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(s) => outcomes.other.lock().unwrap().push(format!(
                            "{:?}: {}",
                            s.code(),
                            s.message()
                        )),
                    }
                }
            })
        })
        .collect();

    // Meanwhile another client, on its own connection, appends one entry
    // at a time and checks each answer.
    let mut polite = LogClient::connect(server.url.clone()).await.unwrap();
    let mut seen = Seen::default();
    let mut refused = Vec::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for seq in 0..POLITE_APPENDS {
        let entry = format!("polite {seq}").into_bytes();
        match append_one(&mut polite, &key, entry.clone()).await {
            Ok((index, head)) => seen.record(index, entry, head),
            Err(s) => refused.push(format!("{:?}: {}", s.code(), s.message())),
        }
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }

    let ok = outcomes.ok.load(Ordering::Relaxed);
    let exhausted = outcomes.exhausted.load(Ordering::Relaxed);
    let other = outcomes.other.lock().unwrap().clone();
    let peak = peak_rss_kib(pid);
    eprintln!(
        "flood: {ok} calls accepted, {exhausted} refused with RESOURCE_EXHAUSTED, {} other; \
         polite client: {} accepted, {} refused; server peak RSS {} MiB",
        other.len(),
        seen.acknowledged.len(),
        refused.len(),
        peak / 1024
    );
    assert!(ok > 0, "the flooder got some work done");
    assert!(exhausted > 0, "the flood went beyond capacity");
    assert!(
        other.is_empty(),
        "refusals other than RESOURCE_EXHAUSTED: {other:?}"
    );
    assert!(
        refused.is_empty(),
        "the other client was refused: {refused:?}"
    );
    assert!(peak < MAX_RSS_KIB, "server peak RSS {peak} KiB");

    // Everything acknowledged to the other client is in the log, in place.
    let mut client = LogClient::connect(server.url.clone()).await.unwrap();
    check_log(&mut client, &key, &seen).await;
}
