//! The client commands. Each one checks everything it prints, through
//! `merklog-client`, and ends with an [`ExitCode`]-worthy [`CommandError`]
//! when something does not verify.
//!
//! Exit codes (documented in `docs/FORMATS.md`): 0 when every check passed,
//! 1 when the log, the store or a saved document failed a check, or the log
//! said its own store is damaged (`DATA_LOSS`), 2 for a usage error or when
//! the check could not be made (no connection, an unreadable file, another
//! error status from the log); `monitor --max-age` adds 3 for a log whose
//! latest head is too old or that has not been reached for too long.

pub mod append;
pub mod audit;
pub mod emit;
pub mod entries;
pub mod export;
pub mod log_info;
pub mod monitor;
pub mod progress;
pub mod prove;
pub mod search;
pub mod sth;
pub mod verify;
pub mod verify_export;
pub mod verify_store;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use merklog_client::{Client, ClientError, ClientOptions, ClientTls};
use merklog_sth::PublicKey;

/// The client subcommands of `merklog`.
#[derive(clap::Subcommand)]
pub enum ClientCommand {
    /// Append entries and print, for each, its index, leaf hash and verified
    /// inclusion proof, and the verified tree head.
    Append(append::AppendArgs),
    /// Print the log's latest tree head, verified.
    Sth(sth::SthArgs),
    /// Print what a log's server says about itself (log ID, public key,
    /// limits), NOT verified: for a user who has no key to pin yet.
    LogInfo(log_info::LogInfoArgs),
    /// Print entries [start, end), each checked against its leaf hash.
    Entries(entries::EntriesArgs),
    /// Fetch and verify an inclusion or consistency proof.
    #[command(subcommand)]
    Prove(prove::ProveCommand),
    /// Check a saved proof and tree head with a public key, offline.
    Verify(verify::VerifyArgs),
    /// Follow a log: check each new head's signature and consistency with
    /// the last verified head kept in a state file.
    Monitor(monitor::MonitorArgs),
    /// Download every entry, recompute the tree and check it against the
    /// log's signed heads and proofs.
    Audit(audit::AuditArgs),
    /// Check a log's database directly: every leaf, stored node and signed
    /// head against one another and the public key.
    VerifyStore(verify_store::VerifyStoreArgs),
    /// Append audit events (from flags, a JSON file or JSON Lines on
    /// stdin) and print, for each, its index, event id and leaf hash, and
    /// the verified tree head.
    Emit(Box<emit::EmitArgs>),
    /// Search audit events, newest first; every hit's inclusion proof and
    /// match with the search are checked before it is printed.
    Search(Box<search::SearchArgs>),
    /// Fetch every entry integrated in a time window, with a bundle that
    /// proves none is missing.
    Export(export::ExportArgs),
    /// Check an export bundle (and its entries file) with a public key,
    /// offline.
    VerifyExport(verify_export::VerifyExportArgs),
}

impl ClientCommand {
    /// Whether `--json` was given.
    fn json(&self) -> bool {
        match self {
            ClientCommand::Append(a) => a.out.json,
            ClientCommand::Sth(a) => a.out.json,
            ClientCommand::LogInfo(a) => a.out.json,
            ClientCommand::Entries(a) => a.out.json,
            ClientCommand::Prove(p) => p.json(),
            ClientCommand::Verify(a) => a.out.json,
            ClientCommand::Monitor(a) => a.out.json,
            ClientCommand::Audit(a) => a.out.json,
            ClientCommand::VerifyStore(a) => a.out.json,
            ClientCommand::Emit(a) => a.out.json,
            ClientCommand::Search(a) => a.out.json,
            ClientCommand::Export(a) => a.out.json,
            ClientCommand::VerifyExport(a) => a.out.json,
        }
    }

    /// Runs the command on a new runtime, prints its result to stdout (and
    /// errors to stderr; with `--json` also as JSON on stdout) and returns
    /// the exit code.
    pub fn run(self) -> ExitCode {
        let json = self.json();
        let runtime = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("merklog: error: cannot start the async runtime: {e}");
                return ExitCode::from(2);
            }
        };
        let mut stdout = std::io::stdout().lock();
        let result = runtime.block_on(async {
            match self {
                ClientCommand::Append(a) => append::run(a, &mut stdout).await,
                ClientCommand::Sth(a) => sth::run(a, &mut stdout).await,
                ClientCommand::LogInfo(a) => log_info::run(a, &mut stdout).await,
                ClientCommand::Entries(a) => entries::run(a, &mut stdout).await,
                ClientCommand::Prove(p) => prove::run(p, &mut stdout).await,
                ClientCommand::Verify(a) => verify::run(a, &mut stdout),
                ClientCommand::Monitor(a) => monitor::run(a, &mut stdout).await,
                ClientCommand::Audit(a) => audit::run(a, &mut stdout).await,
                ClientCommand::VerifyStore(a) => verify_store::run(a, &mut stdout).await,
                ClientCommand::Emit(a) => emit::run(*a, &mut stdout).await,
                ClientCommand::Search(a) => search::run(*a, &mut stdout).await,
                ClientCommand::Export(a) => export::run(a, &mut stdout).await,
                ClientCommand::VerifyExport(a) => verify_export::run(a, &mut stdout),
            }
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            // The reader went away (`merklog entries | head`): nothing to say.
            Err(CommandError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("merklog: {}", e.headline());
                if json {
                    let _ = writeln!(stdout, "{}", e.to_json());
                }
                ExitCode::from(e.exit_code())
            }
        }
    }
}

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A check by the client library failed, or could not be made.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A command that collects every problem (audit, verify-store) found
    /// some; they were printed already.
    #[error("{summary}")]
    Problems { summary: String },
    /// The command line or an input file is unusable.
    #[error("{0}")]
    Usage(String),
    /// The store could not be opened or read.
    #[error("cannot read the store: {0}")]
    Storage(#[from] merklog_storage::StorageError),
    /// Output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// `source` stopped a command that had done part of its work (an
    /// `append` whose later call failed); `done` says what was done and
    /// what was not.
    #[error("{source}; {done}")]
    Partly {
        source: Box<CommandError>,
        done: String,
    },
    /// `monitor --max-age`: the log's latest head is too old, or the log
    /// has not been reached for too long (exit code 3).
    #[error(transparent)]
    Stale(#[from] monitor::StaleLog),
}

impl CommandError {
    /// Returns 1 for a verification failure, 3 for a `--max-age` alarm, 2
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        if self.is_verification_failure() {
            1
        } else if matches!(self, CommandError::Stale(_)) {
            3
        } else {
            2
        }
    }

    /// Returns true when something failed a check (exit code 1).
    pub fn is_verification_failure(&self) -> bool {
        match self {
            CommandError::Client(e) => is_evidence(e),
            CommandError::Problems { .. } => true,
            CommandError::Usage(_)
            | CommandError::Storage(_)
            | CommandError::Output(_)
            | CommandError::Stale(_) => false,
            CommandError::Partly { source, .. } => source.is_verification_failure(),
        }
    }

    /// Returns a short, stable name for scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::Client(e) => e.kind(),
            CommandError::Problems { .. } => "problems",
            CommandError::Usage(_) => "usage",
            CommandError::Storage(_) => "storage",
            CommandError::Output(_) => "output",
            CommandError::Partly { source, .. } => source.kind(),
            CommandError::Stale(e) => e.kind(),
        }
    }

    /// Returns the line printed to stderr.
    fn headline(&self) -> String {
        if self.is_verification_failure() {
            format!("VERIFICATION FAILED: {self}")
        } else if matches!(self, CommandError::Stale(_)) {
            format!("ALARM: {self}")
        } else {
            format!("error: {self}")
        }
    }

    /// Returns `{"ok": false, "error": {"kind", "message", "exit_code"}}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": false,
            "error": {
                "kind": self.kind(),
                "message": self.to_string(),
                "exit_code": self.exit_code(),
            }
        })
    }
}

/// Returns true when `error` is evidence that the log was tampered with or
/// damaged: a failed check ([`ClientError::is_verification_failure`]), or
/// the log's own answer that its store no longer holds what it signed
/// (`DATA_LOSS`: an entry that does not match its leaf hash, a row or node
/// gone). Every client command exits 1 on it.
pub fn is_evidence(error: &ClientError) -> bool {
    error.is_verification_failure()
        || matches!(
            error,
            ClientError::Status {
                code: tonic::Code::DataLoss,
                ..
            }
        )
}

/// The result of a client command.
pub type CommandResult<T = ()> = Result<T, CommandError>;

/// Where the log is and which key to pin.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// The log's gRPC address.
    #[arg(
        long,
        short = 's',
        env = "MERKLOG_SERVER",
        default_value = "http://127.0.0.1:7300"
    )]
    pub server: String,
    /// The log's public key (PEM), pinned: every tree head must be signed by
    /// it.
    #[arg(long, short = 'k', env = "MERKLOG_PUBLIC_KEY")]
    pub public_key: PathBuf,
    /// Keep the last verified tree head in this file: every later head must
    /// be consistent with it.
    #[arg(long, env = "MERKLOG_STATE")]
    pub state: Option<PathBuf>,
    /// A bearer token, for a log that requires one to append (or read).
    #[arg(long, env = "MERKLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate(s) (PEM) to trust for an https:// server; only
    /// these are trusted.
    #[arg(long, env = "MERKLOG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate chain (PEM), for a log that requires mutual
    /// TLS; needs --tls-key.
    #[arg(long, env = "MERKLOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "MERKLOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub safety: SafetyArgs,
}

/// What a client command tolerates from the network and the log; shared by
/// every command that talks to a log.
#[derive(clap::Args, Debug, Clone)]
pub struct SafetyArgs {
    /// Send --token over plain http:// to a host that is not this machine
    /// (loopback: 127.0.0.0/8, ::1, localhost). Anyone on the network path
    /// can then read and replay the token; use https:// instead.
    #[arg(long)]
    pub allow_insecure_token: bool,
    /// Refuse a tree head dated more than this many seconds past this
    /// machine's clock (a log must not date heads in the future).
    #[arg(
        long,
        env = "MERKLOG_MAX_CLOCK_SKEW",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub max_clock_skew: u64,
}

impl Default for SafetyArgs {
    fn default() -> Self {
        SafetyArgs {
            allow_insecure_token: false,
            max_clock_skew: merklog_client::DEFAULT_MAX_CLOCK_SKEW.as_secs(),
        }
    }
}

impl SafetyArgs {
    /// Returns the client options these settings give, with `tls` and
    /// `token`.
    pub fn options(&self, tls: Option<ClientTls>, token: Option<String>) -> ClientOptions {
        ClientOptions {
            tls,
            token,
            allow_insecure_token: self.allow_insecure_token,
            max_clock_skew: std::time::Duration::from_secs(self.max_clock_skew),
            ..ClientOptions::default()
        }
    }
}

impl LogArgs {
    /// Connects a verifying client, with the state file if one was given.
    ///
    /// # Errors
    /// When the key cannot be read, the log cannot be reached or the state
    /// file does not verify.
    pub async fn connect(&self) -> CommandResult<Client> {
        let key = read_public_key(&self.public_key)?;
        let options = self.safety.options(self.tls()?, self.token.clone());
        let client = Client::connect_with(&self.server, key, options).await?;
        Ok(match &self.state {
            Some(path) => client.with_state_file(path)?,
            None => client,
        })
    }
}

impl LogArgs {
    /// Reads the TLS files, if any were given.
    ///
    /// # Errors
    /// [`CommandError::Usage`] naming a file that cannot be read, or a
    /// client certificate without a CA to trust.
    pub fn tls(&self) -> CommandResult<Option<ClientTls>> {
        read_tls(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
    }
}

/// The TLS options, for a command that does not take all of [`LogArgs`].
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// The CA certificate(s) (PEM) to trust for an https:// server; only
    /// these are trusted.
    #[arg(long, env = "MERKLOG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate chain (PEM), for a log that requires mutual
    /// TLS; needs --tls-key.
    #[arg(long, env = "MERKLOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "MERKLOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// Reads the TLS files, if any were given.
    ///
    /// # Errors
    /// As [`LogArgs::tls`].
    pub fn read(&self) -> CommandResult<Option<ClientTls>> {
        read_tls(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
    }
}

fn read_tls(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> CommandResult<Option<ClientTls>> {
    let Some(ca) = ca else {
        if cert.is_some() {
            return Err(CommandError::Usage(
                "--tls-cert needs --tls-ca: the CA that signed the log's certificate".into(),
            ));
        }
        return Ok(None);
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some((
            read_text(cert, "TLS client certificate")?.into_bytes(),
            read_text(key, "TLS client key")?.into_bytes(),
        )),
        _ => None,
    };
    Ok(Some(ClientTls {
        ca_pem: read_text(ca, "TLS CA certificate")?.into_bytes(),
        identity,
    }))
}

/// `--json`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Print JSON (the documents of docs/FORMATS.md) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Whether `error` comes from writing to a pipe whose reader has gone.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Reads a PEM public key file.
///
/// # Errors
/// [`CommandError::Usage`] naming the file.
pub fn read_public_key(path: &Path) -> CommandResult<PublicKey> {
    let pem = read_text(path, "public key")?;
    if pem.contains("PRIVATE KEY-----") {
        // The log's signing key given where its public key belongs.
        return Err(CommandError::Usage(format!(
            "--public-key {0} is a private key, not a public key: print the public key with \
             `merklog public-key --key {0} > log.pub`, pin log.pub, and keep the private key \
             on the log's server only",
            path.display()
        )));
    }
    PublicKey::from_pem(&pem).map_err(|e| CommandError::Usage(format!("{}: {e}", path.display())))
}

/// Reads a text file, naming it and what it was for on error.
fn read_text(path: &Path, what: &str) -> CommandResult<String> {
    std::fs::read_to_string(path).map_err(|e| {
        CommandError::Usage(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })
}

/// Prints `value` as one line of pretty JSON.
fn print_json(out: &mut dyn Write, value: &impl serde::Serialize) -> CommandResult {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// Prints `value` as one line of compact JSON (a line of JSON Lines).
fn print_json_line(out: &mut dyn Write, value: &impl serde::Serialize) -> CommandResult {
    let text = serde_json::to_string(value).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

/// Formats `ms` (since the Unix epoch) as RFC 3339 / ISO 8601 in UTC with
/// milliseconds, as human output shows times beside the milliseconds.
pub fn format_ms(ms: u64) -> String {
    match i64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
    {
        Some(nanos) => merklog_event::format_rfc3339(nanos, 3),
        None => "a time past the year 2262".to_owned(),
    }
}

/// Prints a verified head in text.
fn print_head(out: &mut dyn Write, head: &merklog_client::VerifiedHead) -> CommandResult {
    writeln!(out, "tree size:  {}", head.tree_size())?;
    writeln!(out, "root hash:  {}", head.root_hash())?;
    writeln!(
        out,
        "timestamp:  {} ({} ms since the Unix epoch)",
        format_ms(head.timestamp_ms()),
        head.timestamp_ms()
    )?;
    writeln!(out, "log ID:     {}", head.log_id())?;
    writeln!(out, "signature:  verified with the pinned key")?;
    Ok(())
}

/// Writes a document to a file (for `--proof-out` and friends).
fn save_json(path: &Path, value: &impl serde::Serialize) -> CommandResult {
    let mut text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(path, text)
        .map_err(|e| CommandError::Usage(format!("cannot write {}: {e}", path.display())))
}

/// Reports progress on stderr at most once a second, and always at the end.
pub struct Progress {
    label: &'static str,
    last: Option<std::time::Instant>,
    enabled: bool,
}

impl Progress {
    /// Returns a reporter that prints lines prefixed by `label`, or nothing
    /// when `enabled` is false.
    pub fn new(label: &'static str, enabled: bool) -> Self {
        Progress {
            label,
            last: None,
            enabled,
        }
    }

    /// Returns a reporter that prints nothing (for tests).
    pub fn quiet() -> Self {
        Self::new("", false)
    }

    /// Reports `done` of `total` `unit`.
    pub fn update(&mut self, done: u64, total: u64, unit: &str) {
        if !self.enabled {
            return;
        }
        let now = std::time::Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t).as_secs() >= 1);
        if due || done == total {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprintln!("{}: {done}/{total} {unit} ({pct}%)", self.label);
            self.last = Some(now);
        }
    }
}
