//! `merklog entries`: a range of entries, each proved into the log's latest
//! signed tree head.

use std::io::Write;

use merklog_client::json::EntryJson;

use super::{print_json, CommandError, CommandResult, LogArgs, OutputArgs};

/// Arguments of `merklog entries`.
#[derive(clap::Args, Debug, Clone)]
pub struct EntriesArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The first index, inclusive.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// The last index, exclusive (default: the latest signed tree size; at
    /// most that).
    #[arg(long)]
    pub end: Option<u64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Prints the entries: in text one per line (index, leaf hash, the data as
/// text when it is printable UTF-8, else in hex); with `--json` a list of
/// entry documents (data in base64). Each entry is first proved into the
/// log's latest signed tree head (verified, and checked against the state
/// file when one is given), so what is printed is what the log signed.
///
/// # Errors
/// A usage error when the range is empty or passes the latest signed size;
/// a verification failure when an entry's bytes do not match its leaf hash,
/// its proof does not verify, or the log serves fewer entries than it
/// signed.
pub async fn run(args: EntriesArgs, out: &mut dyn Write) -> CommandResult {
    let mut client = args.log.connect().await?;
    let head = client.latest_head().await?;
    let size = head.tree_size();
    if args.start > size {
        return Err(CommandError::Usage(format!(
            "--start {} is past the log's size: its latest signed tree head covers {size} \
             entries",
            args.start
        )));
    }
    let end = args.end.unwrap_or(size);
    if end < args.start {
        return Err(CommandError::Usage(format!(
            "--end {end} is before --start {}",
            args.start
        )));
    }
    if end > size {
        return Err(CommandError::Usage(format!(
            "--end {end} is past the log's latest signed tree size {size}: entries past it \
             cannot be proved"
        )));
    }
    let entries = client.proven_entries(&head, args.start, end).await?;
    if args.out.json {
        let docs: Vec<EntryJson> = entries.iter().map(|e| e.to_json()).collect();
        return print_json(out, &docs);
    }
    for e in &entries {
        writeln!(out, "{}\t{}\t{}", e.index, e.leaf_hash, printable(&e.data))?;
    }
    Ok(())
}

/// Returns `data` as text when it is printable UTF-8, else as `hex:…`.
fn printable(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) if !s.chars().any(|c| c.is_control() && c != '\t') => s.to_owned(),
        _ => format!("hex:{}", hex_encode(data)),
    }
}

fn hex_encode(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}
