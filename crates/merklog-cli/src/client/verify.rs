//! `merklog verify`: check saved documents offline, with a public key and
//! no server.

use std::io::{Read, Write};
use std::path::PathBuf;

use merklog_client::json::{InclusionProofJson, ProofJson, TreeHeadJson};
use merklog_client::offline::{parse, verify_saved, Verified};
use merklog_merkle::leaf_hash;

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
    /// The record itself (as text): its RFC 6962 leaf hash, SHA-256(0x00 ||
    /// bytes), must be the leaf hash the inclusion proof proves. Needs an
    /// inclusion --proof.
    #[arg(long, conflicts_with = "entry_file", requires = "proof")]
    pub entry: Option<String>,
    /// The record itself, read from a file (`-` for stdin) byte for byte,
    /// checked as --entry is. An audit event is checked by its leaf bytes
    /// (the merklog.event.v1 line and canonical JSON the log stores, which
    /// merklog entries prints).
    #[arg(long, value_name = "FILE", requires = "proof")]
    pub entry_file: Option<PathBuf>,
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
    let record = read_record(args)?;
    let verified = verify_saved(&key, proof.as_ref(), &heads)?;
    if let Some(bytes) = record {
        match &proof {
            Some(ProofJson::Inclusion(p)) => check_record(p, &bytes)?,
            _ => {
                return Err(CommandError::Usage(
                    "--entry and --entry-file need an inclusion proof (--proof): a consistency \
                     proof proves no record"
                        .into(),
                ))
            }
        }
    }
    Ok(verified)
}

/// Reads `--entry` or `--entry-file`, if given.
fn read_record(args: &VerifyArgs) -> CommandResult<Option<Vec<u8>>> {
    if let Some(text) = &args.entry {
        return Ok(Some(text.clone().into_bytes()));
    }
    let Some(path) = &args.entry_file else {
        return Ok(None);
    };
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes)?;
        return Ok(Some(bytes));
    }
    std::fs::read(path).map(Some).map_err(|e| {
        CommandError::Usage(format!(
            "cannot read the --entry-file {}: {e}",
            path.display()
        ))
    })
}

/// Checks that `bytes` are the record `proof` proves: their leaf hash is
/// the proof's.
///
/// # Errors
/// [`CommandError::Problems`] (exit code 1) naming both hashes.
pub fn check_record(proof: &InclusionProofJson, bytes: &[u8]) -> CommandResult {
    let computed = leaf_hash(bytes);
    if computed == proof.leaf_hash {
        return Ok(());
    }
    let mut summary = format!(
        "the record is not leaf {}: its {} bytes have leaf hash {computed} (SHA-256(0x00 || \
         bytes), RFC 6962), but the proof is for leaf hash {}; the record was changed, or it \
         is another one",
        proof.leaf_index,
        bytes.len(),
        proof.leaf_hash
    );
    if bytes.starts_with(merklog_event::ENTRY_PREFIX) {
        if let Err(e) = merklog_event::SealedEvent::parse(bytes) {
            summary.push_str(&format!(
                " (the bytes start as an event leaf but are not one: {e})"
            ));
        }
    } else if bytes.ends_with(b"\n") && leaf_hash(&bytes[..bytes.len() - 1]) == proof.leaf_hash {
        summary.push_str(
            "; without its final newline the record matches: the file has a newline the \
             record does not (printf '%s' rather than echo)",
        );
    }
    Err(CommandError::Problems { summary })
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
                "OK: {} {leaf_index} is in the tree of size {} (root {}) signed by log {}",
                if args.entry.is_some() || args.entry_file.is_some() {
                    "the record, leaf"
                } else {
                    "leaf"
                },
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
