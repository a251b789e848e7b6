//! `merklog entries`: a range of entries, each checked against its leaf hash.

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
    /// The last index, exclusive (default: the latest tree size).
    #[arg(long)]
    pub end: Option<u64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Prints the entries: in text one per line (index, leaf hash, the data as
/// text when it is printable UTF-8, else in hex); with `--json` a list of
/// entry documents (data in base64).
///
/// # Errors
/// When an entry's bytes do not match its leaf hash.
pub async fn run(args: EntriesArgs, out: &mut dyn Write) -> CommandResult {
    let mut client = args.log.connect().await?;
    let end = match args.end {
        Some(end) => end,
        None => client.latest_head().await?.tree_size(),
    };
    if end < args.start {
        return Err(CommandError::Usage(format!(
            "--end {end} is before --start {}",
            args.start
        )));
    }
    let entries = client.entries(args.start, end).await?;
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
