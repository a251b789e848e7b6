//! Connection-level limits, shown on a server in a child process so that
//! its memory (VmRSS) can be read: answers nobody reads and a flood of idle
//! connections keep it bounded, and connections past the cap are closed.
//!
//! The child is this test binary run again with [`CHILD_ENV`] set: its
//! `child_server` test then serves a fresh SQLite log through
//! `merklog_server::serve`, as `merklog serve` does, until its stdin closes.

mod raw_h2;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use merklog_proto::v1::{self, log_client::LogClient};
use merklog_server::{ServerConfig, SystemClock, TransportLimits};
use merklog_sth::LogSigner;
use merklog_tests::TestDb;
use prost::Message;
use tonic::Code;

/// Set to `max_connections,max_inflight_bytes` in the child.
const CHILD_ENV: &str = "MERKLOG_TEST_CHILD_SERVER";
const GUARD: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// Not a test of its own: the body of the child server the tests below
/// start. It returns at once unless started as one.
#[test]
fn child_server() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (connections, inflight) = spec.split_once(',').expect("two numbers");
    let config = ServerConfig {
        transport: TransportLimits {
            max_connections: connections.parse().unwrap(),
            max_inflight_bytes: inflight.parse().unwrap(),
            ..TransportLimits::default()
        },
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let db = TestDb::sqlite();
        let store = Arc::new(db.open().await.unwrap());
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = stop.send(());
        });
        println!("listening {addr}");
        std::io::stdout().flush().unwrap();
        merklog_server::serve(
            listener,
            config,
            store,
            signer,
            Arc::new(SystemClock),
            async move {
                let _ = stopped.await;
            },
        )
        .await
        .unwrap();
    });
}

/// A server in a child process, killed when dropped.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(max_connections: usize, max_inflight_bytes: u64) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["child_server", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{max_connections},{max_inflight_bytes}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the child prints its address").unwrap();
            // libtest may print "test child_server ... " on the same line.
            if let Some((_, addr)) = line.split_once("listening ") {
                break addr.trim().parse().unwrap();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        ChildServer { child, addr }
    }

    /// The child's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    async fn client(&self) -> LogClient<tonic::transport::Channel> {
        LogClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn answers_nobody_reads_hold_bounded_memory() {
    let server = ChildServer::start(1024, 64 * MIB);
    // 64 entries of 64 KiB: each GetEntries page is cut at 3 MiB, 48 entries.
    let mut client = server.client().await;
    client
        .append(v1::AppendRequest {
            entries: (0..64u8).map(|i| vec![i; 64 * 1024]).collect(),
        })
        .await
        .unwrap();
    let before = server.rss();

    // 4 connections × 128 calls whose answers are never read: HTTP/2 flow
    // control stops each after 64 KiB. Were each answer queued whole, as
    // before, the server would hold 512 × 3 MiB = 1.5 GiB (4 MiB pages
    // before pages were cut by bytes: 2 GiB).
    let page = v1::GetEntriesRequest { start: 0, end: 64 }.encode_to_vec();
    let mut connections = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..4 {
        let mut send = raw_h2::connect(server.addr).await.unwrap();
        for _ in 0..128 {
            send = send.ready().await.unwrap();
            let head = raw_h2::request(server.addr, "/merklog.v1.Log/GetEntries", None);
            let (response, mut body) = send.send_request(head, false).unwrap();
            body.send_data(raw_h2::framed(&page), true).unwrap();
            pending.push(response);
        }
        connections.push(send);
    }
    // Every call is answered (its head): the server has done all it will.
    let (mut held, mut refused) = (Vec::new(), 0);
    for response in pending {
        let response = tokio::time::timeout(GUARD, response)
            .await
            .expect("every call gets a head")
            .unwrap();
        match raw_h2::refusal(&response) {
            None => held.push(response),
            Some((code, message)) => {
                assert_eq!(code, Code::ResourceExhausted as u32, "{message}");
                assert!(message.contains("--max-inflight-bytes"), "{message}");
                refused += 1;
            }
        }
    }
    let grown = server.rss().saturating_sub(before);
    eprintln!(
        "{} answers held unread, {refused} refused; server grew {} MiB",
        held.len(),
        grown / MIB
    );
    assert!(!held.is_empty() && refused > 0);
    // 64 MiB in flight, what the calls allocate on the way, and what the
    // allocator keeps: far below the 1.5 GiB of whole queued answers.
    assert!(grown < 300 * MIB, "the server grew {} MiB", grown / MIB);

    // Once their connections close, their bytes come back, and a reader
    // that reads gets its page, cut by bytes within the 4 MiB a default
    // gRPC client accepts.
    drop(held);
    drop(connections);
    let page = tokio::time::timeout(GUARD, async {
        loop {
            match client
                .get_entries(v1::GetEntriesRequest { start: 0, end: 64 })
                .await
            {
                Err(e) if e.code() == Code::ResourceExhausted => tokio::task::yield_now().await,
                other => break other.map(|page| page.into_inner().entries.len()),
            }
        }
    })
    .await
    .expect("the bytes of closed connections must come back");
    assert_eq!(page.map_err(|e| e.code()), Ok(48));
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_idle_ones_stay_cheap() {
    const CAP: usize = 200;
    let server = ChildServer::start(CAP, 256 * MIB);
    let before = server.rss();
    // A flood of idle connections, each shown served by one call.
    let head = || raw_h2::request(server.addr, "/merklog.v1.Log/GetSignedTreeHead", None);
    let mut idle = Vec::new();
    for _ in 0..CAP {
        let mut send = raw_h2::connect(server.addr).await.unwrap();
        let (code, message) = raw_h2::call(&mut send, head(), &[]).await.unwrap();
        assert_eq!(code, Code::Ok as u32, "{message}");
        idle.push(send);
    }
    // Past the cap, each new connection is closed at once.
    for _ in 0..20 {
        let refused = tokio::time::timeout(GUARD, async {
            let mut send = raw_h2::connect(server.addr).await?;
            raw_h2::call(&mut send, head(), &[]).await
        })
        .await
        .expect("a connection past the cap must be closed, not left hanging");
        assert!(
            refused.is_err(),
            "connection past the cap served: {refused:?}"
        );
    }
    let grown = server.rss().saturating_sub(before);
    eprintln!(
        "{CAP} idle connections: the server grew {} MiB",
        grown / MIB
    );
    assert!(grown < 64 * MIB, "the server grew {} MiB", grown / MIB);

    // A closed connection gives its slot back.
    drop(idle.pop());
    let served = tokio::time::timeout(GUARD, async {
        loop {
            if let Ok(mut send) = raw_h2::connect(server.addr).await {
                if let Ok((0, _)) = raw_h2::call(&mut send, head(), &[]).await {
                    break send;
                }
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a slot must come back when a connection closes");
    drop(served);
    drop(idle);
}
