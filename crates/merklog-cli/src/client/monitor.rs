//! `merklog monitor`: follow a log, one verified head at a time.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use merklog_client::json::TreeHeadJson;
use merklog_client::{
    Client, ClientError, ClientOptions, StateFileCheck, TrustState, VerifiedHead,
};
use merklog_merkle::CompactRange;
use merklog_sth::PublicKey;
use serde::Serialize;

use super::audit::is_refusal;
use super::{
    format_ms, is_evidence, print_json_line, read_public_key, CommandResult, OutputArgs, Progress,
    SafetyArgs, TlsArgs,
};

/// How many times in a row the log may refuse a consistency proof from the
/// same smaller tree size (whatever the larger one: a log that grows
/// between checks changes it) before the monitor stops retrying and reports
/// [`ClientError::ConsistencyRefused`] (exit code 1).
///
/// A log that signed a larger head must be able to prove that it extends
/// the trusted one; a forked log cannot, so it refuses. A refusal is an
/// error status from the log, other than overload, an outage or an
/// authentication problem; connection failures are retried without limit
/// and do not break the run of refusals. With `--once` there is no run to
/// count, and a refusal is an error (exit code 2).
pub const MAX_CONSISTENCY_REFUSALS: u32 = 3;

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
    /// which trusts the head it sees). A running monitor also keeps that
    /// head in memory: if the file vanishes it warns, goes on against the
    /// head in memory and writes the file again.
    #[arg(long, env = "MERKLOG_STATE")]
    pub state: PathBuf,
    /// A bearer token, for a log that requires one to read.
    #[arg(long, env = "MERKLOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Check once and exit (for cron); otherwise check every `--interval`.
    #[arg(long)]
    pub once: bool,
    /// Seconds between checks, at least 1.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Alarm (exit status 3) when the log's latest head is older than this
    /// by this machine's clock, or the log has not been reached for longer
    /// than this: a log that stopped signing, or is hidden, must not look
    /// healthy. A number of seconds, or with a unit: 90s, 15m, 2h, 1d. Set
    /// it above the log's longest interval between heads (merklog serve
    /// signs a fresh head at least that often) plus --interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,
    /// Also download the new entries, check each against its leaf hash and
    /// recompute the new root from them. The first run downloads every entry.
    #[arg(long)]
    pub check_entries: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub safety: SafetyArgs,
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
    check_step(client, check_entries, None, progress)
        .await
        .map_err(|f| f.error)
}

/// A failed check and, when it failed because the log refused a
/// consistency proof, the proof's two sizes.
struct StepFailure {
    error: ClientError,
    refused: Option<(u64, u64)>,
}

impl From<ClientError> for StepFailure {
    fn from(error: ClientError) -> Self {
        StepFailure {
            error,
            refused: None,
        }
    }
}

/// Checks as [`check_once`] does and, before the new head is trusted,
/// that `also` (a head kept from before, of another size than the trusted
/// one) is one tree with the trusted head.
async fn check_step(
    client: &mut Client,
    check_entries: bool,
    also: Option<&VerifiedHead>,
    progress: &mut Progress,
) -> Result<MonitorStep, StepFailure> {
    let previous = client.trusted_head().cloned();
    let head = client.fetch_latest().await?;
    // The latest head first: a log that rolled back is caught as such,
    // before it is asked for proofs of trees it no longer has.
    check_linked(client, &head, false).await?;
    if let Some(also) = also {
        check_linked(client, also, true).await?;
    }
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

/// Checks `head` against the client's trusted head, naming the two sizes
/// when the log refused the consistency proof between them.
async fn check_linked(
    client: &mut Client,
    head: &VerifiedHead,
    allow_older: bool,
) -> Result<(), StepFailure> {
    let trusted = client.trusted_head().map(VerifiedHead::tree_size);
    client
        .check_against_trusted(head, allow_older)
        .await
        .map_err(|error| {
            // The consistency proof is the only call made here (a rollback
            // fails before it), so an error status is the log's answer to it.
            let refused = match (trusted, &error) {
                (Some(t), ClientError::Status { .. }) => {
                    Some((t.min(head.tree_size()), t.max(head.tree_size())))
                }
                _ => None,
            };
            StepFailure { error, refused }
        })
}

/// A running monitor: what it keeps from one check to the next.
///
/// Each check connects afresh and reloads the state file, but the last
/// head the monitor verified stays in memory too, and every new head is
/// checked against it as well as against the file: a state file that
/// vanishes or is put back older must not make the monitor take the log's
/// word afresh, which would hide a rollback or a fork.
pub struct Monitor {
    server: String,
    key: PublicKey,
    /// The token, TLS and skew settings each check connects with.
    options: ClientOptions,
    state: PathBuf,
    check_entries: bool,
    /// The last head verified (and saved), with its tree's right edge.
    verified: Option<(VerifiedHead, Option<CompactRange>)>,
    /// The sizes of the last refused consistency proof, and how many times
    /// in a row the log refused a proof from the same smaller size.
    refusals: Option<((u64, u64), u32)>,
    /// When the log was last known to be up (ms since the Unix epoch): the
    /// end of the last check that passed; before one, the saved head's
    /// timestamp, or the monitor's start when there is none.
    last_contact_ms: u64,
}

impl Monitor {
    /// Returns a monitor of the log `args` names, pinned to `key`, that has
    /// verified nothing yet.
    ///
    /// # Errors
    /// [`super::CommandError::Usage`] when a TLS file cannot be read.
    pub fn new(args: &MonitorArgs, key: PublicKey) -> CommandResult<Self> {
        let options = args.safety.options(args.tls.read()?, args.token.clone());
        Ok(Self::with_options(args, key, options))
    }

    /// Returns a monitor as [`Monitor::new`] does, connecting with
    /// `options` (a test's clock, say) instead of those `args` give.
    pub fn with_options(args: &MonitorArgs, key: PublicKey, options: ClientOptions) -> Self {
        // A saved head shows the log was up when it signed it; a file that
        // does not load is reported by the first check.
        let saved_ms = TrustState::load(&args.state, &key)
            .ok()
            .flatten()
            .map(|(head, _)| head.timestamp_ms());
        let last_contact_ms = saved_ms.unwrap_or_else(|| options.clock.now_ms());
        Monitor {
            server: args.server.clone(),
            key,
            options,
            state: args.state.clone(),
            check_entries: args.check_entries,
            verified: None,
            refusals: None,
            last_contact_ms,
        }
    }

    /// Returns the time by the monitor's clock, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
    }

    /// Returns the alarm `--max-age` raises after a check that passed with
    /// `step`: the log's latest head is older than `max_age`.
    pub fn stale_head(&self, step: &MonitorStep, max_age: Duration) -> Option<StaleLog> {
        let head = &step.tree_head;
        let age_ms = self.now_ms().saturating_sub(head.timestamp);
        (u128::from(age_ms) > max_age.as_millis()).then_some(StaleLog::OldHead {
            tree_size: head.tree_size,
            timestamp_ms: head.timestamp,
            age_ms,
            max_age,
        })
    }

    /// Returns the alarm `--max-age` raises after a check that could not be
    /// made (`error`): the log has not been reached for longer than
    /// `max_age`.
    pub fn unreachable(&self, error: &ClientError, max_age: Duration) -> Option<StaleLog> {
        let for_ms = self.now_ms().saturating_sub(self.last_contact_ms);
        (u128::from(for_ms) > max_age.as_millis()).then(|| StaleLog::Unreachable {
            since_ms: self.last_contact_ms,
            for_ms,
            max_age,
            error: error.to_string(),
        })
    }

    /// Returns the last head this monitor verified.
    pub fn verified_head(&self) -> Option<&VerifiedHead> {
        self.verified.as_ref().map(|(head, _)| head)
    }

    /// Runs one check ([`check_once`]) against the state file and the head
    /// kept in memory: the log's latest head must not be smaller than either
    /// and must extend the larger, and the smaller must be a prefix of the
    /// larger. A state file that vanished or went back is reported on
    /// `warnings` (stderr in the command), and the check goes on against
    /// the kept head; the file is written again when the check passes.
    ///
    /// # Errors
    /// As [`check_once`]; [`ClientError::Fork`] when the state file's head
    /// and the kept one cannot both be true;
    /// [`ClientError::ConsistencyRefused`] at the
    /// [`MAX_CONSISTENCY_REFUSALS`]th refusal in a row of a proof from the
    /// same smaller size.
    pub async fn check(
        &mut self,
        progress: &mut Progress,
        warnings: &mut dyn Write,
    ) -> Result<MonitorStep, ClientError> {
        let mut client = Client::connect_with(&self.server, self.key.clone(), self.options.clone())
            .await?
            .with_state_file(&self.state)?;
        let mut also = None;
        let mut rewrite = false;
        if let Some((kept, edge)) = &self.verified {
            let file_head = client.trusted_head().cloned();
            let found = client.restore_trusted(kept, edge.as_ref())?;
            self.warn_about_state_file(found, kept, warnings);
            // The larger of the two is trusted; the smaller must be a
            // prefix of it, which the log proves once its latest head passed.
            rewrite = matches!(
                found,
                StateFileCheck::Missing | StateFileCheck::Behind { .. }
            );
            also = match found {
                StateFileCheck::Behind { .. } => file_head,
                StateFileCheck::Ahead { .. } => Some(kept.clone()),
                StateFileCheck::NoStateFile | StateFileCheck::Same | StateFileCheck::Missing => {
                    None
                }
            };
        }
        match check_step(&mut client, self.check_entries, also.as_ref(), progress).await {
            Ok(step) => {
                self.last_contact_ms = self.now_ms();
                self.verified = client
                    .trusted_head()
                    .cloned()
                    .map(|h| (h, client.trusted_edge().cloned()));
                self.refusals = None;
                if let (true, Some((head, edge))) = (rewrite, &self.verified) {
                    // The check saves only a head newer than the trusted
                    // one; a lost or old file is written again regardless.
                    TrustState::save_unless_ahead(&self.state, &self.key, head, edge.as_ref())?;
                }
                Ok(step)
            }
            Err(StepFailure {
                error,
                refused: Some(sizes),
            }) if is_refusal(&error) => Err(self.count_refusal(sizes, error, warnings)),
            Err(failure) => Err(failure.error),
        }
    }

    fn warn_about_state_file(
        &self,
        found: StateFileCheck,
        kept: &VerifiedHead,
        warnings: &mut dyn Write,
    ) {
        let path = self.state.display();
        let (size, root) = (kept.tree_size(), kept.root_hash());
        let warning = match found {
            StateFileCheck::Missing => format!(
                "the state file {path} has disappeared since this monitor saved the tree head of \
                 size {size} (root {root}); checking against that head, kept in memory, and \
                 writing the file again at the next save. Find out what removed it: a monitor \
                 started without it trusts whatever head the log serves"
            ),
            StateFileCheck::Behind { file_size } => format!(
                "the state file {path} holds the tree head of size {file_size}, older than the \
                 head of size {size} (root {root}) this monitor verified and saved; checking \
                 against the newer head, kept in memory, and writing the file again at the next \
                 save. Find out what put an old file back"
            ),
            StateFileCheck::NoStateFile | StateFileCheck::Same | StateFileCheck::Ahead { .. } => {
                return
            }
        };
        // A warning that cannot be written must not stop the monitor.
        let _ = writeln!(warnings, "merklog: monitor: WARNING: {warning}");
    }

    /// Counts a refusal of the consistency proof between `sizes`, and turns
    /// it into an alarm at the limit.
    fn count_refusal(
        &mut self,
        sizes: (u64, u64),
        error: ClientError,
        warnings: &mut dyn Write,
    ) -> ClientError {
        // Keyed on the smaller size only: a forked log that keeps growing
        // changes the larger one at every check.
        let count = match self.refusals {
            Some((last, count)) if last.0 == sizes.0 => count + 1,
            _ => 1,
        };
        self.refusals = Some((sizes, count));
        match error {
            ClientError::Status { code, message } if count >= MAX_CONSISTENCY_REFUSALS => {
                ClientError::ConsistencyRefused {
                    first_size: sizes.0,
                    second_size: sizes.1,
                    refusals: count,
                    code,
                    message,
                }
            }
            error => {
                let _ = writeln!(
                    warnings,
                    "merklog: monitor: the log refused the consistency proof from size {} to size \
                     {} ({count} of {MAX_CONSISTENCY_REFUSALS} times in a row before the monitor \
                     reports it as a verification failure)",
                    sizes.0, sizes.1
                );
                error
            }
        }
    }
}

/// Runs the monitor: once, or every `--interval` seconds until a check
/// fails. Connection problems between checks are reported and retried; a
/// failed verification ends the monitor with exit code 1, and so does a
/// log that refuses a consistency proof from the same size
/// [`MAX_CONSISTENCY_REFUSALS`] times in a row. With `--max-age`, a head
/// older than that, or a log not reached for longer, ends it with exit
/// code 3 ([`StaleLog`]).
///
/// # Errors
/// The first verification failure or `--max-age` alarm; with `--once`, any
/// error.
pub async fn run(args: MonitorArgs, out: &mut dyn Write) -> CommandResult {
    let key = read_public_key(&args.public_key)?;
    let mut progress = Progress::new("monitor: catching up", !args.out.json);
    let mut monitor = Monitor::new(&args, key)?;
    loop {
        let checked_ms = monitor.now_ms();
        match monitor.check(&mut progress, &mut std::io::stderr()).await {
            Ok(step) => {
                print_step(out, &step, checked_ms, args.out.json)?;
                if let Some(alarm) = args.max_age.and_then(|max| monitor.stale_head(&step, max)) {
                    return Err(alarm.into());
                }
            }
            // A token refused for the address will be refused next time too.
            Err(e) if is_evidence(&e) || matches!(e, ClientError::InsecureToken { .. }) => {
                return Err(e.into())
            }
            Err(e) => {
                if let Some(alarm) = args.max_age.and_then(|max| monitor.unreachable(&e, max)) {
                    return Err(alarm.into());
                }
                if args.once {
                    return Err(e.into());
                }
                if args.out.json {
                    print_json_line(
                        out,
                        &serde_json::json!({
                            "ok": false,
                            "checked_at": format_ms(checked_ms),
                            "checked_at_ms": checked_ms,
                            "error": {"kind": e.kind(), "message": e.to_string()},
                            "will_retry": true,
                        }),
                    )?;
                }
                eprintln!("merklog: monitor: will retry: {e}");
            }
        }
        if args.once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}

/// Why `--max-age` raised its alarm (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum StaleLog {
    /// The log answered, but its latest head is too old: it stopped
    /// signing, or shows an old view of itself.
    #[error("stale head: the log's latest tree head (size {tree_size}) was signed at {} ({timestamp_ms} ms), {} s ago, more than --max-age {} s: a log that signs no fresh head may be frozen or hiding its newest entries", format_ms(*timestamp_ms), age_ms / 1000, max_age.as_secs())]
    OldHead {
        tree_size: u64,
        timestamp_ms: u64,
        age_ms: u64,
        max_age: Duration,
    },
    /// The log has not answered a check for too long.
    #[error("unreachable: the log has not been reached since {} ({since_ms} ms), {} s ago, more than --max-age {} s; last error: {error}", format_ms(*since_ms), for_ms / 1000, max_age.as_secs())]
    Unreachable {
        since_ms: u64,
        for_ms: u64,
        max_age: Duration,
        error: String,
    },
}

impl StaleLog {
    /// Returns a short, stable name for scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            StaleLog::OldHead { .. } => "stale_head",
            StaleLog::Unreachable { .. } => "unreachable",
        }
    }
}

/// Parses `--max-age`: seconds, or a number with the unit `s`, `m`, `h` or
/// `d`; at least 1 s.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .filter(|_| scale > 0)
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(|| {
            format!("{text:?} is not a duration: give seconds, or a number with s, m, h or d (90s, 15m, 2h, 1d)")
        })?;
    if seconds == 0 {
        return Err("must be at least 1 s".into());
    }
    Ok(Duration::from_secs(seconds))
}

/// Prints one check: in text a line starting with the check's time; with
/// `--json` one JSON line (JSON Lines), with the check's time.
fn print_step(
    out: &mut dyn Write,
    step: &MonitorStep,
    checked_ms: u64,
    json: bool,
) -> CommandResult {
    if json {
        return print_json_line(
            out,
            &serde_json::json!({
                "ok": true,
                "checked_at": format_ms(checked_ms),
                "checked_at_ms": checked_ms,
                "previous": step.previous,
                "tree_head": step.tree_head,
                "entries_checked": step.entries_checked,
            }),
        );
    }
    let h = &step.tree_head;
    let at = format_ms(checked_ms);
    let signed = format_ms(h.timestamp);
    match &step.previous {
        None => writeln!(
            out,
            "{at} OK: first look: trusting the tree head of size {} (root {}, signed {signed}), signature verified",
            h.tree_size, h.root_hash
        )?,
        Some(p) => writeln!(
            out,
            "{at} OK: tree size {} -> {} (root {}, signed {signed}): signature verified, consistent with the saved head",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_takes_seconds_or_a_unit() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "m", "1.5h", "10w", "-5", "5 m", "99999999999999999999d"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("not a duration"), "{bad:?}: {e}");
        }
        assert_eq!(parse_duration("0s").unwrap_err(), "must be at least 1 s");
    }
}
