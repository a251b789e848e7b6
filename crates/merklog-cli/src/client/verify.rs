//! `merklog verify`: check saved documents offline, with a public key and
//! no server.

use std::io::Write;
use std::path::PathBuf;

use merklog_client::json::{ProofJson, TreeHeadJson};
use merklog_client::offline::{parse, verify_saved, Verified};

use super::{print_json, read_public_key, read_text, CommandError, CommandResult, OutputArgs};

/// Arguments of `merklog verify`.
#[derive(clap::Args, Debug, Clone)]
pub struct VerifyArgs {
    /// The log's public key (PEM).
    #[arg(long, short = 'k', env = "MERKLOG_PUBLIC_KEY")]
    pub public_key: PathBuf,
    /// A saved tree head document (repeat for a consistency proof's two
    /// heads). Every head given is checked: two of one size with different
    /// roots are a fork, and with a proof each must be of a size it names.
    #[arg(long = "head", value_name = "FILE", required = true)]
    pub heads: Vec<PathBuf>,
    /// A saved inclusion or consistency proof document. Without it, only
    /// the tree head's signature is checked.
    #[arg(long)]
    pub proof: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Checks the documents the arguments name.
///
/// # Errors
/// [`CommandError::Client`] with the failed check (exit code 1), or a usage
/// error for unreadable files (exit code 2).
pub fn check(args: &VerifyArgs) -> CommandResult<Verified> {
    let key = read_public_key(&args.public_key)?;
    let heads = args
        .heads
        .iter()
        .map(|path| {
            let text = read_text(path, "tree head")?;
            parse::<TreeHeadJson>(&text, &format!("tree head {}", path.display()))
                .map_err(CommandError::from)
        })
        .collect::<CommandResult<Vec<_>>>()?;
    let proof = match &args.proof {
        Some(path) => {
            let text = read_text(path, "proof")?;
            Some(parse::<ProofJson>(
                &text,
                &format!(
                    "proof {} (neither an inclusion nor a consistency proof)",
                    path.display()
                ),
            )?)
        }
        None => None,
    };
    Ok(verify_saved(&key, proof.as_ref(), &heads)?)
}

/// Checks the documents and prints what they prove.
///
/// # Errors
/// As [`check`].
pub fn run(args: VerifyArgs, out: &mut dyn Write) -> CommandResult {
    let verified = check(&args)?;
    let (kind, message) = match &verified {
        Verified::TreeHead { head } => (
            "tree_head",
            format!(
                "OK: the tree head of size {} (root {}) is signed by log {}",
                head.tree_size(),
                head.root_hash(),
                head.log_id()
            ),
        ),
        Verified::Inclusion { head, leaf_index } => (
            "inclusion",
            format!(
                "OK: leaf {leaf_index} is in the tree of size {} (root {}) signed by log {}",
                head.tree_size(),
                head.root_hash(),
                head.log_id()
            ),
        ),
        Verified::Consistency {
            first_head,
            second_head,
        } => (
            "consistency",
            format!(
                "OK: the tree of size {}{} is a prefix of the tree of size {} (root {}) signed by log {}",
                first_head.as_ref().map_or_else(|| "given in the proof".to_owned(), |h| h.tree_size().to_string()),
                if first_head.is_some() { " (its head signed too)" } else { "" },
                second_head.tree_size(),
                second_head.root_hash(),
                second_head.log_id()
            ),
        ),
    };
    if args.out.json {
        print_json(
            out,
            &serde_json::json!({"ok": true, "verified": kind, "message": message}),
        )
    } else {
        writeln!(out, "{message}")?;
        Ok(())
    }
}
