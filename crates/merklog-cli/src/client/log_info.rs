//! `merklog log-info`: what a log's server says about itself — its log ID,
//! public key and limits — for a user who has no key to pin yet. Nothing
//! here is verified: a server can claim any key.

use std::io::Write;

use merklog_client::LogInfo;
use serde::Serialize;

use super::{print_json, CommandResult, OutputArgs, SafetyArgs, TlsArgs};

/// Arguments of `merklog log-info`.
#[derive(clap::Args, Debug, Clone)]
pub struct LogInfoArgs {
    /// The log's gRPC address.
    #[arg(
        long,
        short = 's',
        env = "MERKLOG_SERVER",
        default_value = "http://127.0.0.1:7300"
    )]
    pub server: String,
    /// A bearer token, for a log that requires one to read.
    #[arg(long, env = "MERKLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The `--json` document: the server's description, marked unverified.
#[derive(Debug, Serialize)]
pub struct LogInfoJson {
    /// Always false: nothing pins what the server says.
    pub verified: bool,
    pub warning: &'static str,
    pub server: String,
    /// The log ID the server claims.
    pub log_id: String,
    /// The log ID of the key it serves (SHA-256 of its DER); the same as
    /// `log_id` from an honest log.
    pub public_key_log_id: String,
    pub public_key_pem: String,
    pub hash_algorithm: String,
    pub signature_algorithm: String,
    pub limits: Limits,
}

/// The limits the log states (0: it does not say).
#[derive(Debug, Serialize)]
pub struct Limits {
    pub max_entry_bytes: u64,
    pub max_entries_per_append: u32,
    pub max_page_size: u32,
    pub max_request_bytes: u64,
    pub max_events_per_append: u32,
    pub max_events_page_size: u32,
    pub max_search_window_seconds: u64,
}

/// The warning printed with every answer.
pub const NOT_PINNED: &str = "NOT VERIFIED: this is what the server says about itself; \
     anyone can run a server that claims a key. Pin the key only after comparing its log ID \
     with one obtained from the log's operator another way (merklog public-key on the \
     operator's side prints it).";

impl LogInfoJson {
    fn new(server: &str, info: &LogInfo) -> Self {
        LogInfoJson {
            verified: false,
            warning: NOT_PINNED,
            server: server.to_owned(),
            log_id: info.log_id.to_string(),
            public_key_log_id: info.public_key.log_id().to_string(),
            public_key_pem: info.public_key.pem(),
            hash_algorithm: info.hash_algorithm.clone(),
            signature_algorithm: info.signature_algorithm.clone(),
            limits: Limits {
                max_entry_bytes: info.max_entry_bytes,
                max_entries_per_append: info.max_entries_per_append,
                max_page_size: info.max_page_size,
                max_request_bytes: info.max_request_bytes,
                max_events_per_append: info.max_events_per_append,
                max_events_page_size: info.max_events_page_size,
                max_search_window_seconds: info.max_search_window_seconds,
            },
        }
    }
}

/// Asks the server and prints what it says, marked as not verified.
///
/// # Errors
/// When the server cannot be reached or answers with an error or a
/// malformed key.
pub async fn run(args: LogInfoArgs, out: &mut dyn Write) -> CommandResult {
    let options = args.safety.options(args.tls.read()?, args.token.clone());
    let info = merklog_client::unpinned_log_info(&args.server, options).await?;
    let doc = LogInfoJson::new(&args.server, &info);
    if args.out.json {
        return print_json(out, &doc);
    }
    eprintln!("merklog: {NOT_PINNED}");
    writeln!(out, "server:               {} (NOT VERIFIED)", doc.server)?;
    writeln!(out, "log ID:               {}", doc.log_id)?;
    if doc.public_key_log_id != doc.log_id {
        writeln!(
            out,
            "WARNING: the key the server serves has log ID {}, not the log ID it claims: \
             it is not an honest merklog log",
            doc.public_key_log_id
        )?;
    }
    writeln!(out, "hash algorithm:       {}", doc.hash_algorithm)?;
    writeln!(out, "signature algorithm:  {}", doc.signature_algorithm)?;
    let l = &doc.limits;
    let said = |n: u64| {
        if n == 0 {
            "not stated".to_owned()
        } else {
            n.to_string()
        }
    };
    writeln!(out, "max entry bytes:      {}", said(l.max_entry_bytes))?;
    writeln!(
        out,
        "max entries/append:   {}",
        said(l.max_entries_per_append.into())
    )?;
    writeln!(
        out,
        "max page size:        {}",
        said(l.max_page_size.into())
    )?;
    writeln!(out, "max request bytes:    {}", said(l.max_request_bytes))?;
    writeln!(
        out,
        "max events/append:    {}",
        said(l.max_events_per_append.into())
    )?;
    writeln!(
        out,
        "max events page size: {}",
        said(l.max_events_page_size.into())
    )?;
    writeln!(
        out,
        "max search window:    {}",
        if l.max_search_window_seconds == 0 {
            "not stated".to_owned()
        } else {
            format!("{} s", l.max_search_window_seconds)
        }
    )?;
    writeln!(out, "public key (NOT VERIFIED, as the server serves it):")?;
    write!(out, "{}", doc.public_key_pem)?;
    if !doc.public_key_pem.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}
