use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use merklog_server::{
    AuthConfig, Deployment, Limits, LogKeys, Polling, SequencerConfig, ServerConfig, SystemClock,
    TlsConfig, TransportLimits,
};
use merklog_storage::AnyStore;

use crate::keygen::{read_private_key, write_private_key};

/// The embedded default store.
const DEFAULT_DATABASE: &str = "sqlite://./data/merklog.db";
/// Where the embedded default keeps the key it creates on first run.
const DEFAULT_KEY: &str = crate::keygen::DEFAULT_KEY_PATH;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on for gRPC.
    #[arg(long, env = "MERKLOG_LISTEN", default_value = "127.0.0.1:7300")]
    pub listen: String,
    /// `postgres://user@host/db`, or `sqlite://path` for the embedded store.
    #[arg(long, env = "MERKLOG_DATABASE_URL", default_value = DEFAULT_DATABASE)]
    pub database_url: String,
    /// The log's private key (PKCS#8 PEM, from `merklog keygen`). Without
    /// it, the embedded default creates ./data/log-key.pem on first run.
    #[arg(long, env = "MERKLOG_KEY")]
    pub key: Option<PathBuf>,
    /// A batch closes once it holds this many entries.
    #[arg(long, env = "MERKLOG_BATCH_MAX_ENTRIES", default_value_t = SequencerConfig::default().max_batch_entries)]
    pub batch_max_entries: usize,
    /// How long a batch waits for more appends, in milliseconds.
    #[arg(long, env = "MERKLOG_BATCH_MAX_DELAY_MS", default_value_t = SequencerConfig::default().max_batch_delay.as_millis() as u64)]
    pub batch_max_delay_ms: u64,
    /// How many entries may wait for the sequencer before appends are refused.
    #[arg(long, env = "MERKLOG_QUEUE_CAPACITY", default_value_t = SequencerConfig::default().queue_capacity)]
    pub queue_capacity: usize,
    /// How many bytes of entries may wait for the sequencer (each entry
    /// counted with 64 bytes of overhead) before appends are refused.
    #[arg(long, env = "MERKLOG_QUEUE_CAPACITY_BYTES", default_value_t = SequencerConfig::default().queue_capacity_bytes)]
    pub queue_capacity_bytes: usize,
    /// How old the latest signed tree head may grow, in seconds, while
    /// nobody appends: then the log signs and stores a fresh head of the
    /// same size with the current time, so that monitors can tell an idle
    /// log from a frozen one. 0 turns it off (at least 1 otherwise).
    #[arg(long, env = "MERKLOG_MAX_HEAD_AGE_SECS", default_value_t = merklog_server::config::DEFAULT_MAX_HEAD_AGE.as_secs())]
    pub max_head_age_secs: u64,
    /// The largest entry accepted, in bytes.
    #[arg(long, env = "MERKLOG_MAX_ENTRY_BYTES", default_value_t = Limits::default().max_entry_bytes)]
    pub max_entry_bytes: usize,
    /// The most entries in one Append call.
    #[arg(long, env = "MERKLOG_MAX_ENTRIES_PER_APPEND", default_value_t = Limits::default().max_entries_per_append)]
    pub max_entries_per_append: usize,
    /// The most entries one GetEntries call returns, and the most leaves one
    /// GetInclusionProofs call may ask for.
    #[arg(long, env = "MERKLOG_MAX_PAGE_SIZE", default_value_t = Limits::default().max_page_size)]
    pub max_page_size: usize,
    /// Memory for the upper levels of the tree kept for proofs, in MiB; the
    /// more, the fewer rows a proof reads (64 MiB: from level 4 up at 10 M
    /// entries). 0 turns the cache off.
    #[arg(long, env = "MERKLOG_NODE_CACHE_MIB", default_value_t = Limits::default().node_cache_bytes >> 20)]
    pub node_cache_mib: usize,
    /// The largest Append request, in bytes of its gRPC message; larger
    /// ones are refused with RESOURCE_EXHAUSTED before they are read.
    #[arg(long, env = "MERKLOG_MAX_REQUEST_BYTES", default_value_t = Limits::default().max_request_bytes)]
    pub max_request_bytes: usize,
    /// A GetEntries page ends before the entry that would take its data
    /// past this many bytes (it always holds one entry).
    #[arg(long, env = "MERKLOG_MAX_RESPONSE_BYTES", default_value_t = Limits::default().max_response_bytes)]
    pub max_response_bytes: usize,
    /// Access rules (TOML): bearer-token hashes with writer or reader roles;
    /// see `merklog token`. Without it, anyone who reaches the port may
    /// append, which is refused on other than loopback addresses unless
    /// --allow-open-access is given.
    #[arg(long, env = "MERKLOG_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Serve without --auth-file on an address other than loopback: anyone
    /// who reaches it may append.
    #[arg(long, env = "MERKLOG_ALLOW_OPEN_ACCESS")]
    pub allow_open_access: bool,
    /// How many connections may be open at once; more are closed as soon
    /// as they are accepted.
    #[arg(long, env = "MERKLOG_MAX_CONNECTIONS", default_value_t = TransportLimits::default().max_connections)]
    pub max_connections: usize,
    /// How many bytes the requests and answers of all calls together may
    /// hold; requests past it are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "MERKLOG_MAX_INFLIGHT_BYTES", default_value_t = TransportLimits::default().max_inflight_bytes)]
    pub max_inflight_bytes: usize,
    /// How long a connection may stay open, in seconds: then it is asked to
    /// close, and closed one request timeout later.
    #[arg(long, env = "MERKLOG_MAX_CONNECTION_AGE_SECS", default_value_t = TransportLimits::default().max_connection_age.as_secs())]
    pub max_connection_age_secs: u64,
    /// How often HTTP/2 pings and TCP keepalive probes check an idle
    /// connection's peer, in seconds.
    #[arg(long, env = "MERKLOG_KEEPALIVE_INTERVAL_SECS", default_value_t = TransportLimits::default().keepalive_interval.as_secs())]
    pub keepalive_interval_secs: u64,
    /// How many requests one connection may have in the service at once;
    /// more are refused at once with RESOURCE_EXHAUSTED.
    #[arg(long, env = "MERKLOG_MAX_CONCURRENT_REQUESTS_PER_CONNECTION", default_value_t = TransportLimits::default().max_concurrent_requests_per_connection)]
    pub max_concurrent_requests_per_connection: usize,
    /// How long a request may run, in milliseconds, before it is answered
    /// with CANCELLED; a shorter deadline sent by the client wins.
    #[arg(long, env = "MERKLOG_REQUEST_TIMEOUT_MS", default_value_t = TransportLimits::default().request_timeout.as_millis() as u64)]
    pub request_timeout_ms: u64,
    /// Serve gRPC over TLS with this certificate chain (PEM, leaf first);
    /// needs --tls-key.
    #[arg(long, env = "MERKLOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "MERKLOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require clients to present a certificate signed by one of these CA
    /// certificates (PEM): mutual TLS. Needs --tls-cert and --tls-key.
    #[arg(long, env = "MERKLOG_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at /metrics on this address (e.g.
    /// 127.0.0.1:9300); off unless given.
    #[arg(long, env = "MERKLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Before serving, recheck the whole stored log (every entry, stored
    /// node and signed head), as `merklog verify-store` does, and refuse to
    /// start on any disagreement. Costs one pass over the log; without it,
    /// start-up checks the latest head against the right edge of the tree.
    #[arg(long, env = "MERKLOG_VERIFY_ON_START")]
    pub verify_on_start: bool,
    /// Run as one of several instances on one PostgreSQL database: this
    /// one sequences while it holds the database's leader lock, and
    /// otherwise serves reads and refuses appends with UNAVAILABLE naming
    /// the leader. Needs --advertise-address.
    #[arg(long, env = "MERKLOG_LEADER_ELECTION", requires = "advertise_address")]
    pub leader_election: bool,
    /// The address clients should use for this instance (e.g.
    /// `http://log-1.internal:7300`), told to callers of the others while it
    /// leads.
    #[arg(long, env = "MERKLOG_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
    /// Never sequence: serve reads only, e.g. from a PostgreSQL streaming
    /// replica. Takes --public-key instead of the private key.
    #[arg(
        long,
        env = "MERKLOG_READ_ONLY",
        conflicts_with = "leader_election",
        requires = "public_key"
    )]
    pub read_only: bool,
    /// The log's public key (PEM), for --read-only. Its variable is not the
    /// clients' MERKLOG_PUBLIC_KEY: a shell set up for client commands must
    /// not turn `serve` read-only.
    #[arg(long, env = "MERKLOG_READ_ONLY_PUBLIC_KEY", conflicts_with = "key")]
    pub public_key: Option<PathBuf>,
    /// How often a follower reads the latest head and tries for the lead,
    /// and a leader checks it still holds the lock, in milliseconds.
    #[arg(long, env = "MERKLOG_POLL_INTERVAL_MS", default_value_t = Polling::default().interval.as_millis() as u64)]
    pub poll_interval_ms: u64,
    /// Log format: `human` or `json`. Levels come from RUST_LOG (default info).
    #[arg(long, env = "MERKLOG_LOG_FORMAT", default_value = "human", value_parser = ["human", "json"])]
    pub log_format: String,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(args))
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let embedded = !is_postgres(&args.database_url);
    if (args.leader_election || args.read_only) && embedded {
        bail!("--leader-election and --read-only need a PostgreSQL database (--database-url postgres://...)");
    }
    let keys: LogKeys = match (&args.key, &args.public_key) {
        (_, Some(path)) => merklog_cli::client::read_public_key(path)?.into(),
        (Some(path), None) => read_private_key(path)?.into(),
        (None, None) if embedded => {
            let path = PathBuf::from(DEFAULT_KEY);
            if path.exists() {
                read_private_key(&path)?.into()
            } else {
                let signer = merklog_sth::LogSigner::generate(&mut rand_core::OsRng);
                write_private_key(&path, &signer, false)?;
                tracing::info!(
                    path = %path.display(),
                    log_id = %signer.public_key().log_id(),
                    public_key = %signer.public_key().pem(),
                    "created a new log key"
                );
                signer.into()
            }
        }
        (None, None) => bail!("a key is required with PostgreSQL: create one with `merklog keygen --out key.pem` and pass --key key.pem"),
    };
    let store = AnyStore::open(&args.database_url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact(&args.database_url)))?;
    let auth = match &args.auth_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the auth file {}", path.display()))?;
            AuthConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("in the auth file {}: {e}", path.display()))?
        }
        None => AuthConfig::open(),
    };
    let tls = read_tls(&args)?;
    if args.verify_on_start {
        verify_whole_store(&store, &keys.public).await?;
    }
    let deployment = if args.read_only {
        Deployment::ReadOnly
    } else if args.leader_election {
        Deployment::LeaderElection {
            advertise: args.advertise_address.clone().unwrap_or_default(),
        }
    } else {
        Deployment::Standalone
    };
    let config = ServerConfig {
        auth,
        tls,
        transport: TransportLimits {
            max_concurrent_requests_per_connection: args.max_concurrent_requests_per_connection,
            request_timeout: Duration::from_millis(args.request_timeout_ms),
            max_connections: args.max_connections,
            max_inflight_bytes: args.max_inflight_bytes,
            max_connection_age: Duration::from_secs(args.max_connection_age_secs),
            keepalive_interval: Duration::from_secs(args.keepalive_interval_secs),
        },
        limits: Limits {
            max_entry_bytes: args.max_entry_bytes,
            max_entries_per_append: args.max_entries_per_append,
            max_page_size: args.max_page_size,
            node_cache_bytes: args.node_cache_mib.saturating_mul(1 << 20),
            max_request_bytes: args.max_request_bytes,
            max_response_bytes: args.max_response_bytes,
        },
        sequencer: SequencerConfig {
            max_batch_entries: args.batch_max_entries,
            max_batch_delay: Duration::from_millis(args.batch_max_delay_ms),
            queue_capacity: args.queue_capacity,
            queue_capacity_bytes: args.queue_capacity_bytes,
            max_head_age: (args.max_head_age_secs > 0)
                .then(|| Duration::from_secs(args.max_head_age_secs)),
        },
        deployment,
        allow_open_access: args.allow_open_access,
        polling: Polling {
            interval: Duration::from_millis(args.poll_interval_ms),
        },
    };
    if let Some(addr) = args.metrics_listen {
        crate::metrics_http::serve_metrics(addr).await?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    merklog_server::serve(
        listener,
        config,
        Arc::new(store),
        keys,
        Arc::new(SystemClock),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Reads the TLS files named on the command line, if any.
fn read_tls(args: &ServeArgs) -> anyhow::Result<Option<TlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        // clap makes --tls-cert and --tls-key come together.
        return Ok(None);
    };
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
    };
    let client_ca = match &args.tls_client_ca {
        Some(path) => Some(read(path, "TLS client CA file")?),
        None => None,
    };
    let config = TlsConfig::from_pem(
        read(cert, "TLS certificate file")?,
        read(key, "TLS key file")?,
        client_ca,
    )
    .with_context(|| {
        format!(
            "in --tls-cert {} / --tls-key {}{}",
            cert.display(),
            key.display(),
            args.tls_client_ca
                .as_ref()
                .map_or(String::new(), |ca| format!(
                    " / --tls-client-ca {}",
                    ca.display()
                ))
        )
    })?;
    Ok(Some(config))
}

/// Rechecks every stored entry, node and head; fails naming what disagrees.
async fn verify_whole_store(store: &AnyStore, key: &merklog_sth::PublicKey) -> anyhow::Result<()> {
    use merklog_cli::client::{verify_store::verify_store, Progress};
    let mut progress = Progress::new("verify-on-start", true);
    let mut snapshot = store
        .snapshot()
        .await
        .context("cannot read the store to verify it")?;
    let report = verify_store(&mut snapshot, key, None, 1000, &mut progress)
        .await
        .context("cannot read the store to verify it")?;
    if !report.ok() {
        let listed: Vec<String> = report
            .problems
            .iter()
            .take(20)
            .map(|p| format!("  {p}"))
            .collect();
        bail!(
            "refusing to start: the stored log disagrees with itself in {} place(s):\n{}",
            report.problems.len(),
            listed.join("\n")
        );
    }
    tracing::info!(
        leaves = report.leaves,
        nodes = report.nodes_checked,
        tiles = report.tiles_checked,
        heads = report.heads_checked,
        "whole stored log verified"
    );
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Hides the passwords in a database URL before it is printed: the one in
/// the user info (`postgres://user:secret@host`) and those given as query
/// parameters (`?password=secret`, `?sslpassword=secret`, as libpq and sqlx
/// accept them).
fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &base[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &base[..scheme + 3],
                    &creds[..colon],
                    &base[at..]
                ),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("password")
                        || key.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing the batch in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's tour exports MERKLOG_PUBLIC_KEY for client commands; a
    /// later `merklog serve` in that shell must not read it.
    #[test]
    fn serve_does_not_take_the_clients_public_key_variable() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let command = Cli::command();
        let public_key = command
            .get_arguments()
            .find(|a| a.get_id() == "public_key")
            .unwrap();
        assert_eq!(
            public_key.get_env(),
            Some(std::ffi::OsStr::new("MERKLOG_READ_ONLY_PUBLIC_KEY"))
        );
        assert!(command
            .get_arguments()
            .all(|a| a.get_env() != Some(std::ffi::OsStr::new("MERKLOG_PUBLIC_KEY"))));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./data/x.db"), "sqlite://./data/x.db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=secret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact("postgres://u:a@h/db?PassWord=b&sslpassword=c&application_name=x"),
            "postgres://u:***@h/db?PassWord=***&sslpassword=***&application_name=x"
        );
        assert_eq!(
            redact("sqlite://./x.db?mode=rwc"),
            "sqlite://./x.db?mode=rwc"
        );
    }
}
