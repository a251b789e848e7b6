//! `merklog sth`: the latest tree head, verified.

use std::io::Write;

use super::{print_head, print_json, CommandResult, LogArgs, OutputArgs};

/// Arguments of `merklog sth`.
#[derive(clap::Args, Debug, Clone)]
pub struct SthArgs {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Fetches, verifies and prints the latest tree head (a tree head document
/// with `--json`).
///
/// # Errors
/// When the head does not verify or is not consistent with the state file.
pub async fn run(args: SthArgs, out: &mut dyn Write) -> CommandResult {
    let mut client = args.log.connect().await?;
    let head = client.latest_head().await?;
    if args.out.json {
        print_json(out, &head.to_json())
    } else {
        print_head(out, &head)
    }
}
