//! `merklog export`: every entry integrated in a time window, with the
//! bundle that proves the list complete (docs/FORMATS.md, "Export bundle").

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use merklog_client::export_window;
use merklog_client::window::VerifiedWindow;

use super::{print_json, progress, CommandError, CommandResult, LogArgs, OutputArgs};

/// Arguments of `merklog export`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The window's start, inclusive: RFC 3339 (2026-12-03T14:00:00Z), ms
    /// since the Unix epoch, `now`, or a time before now (-30m, -1h, -7d).
    #[arg(long, value_name = "TIME")]
    pub since: String,
    /// The window's end, exclusive, in the forms --since takes.
    #[arg(long, value_name = "TIME")]
    pub until: String,
    /// Where to write the window's entries, one JSON document per line.
    #[arg(long, value_name = "FILE")]
    pub entries: PathBuf,
    /// Where to write the proof bundle, for `merklog verify-export`.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Exports the window, verifies the bundle, writes both files and says
/// what they prove.
///
/// # Errors
/// A usage error for bad times or unwritable files (exit code 2); the
/// client's errors for what does not verify (exit code 1).
pub async fn run(args: ExportArgs, out: &mut dyn Write) -> CommandResult {
    let now = super::emit::now_nanos();
    let since = window_time(&args.since, "--since", now)?;
    let until = window_time(&args.until, "--until", now)?;
    let mut client = args.log.connect().await?;
    // The library fetches and checks the window in one call: a spinner
    // says it is at work, a bar counts the entries written.
    let spinner = progress::spinner(args.out.json, "export");
    spinner.set_message("fetching and verifying the window's entries and proofs");
    let exported = export_window(&mut client, since, until).await;
    spinner.finish_and_clear();
    let (bundle, window) = exported?;
    let bar = progress::bar(
        args.out.json,
        "export: writing",
        window.in_window.len() as u64,
        "entries",
    );
    write_with(&args.entries, |w| {
        for e in &window.in_window {
            serde_json::to_writer(&mut *w, e).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
            bar.inc(1);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    write_with(&args.bundle, |w| {
        serde_json::to_writer(&mut *w, &bundle).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })?;
    report(out, &window, args.out.json)
}

/// Reads a window end as `search` does (RFC 3339, `now`, `-1h`, …) or as
/// ms since the Unix epoch, in ms.
fn window_time(text: &str, flag: &str, now_nanos: i64) -> CommandResult<u64> {
    if let Ok(window_ms) = merklog_client::window::parse_time(text, flag) {
        return Ok(window_ms);
    }
    let nanos = super::emit::parse_time(text, flag, now_nanos)?;
    u64::try_from(nanos.div_euclid(1_000_000))
        .map_err(|_| CommandError::Usage(format!("{flag} {text:?}: before 1970")))
}

/// Prints what a verified window proves, plainly: complete or open, and
/// how far the proving heads lie from the asked ends.
pub(super) fn report(out: &mut dyn Write, window: &VerifiedWindow, json: bool) -> CommandResult {
    if json {
        return print_json(
            out,
            &serde_json::json!({
                "ok": true,
                "closed": window.closed(),
                "entries": window.in_window.len(),
                "since_ms": window.since_ms,
                "until_ms": window.until_ms,
                "start_head": window.start.to_json(),
                "end_head": window.end.to_json(),
                "heads": window.heads,
                "conclusions": window.conclusions(),
            }),
        );
    }
    let verdict = if window.closed() {
        "OK"
    } else {
        "OK (OPEN WINDOW)"
    };
    writeln!(
        out,
        "{verdict}: the window is proved by log {}",
        window.end.log_id()
    )?;
    for line in window.conclusions() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// Writes a file through a buffer, naming it when it cannot be written.
fn write_with(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> CommandResult {
    let fail =
        |e: std::io::Error| CommandError::Usage(format!("cannot write {}: {e}", path.display()));
    let file = std::fs::File::create(path).map_err(fail)?;
    let mut w = BufWriter::new(file);
    body(&mut w).map_err(fail)?;
    w.flush().map_err(fail)
}
