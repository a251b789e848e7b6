//! `merklog verify-export`: check an export bundle (and its entries file)
//! offline, with the log's public key and nothing else.

use std::io::Write;
use std::path::PathBuf;

use merklog_client::offline::parse;
use merklog_client::window::{check_entries_file, verify_bundle, ExportBundle, VerifiedWindow};

use super::{read_public_key, read_text, CommandResult, OutputArgs};

/// Arguments of `merklog verify-export`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyExportArgs {
    /// The log's public key (PEM).
    #[arg(long, short = 'k', env = "MERKLOG_PUBLIC_KEY")]
    pub public_key: PathBuf,
    /// The proof bundle `merklog export` wrote.
    #[arg(long, value_name = "FILE")]
    pub bundle: PathBuf,
    /// The entries file `merklog export` wrote: it must hold exactly the
    /// window's entries.
    #[arg(long, value_name = "FILE")]
    pub entries: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Checks the bundle and, when given, the entries file.
///
/// # Errors
/// The check that failed (exit code 1), or a usage error for unreadable
/// files (exit code 2).
pub fn check(args: &VerifyExportArgs) -> CommandResult<VerifiedWindow> {
    let key = read_public_key(&args.public_key)?;
    let text = read_text(&args.bundle, "export bundle")?;
    let bundle: ExportBundle = parse(&text, &format!("export bundle {}", args.bundle.display()))?;
    drop(text);
    let window = verify_bundle(&key, &bundle)?;
    if let Some(path) = &args.entries {
        let text = read_text(path, "entries")?;
        check_entries_file(&window, &text)?;
    }
    Ok(window)
}

/// Checks and prints what the bundle proves.
///
/// # Errors
/// As [`check`].
pub fn run(args: VerifyExportArgs, out: &mut dyn Write) -> CommandResult {
    let window = check(&args)?;
    super::export::report(out, &window, args.out.json)
}
