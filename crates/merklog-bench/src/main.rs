//! `merklog-bench`: a load generator for a merklog log over gRPC.
//!
//! It appends random unique entries from many concurrent writers, reads
//! inclusion proofs, consistency proofs and entry pages from concurrent
//! readers, verifies a sample of every kind of answer, prints progress once
//! a second on stderr and a report (or `--json`) on stdout. See
//! `docs/BENCHMARKS.md` for the recorded runs.
//!
//! It does not tune or restart the server, and with `--server` it cannot see
//! the server's memory unless given `--server-pid`.

mod baseline;
mod events;
mod load;
mod stats;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use merklog_proto::v1::log_client::LogClient;
use merklog_proto::v1::{GetLogInfoRequest, GetSignedTreeHeadRequest};
use merklog_server::{SequencerConfig, ServerConfig, SystemClock};
use merklog_sth::{LogSigner, PublicKey};
use merklog_storage::AnyStore;
use rand::SeedableRng;
use serde::Serialize;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::baseline::Baseline;
use crate::events::SearchKind;
use crate::load::{Pace, Payload, ReadKind, Shared};
use crate::stats::{rss_kib, LiveSnapshot, Op, OpReport, Recorder, RssReport};

/// The largest gRPC message the generator accepts (a 1,000-entry append
/// answer carries 1,000 proofs).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug, Clone)]
#[command(version, about = "Load generator for a merklog log over gRPC")]
struct Args {
    /// A running server, e.g. http://127.0.0.1:7300.
    #[arg(long, group = "target")]
    server: Option<String>,
    /// Run a server in this process on a fresh PostgreSQL database at this
    /// URL, with a fresh key. It shares the CPU with the generator.
    #[arg(long, group = "target")]
    spawn_postgres: Option<String>,
    /// Run a server in this process on a new SQLite file at this path, with
    /// a fresh key. It shares the CPU with the generator.
    #[arg(long, group = "target")]
    spawn_sqlite: Option<String>,
    /// The pid of the `--server` process, to sample its RSS once a second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A bearer token for the server's access rules (a writer's token to
    /// append); sent on every call as `authorization: Bearer <token>`.
    #[arg(long, env = "MERKLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The CA certificate(s) (PEM) to trust for an https:// --server.
    #[arg(long, env = "MERKLOG_TLS_CA")]
    tls_ca: Option<std::path::PathBuf>,
    /// A client certificate chain (PEM), for a server that requires mutual
    /// TLS; needs --tls-key and --tls-ca.
    #[arg(long, env = "MERKLOG_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "MERKLOG_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// HTTP/2 connections to the server; calls are spread over them.
    #[arg(long, default_value_t = 4)]
    connections: usize,

    /// Concurrent writers (each has one call in flight at a time).
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Entries per Append call.
    #[arg(long, default_value_t = 1)]
    entries_per_call: usize,
    /// Size of each random entry, in bytes.
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Append realistic audit events with `AppendEvents` (writers and
    /// prefill) instead of random opaque entries; the report gives the
    /// events' mean leaf size, to run an opaque comparison of the same size
    /// with --entry-bytes.
    #[arg(long)]
    events: bool,
    /// With --events: the number of distinct actors (a one-day, one-actor
    /// search finds about log size / actors hits).
    #[arg(long, default_value_t = 10_000)]
    actors: u32,
    /// Target append rate in entries per second over all writers; 0 for as
    /// fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    write_rate: f64,

    /// Concurrent readers of inclusion proofs for random leaf indexes.
    #[arg(long, default_value_t = 0)]
    inclusion_readers: usize,
    /// Inclusion proofs per call: 1 asks GetInclusionProof; more ask
    /// GetInclusionProofs for that many random leaves at once.
    #[arg(long, default_value_t = 1)]
    proofs_per_call: usize,
    /// Concurrent readers of consistency proofs between a random earlier
    /// signed head and the latest.
    #[arg(long, default_value_t = 0)]
    consistency_readers: usize,
    /// Concurrent readers of entry pages from random indexes.
    #[arg(long, default_value_t = 0)]
    entries_readers: usize,
    /// Entries per GetEntries page.
    #[arg(long, default_value_t = 100)]
    page_size: u64,
    /// Concurrent readers running `SearchEvents` for 100 hits with proofs
    /// (on a log of events: see --events).
    #[arg(long, default_value_t = 0)]
    search_readers: usize,
    /// Which search the search readers run.
    #[arg(long, value_enum, default_value_t = SearchKind::ActorDay)]
    search: SearchKind,
    /// Target read rate in calls per second over all readers; 0 for as fast
    /// as the server answers.
    #[arg(long, default_value_t = 0.0)]
    read_rate: f64,

    /// Length of the measured run, in seconds.
    #[arg(long, default_value_t = 60.0)]
    duration: f64,
    /// Append this many entries first, as fast as possible and unmeasured
    /// (it also warms the server up), e.g. to build a large log.
    #[arg(long, default_value_t = 0)]
    prefill: u64,
    /// Concurrent writers of the prefill.
    #[arg(long, default_value_t = 4)]
    prefill_writers: usize,
    /// Entries per call during the prefill.
    #[arg(long, default_value_t = 1000)]
    prefill_entries_per_call: usize,
    /// Verify in full the first answer of each worker and then one in this
    /// many (1 = all).
    #[arg(long, default_value_t = 100)]
    verify_every: u64,

    /// Measure raw batched inserts into PostgreSQL at this URL just before
    /// the run, and report the service's append rate as a ratio of it.
    #[arg(long)]
    baseline_postgres: Option<String>,
    /// How long the baseline runs, in seconds.
    #[arg(long, default_value_t = 5.0)]
    baseline_seconds: f64,

    /// With --spawn-*: the sequencer's max batch entries.
    #[arg(long)]
    batch_max_entries: Option<usize>,
    /// With --spawn-*: the sequencer's max batch delay in milliseconds.
    #[arg(long)]
    batch_max_delay_ms: Option<u64>,

    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args))
}

/// A server this process runs, stopped at the end.
struct Spawned {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), merklog_server::ServeError>>,
}

async fn spawn_server(args: &Args, url: &str) -> anyhow::Result<(String, Spawned)> {
    let store = AnyStore::open(url)
        .await
        .with_context(|| format!("cannot open the store {url}"))?;
    let signer = LogSigner::generate(&mut rand_core::OsRng);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let mut config = ServerConfig::default();
    let defaults = SequencerConfig::default();
    config.sequencer.max_batch_entries =
        args.batch_max_entries.unwrap_or(defaults.max_batch_entries);
    config.sequencer.max_batch_delay = args
        .batch_max_delay_ms
        .map_or(defaults.max_batch_delay, Duration::from_millis);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(merklog_server::serve(
        listener,
        config,
        Arc::new(store),
        signer,
        Arc::new(SystemClock),
        async {
            let _ = stopped.await;
        },
    ));
    Ok((format!("http://{addr}"), Spawned { stop, task }))
}

/// Returns the client TLS settings of `args`, if --tls-ca was given.
fn client_tls(args: &Args) -> anyhow::Result<Option<ClientTlsConfig>> {
    let read = |path: &std::path::PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let Some(ca) = &args.tls_ca else {
        return Ok(None);
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(Some(tls))
}

async fn connect(
    url: &str,
    connections: usize,
    tls: Option<ClientTlsConfig>,
) -> anyhow::Result<Vec<LogClient<Channel>>> {
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .context("not a server URL")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls)
            .context("the TLS settings are not usable")?;
    }
    let mut clients = Vec::new();
    let started = Instant::now();
    while clients.len() < connections.max(1) {
        match endpoint.connect().await {
            Ok(channel) => clients.push(
                LogClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            ),
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("waiting for {url}: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("cannot connect to {url}: {e}"),
        }
    }
    Ok(clients)
}

/// The phase the progress line reports, and the RSS samples taken in it.
#[derive(Default)]
struct Progress {
    phase: Mutex<&'static str>,
    rss: Mutex<BTreeMap<&'static str, Vec<u64>>>,
    stop: AtomicBool,
}

impl Progress {
    fn set_phase(&self, phase: &'static str) {
        *self.phase.lock().expect("phase lock") = phase;
    }
}

async fn progress_loop(shared: Arc<Shared>, progress: Arc<Progress>, rss_pid: Option<u32>) {
    let started = Instant::now();
    let mut last = LiveSnapshot::default();
    let mut last_prefilled = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while !progress.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = shared.live.snapshot();
        let prefilled = shared.live.prefilled.load(Ordering::Relaxed);
        let phase = *progress.phase.lock().expect("phase lock");
        let rss = rss_pid.and_then(rss_kib);
        if let Some(kib) = rss {
            progress
                .rss
                .lock()
                .expect("rss lock")
                .entry(phase)
                .or_default()
                .push(kib);
        }
        let mut line = format!("[{:>4.0}s {phase}]", started.elapsed().as_secs_f64());
        if phase == "prefill" {
            line += &format!(" prefill {}/s", prefilled - last_prefilled);
        }
        for op in Op::ALL {
            let i = op as usize;
            let calls = now.calls[i] - last.calls[i];
            let errors = now.errors[i] - last.errors[i];
            if calls + errors == 0 && now.calls[i] == 0 {
                continue;
            }
            line += &format!(
                " | {} {}/s ({} calls/s)",
                op.name(),
                now.items[i] - last.items[i],
                calls
            );
            if errors > 0 {
                line += &format!(" {errors} err");
            }
        }
        line += &format!(
            " | size {} | verified {}",
            shared.size.load(Ordering::Relaxed),
            shared.live.verified.load(Ordering::Relaxed)
        );
        if let Some(kib) = rss {
            line += &format!(" | rss {} MiB", kib / 1024);
        }
        eprintln!("{line}");
        last = now;
        last_prefilled = prefilled;
    }
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    settings: Settings,
    log: LogFacts,
    prefill: Option<PrefillReport>,
    baseline: Option<Baseline>,
    duration_s: f64,
    ops: Vec<OpReport>,
    /// Append throughput ÷ raw baseline rows per second.
    service_to_raw: Option<f64>,
    /// With --events: the mean leaf size of the events appended, in bytes.
    event_leaf_bytes_mean: Option<f64>,
    verified_answers: u64,
    failed_head_polls: u64,
    errors_total: u64,
    /// Server RSS by phase.
    rss: BTreeMap<String, RssReport>,
}

#[derive(Debug, Serialize)]
struct Settings {
    connections: usize,
    events: bool,
    actors: u32,
    writers: usize,
    entries_per_call: usize,
    entry_bytes: usize,
    write_rate: f64,
    inclusion_readers: usize,
    proofs_per_call: usize,
    consistency_readers: usize,
    entries_readers: usize,
    page_size: u64,
    search_readers: usize,
    search: SearchKind,
    read_rate: f64,
    verify_every: u64,
}

#[derive(Debug, Serialize)]
struct LogFacts {
    log_id: String,
    size_before: u64,
    size_after: u64,
}

#[derive(Debug, Serialize)]
struct PrefillReport {
    entries: u64,
    seconds: f64,
    entries_per_s: f64,
    failed_calls: u64,
}

/// Spreads `rate` per second over `workers`: the interval of each.
fn interval(rate: f64, workers: usize, per_call: f64) -> Option<Duration> {
    (rate > 0.0 && workers > 0).then(|| Duration::from_secs_f64(workers as f64 * per_call / rate))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.entries_per_call == 0
        || args.entry_bytes == 0
        || args.verify_every == 0
        || args.proofs_per_call == 0
    {
        bail!("--entries-per-call, --entry-bytes, --verify-every and --proofs-per-call must be at least 1");
    }
    let (url, spawned, rss_pid) = match (&args.server, &args.spawn_postgres, &args.spawn_sqlite) {
        (Some(url), None, None) => (url.clone(), None, args.server_pid),
        (None, Some(db), None) => {
            let (url, s) = spawn_server(&args, db).await?;
            (url, Some(s), Some(std::process::id()))
        }
        (None, None, Some(path)) => {
            if std::path::Path::new(path).exists() {
                bail!("{path} exists; --spawn-sqlite needs a new file (the key is fresh)");
            }
            let (url, s) = spawn_server(&args, path).await?;
            (url, Some(s), Some(std::process::id()))
        }
        _ => bail!("give one of --server, --spawn-postgres or --spawn-sqlite"),
    };
    let target = match (&args.server, &args.spawn_postgres) {
        (Some(u), _) => format!("server {u}"),
        (_, Some(_)) => "in-process server on PostgreSQL".to_owned(),
        _ => "in-process server on SQLite".to_owned(),
    };
    let authorization = args
        .token
        .as_ref()
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .context("the token is not a valid header value")?;
    let clients = connect(&url, args.connections, client_tls(&args)?).await?;
    let mut client = clients[0].clone();
    let info = client
        .get_log_info(load::with_token(
            GetLogInfoRequest {},
            authorization.as_ref(),
        ))
        .await?
        .into_inner();
    let key = PublicKey::from_der(&info.public_key_der).context("the log's public key")?;
    if key.log_id().0[..] != info.log_id[..] {
        bail!("GetLogInfo: the log ID is not SHA-256 of the public key");
    }
    let (max_call, call) = if args.events {
        (info.max_events_per_append as usize, "AppendEvents")
    } else {
        (info.max_entries_per_append as usize, "Append")
    };
    if args.entries_per_call > max_call || args.prefill_entries_per_call > max_call {
        bail!("the server takes at most {max_call} entries per {call} call");
    }
    let payload = if args.events {
        Payload::Events {
            actors: args.actors,
        }
    } else {
        Payload::Opaque {
            entry_bytes: args.entry_bytes,
        }
    };
    let shared = Arc::new(Shared::new(key, authorization));
    let first = client
        .get_signed_tree_head(shared.request(GetSignedTreeHeadRequest {}))
        .await?
        .into_inner();
    let size_before = first.tree_size;
    let first = shared
        .check_head(Some(&first), "signed_tree_head")
        .map_err(|e| anyhow::anyhow!("GetSignedTreeHead: {e}"))?;
    shared.add_head(first, &mut rand::rngs::StdRng::from_entropy());
    eprintln!("{target}: log {} of size {size_before}", shared.log_id);

    let progress = Arc::new(Progress::default());
    let progress_task = tokio::spawn(progress_loop(shared.clone(), progress.clone(), rss_pid));

    let prefill = if args.prefill > 0 {
        progress.set_phase("prefill");
        let t = Instant::now();
        let (entries, failed_calls) = load::prefill(
            &clients,
            shared.clone(),
            args.prefill,
            args.prefill_writers.max(1),
            args.prefill_entries_per_call,
            payload,
        )
        .await;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "prefill: {entries} entries in {seconds:.1} s = {:.0} entries/s",
            entries as f64 / seconds
        );
        Some(PrefillReport {
            entries,
            seconds,
            entries_per_s: entries as f64 / seconds,
            failed_calls,
        })
    } else {
        None
    };

    let baseline = match &args.baseline_postgres {
        Some(db) => {
            progress.set_phase("baseline");
            let b = baseline::run(
                db,
                args.entry_bytes,
                Duration::from_secs_f64(args.baseline_seconds),
            )
            .await?;
            eprintln!(
                "baseline: {:.0} rows/s raw ({} rows, {:.1} ms per 1,000-row transaction)",
                b.rows_per_s, b.rows, b.ms_per_tx
            );
            Some(b)
        }
        None => None,
    };

    progress.set_phase("run");
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let pace = |rate: f64, workers: usize, per_call: f64| Pace {
        interval: interval(rate, workers, per_call),
        deadline,
        verify_every: args.verify_every,
    };
    let mut tasks = Vec::new();
    let mut next_client = 0usize;
    let mut client_for = || {
        next_client += 1;
        clients[next_client % clients.len()].clone()
    };
    let write_pace = pace(args.write_rate, args.writers, args.entries_per_call as f64);
    for w in 0..args.writers {
        let offset = spread(write_pace.interval, w, args.writers);
        tasks.push(tokio::spawn(load::writer(
            client_for(),
            shared.clone(),
            write_pace,
            offset,
            args.entries_per_call,
            payload,
        )));
    }
    let readers: Vec<ReadKind> = std::iter::repeat_n(
        ReadKind::Inclusion {
            per_call: args.proofs_per_call,
        },
        args.inclusion_readers,
    )
    .chain(std::iter::repeat_n(
        ReadKind::Consistency,
        args.consistency_readers,
    ))
    .chain(std::iter::repeat_n(
        ReadKind::Entries {
            page: args.page_size,
        },
        args.entries_readers,
    ))
    .chain(std::iter::repeat_n(
        ReadKind::Search {
            kind: args.search,
            actors: args.actors,
        },
        args.search_readers,
    ))
    .collect();
    let read_pace = pace(args.read_rate, readers.len(), 1.0);
    for (r, kind) in readers.iter().enumerate() {
        let offset = spread(read_pace.interval, r, readers.len());
        tasks.push(tokio::spawn(load::reader(
            client_for(),
            shared.clone(),
            read_pace,
            offset,
            *kind,
        )));
    }
    let poller = tokio::spawn(load::poll_heads(
        client_for(),
        shared.clone(),
        Duration::from_millis(100),
        deadline,
    ));
    let mut total = Recorder::new();
    for t in tasks {
        total.merge(t.await.context("a worker panicked")?);
    }
    let failed_head_polls = poller.await.context("the head poller panicked")?;
    // Calls in flight at the deadline are let finish and counted.
    let seconds = started.elapsed().as_secs_f64();
    progress.stop.store(true, Ordering::Relaxed);
    let _ = progress_task.await;

    let last = client
        .get_signed_tree_head(shared.request(GetSignedTreeHeadRequest {}))
        .await?
        .into_inner();
    let ops: Vec<OpReport> = Op::ALL
        .iter()
        .filter_map(|op| total.op_report(*op, seconds))
        .collect();
    let append_rate = ops
        .iter()
        .find(|o| o.op == Op::Append.name())
        .map(|o| o.items_per_s);
    let service_to_raw = baseline
        .as_ref()
        .zip(append_rate)
        .map(|(b, rate)| rate / b.rows_per_s);
    let rss = progress
        .rss
        .lock()
        .expect("rss lock")
        .iter()
        .filter_map(|(phase, kib)| {
            RssReport::from_samples(rss_pid.unwrap_or(0), kib).map(|r| ((*phase).to_owned(), r))
        })
        .collect();
    let event_leaves = shared.event_leaves.load(Ordering::Relaxed);
    let event_leaf_bytes_mean = (event_leaves > 0)
        .then(|| shared.event_leaf_bytes.load(Ordering::Relaxed) as f64 / event_leaves as f64);
    let report = Report {
        target,
        settings: Settings {
            connections: args.connections,
            events: args.events,
            actors: args.actors,
            writers: args.writers,
            entries_per_call: args.entries_per_call,
            entry_bytes: args.entry_bytes,
            write_rate: args.write_rate,
            inclusion_readers: args.inclusion_readers,
            proofs_per_call: args.proofs_per_call,
            consistency_readers: args.consistency_readers,
            entries_readers: args.entries_readers,
            page_size: args.page_size,
            search_readers: args.search_readers,
            search: args.search,
            read_rate: args.read_rate,
            verify_every: args.verify_every,
        },
        log: LogFacts {
            log_id: shared.log_id.to_string(),
            size_before,
            size_after: last.tree_size,
        },
        prefill,
        baseline,
        duration_s: seconds,
        errors_total: total.total_errors() + failed_head_polls,
        ops,
        service_to_raw,
        event_leaf_bytes_mean,
        verified_answers: total.verified,
        failed_head_polls,
        rss,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if let Some(s) = spawned {
        let _ = s.stop.send(());
        match s.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the in-process server failed: {e}"),
            Err(e) => eprintln!("the in-process server panicked: {e}"),
        }
    }
    if report.errors_total > 0 {
        std::process::exit(2);
    }
    Ok(())
}

/// Staggers the first call of worker `k` of `n` over one interval, so paced
/// workers do not fire together.
fn spread(interval: Option<Duration>, k: usize, n: usize) -> Duration {
    interval.map_or(Duration::ZERO, |d| d.mul_f64(k as f64 / n.max(1) as f64))
}

fn print_report(r: &Report) {
    let s = &r.settings;
    println!("merklog-bench against {}", r.target);
    println!(
        "  log {}: size {} -> {}",
        r.log.log_id, r.log.size_before, r.log.size_after
    );
    println!(
        "  {} writers x {} entries/call of {} bytes at {}; readers: {} inclusion ({} proofs/call), {} consistency, {} pages of {} at {}; {} connections; verify 1 in {}",
        s.writers,
        s.entries_per_call,
        s.entry_bytes,
        rate_text(s.write_rate, "entries/s"),
        s.inclusion_readers,
        s.proofs_per_call,
        s.consistency_readers,
        s.entries_readers,
        s.page_size,
        rate_text(s.read_rate, "calls/s"),
        s.connections,
        s.verify_every
    );
    if let Some(p) = &r.prefill {
        println!(
            "  prefill: {} entries in {:.1} s = {:.0} entries/s ({} failed calls retried)",
            p.entries, p.seconds, p.entries_per_s, p.failed_calls
        );
    }
    if s.events {
        println!(
            "  appends are audit events from {} actors{}; {} search readers ({:?}, 100 hits)",
            s.actors,
            r.event_leaf_bytes_mean
                .map(|b| format!(", mean leaf {b:.0} bytes"))
                .unwrap_or_default(),
            s.search_readers,
            s.search
        );
    } else if s.search_readers > 0 {
        println!(
            "  {} search readers ({:?}, 100 hits)",
            s.search_readers, s.search
        );
    }
    println!("  measured run: {:.1} s", r.duration_s);
    println!(
        "  {:<18} {:>10} {:>11} {:>13} {:>8} {:>8} {:>8} {:>8} {:>8}  errors",
        "operation", "calls", "calls/s", "items/s", "p50 ms", "p90 ms", "p99 ms", "p99.9", "max ms"
    );
    for o in &r.ops {
        let errors = if o.errors.is_empty() {
            "-".to_owned()
        } else {
            o.errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "  {:<18} {:>10} {:>11.0} {:>13.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {errors}",
            o.op,
            o.calls,
            o.calls_per_s,
            o.items_per_s,
            o.latency_ms.p50,
            o.latency_ms.p90,
            o.latency_ms.p99,
            o.latency_ms.p999,
            o.latency_ms.max
        );
    }
    println!("  (append latency is the time from the call to its signed tree head: Append answers only once a signed head covers the entries)");
    if let Some(b) = &r.baseline {
        println!(
            "  raw PostgreSQL baseline: {:.0} rows/s ({} rows, {:.1} ms per {}-row transaction; fsync={}, synchronous_commit={}, PostgreSQL {})",
            b.rows_per_s,
            b.rows,
            b.ms_per_tx,
            baseline::ROWS_PER_TX,
            b.fsync,
            b.synchronous_commit,
            b.server_version
        );
    }
    if let Some(ratio) = r.service_to_raw {
        println!("  service / raw = {ratio:.2}");
    }
    for (phase, rss) in &r.rss {
        println!(
            "  server RSS during {phase}: peak {:.0} MiB, mean {:.0} MiB, last {:.0} MiB ({} samples)",
            rss.peak_mib, rss.mean_mib, rss.last_mib, rss.samples
        );
    }
    println!(
        "  verified in full: {} answers; errors: {}",
        r.verified_answers, r.errors_total
    );
}

fn rate_text(rate: f64, unit: &str) -> String {
    if rate > 0.0 {
        format!("{rate} {unit}")
    } else {
        "full speed".to_owned()
    }
}
