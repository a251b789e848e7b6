//! `merklog monitor`: follow a log, one verified head at a time.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use merklog_client::json::TreeHeadJson;
use merklog_client::{Client, ClientError, VerifiedHead};
use merklog_merkle::CompactRange;
use serde::Serialize;

use super::{print_json, read_public_key, CommandResult, OutputArgs, Progress};

/// Arguments of `merklog monitor`.
#[derive(clap::Args, Debug, Clone)]
pub struct MonitorArgs {
    /// The log's gRPC address.
    #[arg(
        long,
        short = 's',
        env = "MERKLOG_SERVER",
        default_value = "http://127.0.0.1:7300"
    )]
    pub server: String,
    /// The log's public key (PEM).
    #[arg(long, short = 'k', env = "MERKLOG_PUBLIC_KEY")]
    pub public_key: PathBuf,
    /// The state file: the last verified head (created on the first run,
    /// which trusts the head it sees).
    #[arg(long, env = "MERKLOG_STATE")]
    pub state: PathBuf,
    /// A bearer token, for a log that requires one to read.
    #[arg(long, env = "MERKLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Check once and exit (for cron); otherwise check every `--interval`.
    #[arg(long)]
    pub once: bool,
    /// Seconds between checks.
    #[arg(long, default_value_t = 60)]
    pub interval: u64,
    /// Also download the new entries, check each against its leaf hash and
    /// recompute the new root from them. The first run downloads every entry.
    #[arg(long)]
    pub check_entries: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What one check established.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorStep {
    /// The head trusted before the check (`None` on the first run).
    pub previous: Option<TreeHeadJson>,
    /// The log's latest head, now trusted and saved.
    pub tree_head: TreeHeadJson,
    /// How many entries were downloaded and checked.
    pub entries_checked: u64,
}

/// Checks the log's latest head against the trusted one: signature, log,
/// no rollback, consistency; with `check_entries`, the entries that make up
/// the difference. Only when every check passed does the head become
/// trusted (and saved, when the client has a state file).
///
/// # Errors
/// [`ClientError::BadSignature`], [`ClientError::WrongLog`],
/// [`ClientError::Rollback`], [`ClientError::Fork`],
/// [`ClientError::LeafHash`], [`ClientError::RootMismatch`],
/// [`ClientError::MissingEntries`]; transport and status errors.
pub async fn check_once(
    client: &mut Client,
    check_entries: bool,
    progress: &mut Progress,
) -> Result<MonitorStep, ClientError> {
    let previous = client.trusted_head().cloned();
    let head = client.fetch_latest().await?;
    client.check_against_trusted(&head, false).await?;
    let mut entries_checked = 0;
    let edge = if check_entries {
        let (range, checked) =
            check_new_entries(client, previous.as_ref(), &head, progress).await?;
        entries_checked = checked;
        Some(range)
    } else {
        None
    };
    client.set_trusted(&head, edge.as_ref())?;
    Ok(MonitorStep {
        previous: previous.map(|h| h.to_json()),
        tree_head: head.to_json(),
        entries_checked,
    })
}

/// Extends the trusted tree's right edge by the new entries up to `head`
/// (from the first entry when the edge is unknown, checking the trusted
/// root on the way) and checks the result against `head`'s root.
async fn check_new_entries(
    client: &mut Client,
    previous: Option<&VerifiedHead>,
    head: &VerifiedHead,
    progress: &mut Progress,
) -> Result<(CompactRange, u64), ClientError> {
    let mut range = match (previous, client.trusted_edge()) {
        (Some(_), Some(edge)) => edge.clone(),
        _ => CompactRange::new(),
    };
    let start = range.size();
    let end = head.tree_size();
    let mut checkpoints: Vec<(u64, merklog_merkle::Hash)> = Vec::new();
    if let Some(p) = previous.filter(|p| p.tree_size() > start) {
        checkpoints.push((p.tree_size(), p.root_hash()));
    }
    checkpoints.push((end, head.root_hash()));
    let check = |range: &CompactRange, checkpoints: &[(u64, merklog_merkle::Hash)]| {
        for &(size, signed) in checkpoints {
            if range.size() == size && range.root() != signed {
                return Err(ClientError::RootMismatch {
                    tree_size: size,
                    computed: range.root(),
                    signed,
                });
            }
        }
        Ok(())
    };
    check(&range, &checkpoints)?;
    while range.size() < end {
        let page = client.entries_page(range.size(), end).await?;
        if page.is_empty() {
            return Err(ClientError::MissingEntries {
                tree_size: end,
                served: range.size(),
            });
        }
        for entry in page {
            range.append(entry.leaf_hash, |_, _| {});
            check(&range, &checkpoints)?;
        }
        progress.update(range.size() - start, end - start, "entries checked");
    }
    Ok((range, end - start))
}

/// Runs the monitor: once, or every `--interval` seconds until a check
/// fails. Connection problems between checks are reported and retried; a
/// failed verification ends the monitor with exit code 1.
///
/// # Errors
/// The first verification failure; with `--once`, any error.
pub async fn run(args: MonitorArgs, out: &mut dyn Write) -> CommandResult {
    let key = read_public_key(&args.public_key)?;
    let mut progress = Progress::new("monitor: catching up", true);
    loop {
        let result = async {
            let mut client = Client::connect(&args.server, key.clone()).await?;
            if let Some(token) = &args.token {
                client = client.with_token(token)?;
            }
            let mut client = client.with_state_file(&args.state)?;
            check_once(&mut client, args.check_entries, &mut progress).await
        }
        .await;
        match result {
            Ok(step) => print_step(out, &step, args.out.json)?,
            Err(e) if args.once || e.is_verification_failure() => return Err(e.into()),
            Err(e) => eprintln!("merklog: monitor: will retry: {e}"),
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}

fn print_step(out: &mut dyn Write, step: &MonitorStep, json: bool) -> CommandResult {
    if json {
        return print_json(
            out,
            &serde_json::json!({"ok": true, "previous": step.previous, "tree_head": step.tree_head, "entries_checked": step.entries_checked}),
        );
    }
    let h = &step.tree_head;
    match &step.previous {
        None => writeln!(
            out,
            "OK: first look: trusting the tree head of size {} (root {}), signature verified",
            h.tree_size, h.root_hash
        )?,
        Some(p) => writeln!(
            out,
            "OK: tree size {} -> {} (root {}): signature verified, consistent with the saved head",
            p.tree_size, h.tree_size, h.root_hash
        )?,
    }
    if step.entries_checked > 0 {
        writeln!(
            out,
            "    {} new entries checked against the new root",
            step.entries_checked
        )?;
    }
    out.flush()?;
    Ok(())
}
