//! `merklog prove inclusion|consistency`: fetch a proof and check it before
//! printing it.

use std::io::{Read, Write};
use std::path::PathBuf;

use merklog_client::json::{ConsistencyProofJson, InclusionProofJson, TreeHeadJson};
use merklog_merkle::Hash;
use serde::Serialize;

use super::{format_ms, print_json, save_json, CommandError, CommandResult, LogArgs, OutputArgs};

/// `merklog prove …`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ProveCommand {
    /// Prove that an entry is in the log: by index, leaf hash or the
    /// entry's bytes.
    Inclusion(InclusionArgs),
    /// Prove that an older tree is a prefix of a newer one.
    Consistency(ConsistencyArgs),
}

impl ProveCommand {
    pub(crate) fn json(&self) -> bool {
        match self {
            ProveCommand::Inclusion(a) => a.out.json,
            ProveCommand::Consistency(a) => a.out.json,
        }
    }
}

/// Arguments of `merklog prove inclusion`.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("leaf").required(true).args(["index", "leaf_hash", "entry", "entry_file"])))]
pub struct InclusionArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The leaf's index.
    #[arg(long)]
    pub index: Option<u64>,
    /// The leaf hash, SHA-256(0x00 || entry), in hex.
    #[arg(long)]
    pub leaf_hash: Option<Hash>,
    /// The entry itself, as text.
    #[arg(long)]
    pub entry: Option<String>,
    /// The entry itself: the whole file's bytes (`-` for stdin).
    #[arg(long)]
    pub entry_file: Option<PathBuf>,
    /// Prove against the signed head of this size instead of the latest.
    #[arg(long)]
    pub tree_size: Option<u64>,
    /// Also write the proof document here, for `merklog verify`.
    #[arg(long)]
    pub proof_out: Option<PathBuf>,
    /// Also write the tree head document here, for `merklog verify`.
    #[arg(long)]
    pub head_out: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Arguments of `merklog prove consistency`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConsistencyArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// The older tree's size (the log must have signed a head at it, unless 0).
    #[arg(long)]
    pub first: u64,
    /// The newer tree's size (default: the latest).
    #[arg(long)]
    pub second: Option<u64>,
    /// Also write the proof document here, for `merklog verify`.
    #[arg(long)]
    pub proof_out: Option<PathBuf>,
    /// Also write the newer tree head document here.
    #[arg(long)]
    pub head_out: Option<PathBuf>,
    /// Also write the older tree head document here.
    #[arg(long)]
    pub first_head_out: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The JSON output of `merklog prove inclusion`.
#[derive(Debug, Serialize)]
pub struct InclusionOutput {
    pub inclusion_proof: InclusionProofJson,
    pub tree_head: TreeHeadJson,
}

/// The JSON output of `merklog prove consistency`.
#[derive(Debug, Serialize)]
pub struct ConsistencyOutput {
    pub consistency_proof: ConsistencyProofJson,
    pub first_tree_head: Option<TreeHeadJson>,
    pub second_tree_head: TreeHeadJson,
}

/// Fetches, verifies and prints the proof.
///
/// # Errors
/// When the proof or a head does not verify.
pub async fn run(cmd: ProveCommand, out: &mut dyn Write) -> CommandResult {
    match cmd {
        ProveCommand::Inclusion(args) => inclusion(args, out).await,
        ProveCommand::Consistency(args) => consistency(args, out).await,
    }
}

async fn inclusion(args: InclusionArgs, out: &mut dyn Write) -> CommandResult {
    let mut client = args.log.connect().await?;
    let size = args.tree_size;
    let proven = if let Some(index) = args.index {
        client.inclusion_by_index(index, size).await?
    } else if let Some(hash) = args.leaf_hash {
        client.inclusion_by_leaf_hash(hash, size).await?
    } else if let Some(entry) = &args.entry {
        client.inclusion_by_entry(entry.as_bytes(), size).await?
    } else if let Some(path) = &args.entry_file {
        let data = if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf)?;
            buf
        } else {
            std::fs::read(path)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", path.display())))?
        };
        client.inclusion_by_entry(&data, size).await?
    } else {
        return Err(CommandError::Usage(
            "give --index, --leaf-hash, --entry or --entry-file".into(),
        ));
    };
    if let Some(path) = &args.proof_out {
        save_json(path, &proven.proof)?;
    }
    if let Some(path) = &args.head_out {
        save_json(path, &proven.head.to_json())?;
    }
    if args.out.json {
        return print_json(
            out,
            &InclusionOutput {
                inclusion_proof: proven.proof,
                tree_head: proven.head.to_json(),
            },
        );
    }
    let p = &proven.proof;
    writeln!(
        out,
        "leaf {} (hash {}) is in the tree of size {} (root {}), signed {} ({} ms since the epoch)",
        p.leaf_index,
        p.leaf_hash,
        p.tree_size,
        p.root_hash,
        format_ms(proven.head.timestamp_ms()),
        proven.head.timestamp_ms()
    )?;
    writeln!(out, "inclusion proof ({} hashes, verified):", p.proof.len())?;
    for h in &p.proof {
        writeln!(out, "  {h}")?;
    }
    Ok(())
}

async fn consistency(args: ConsistencyArgs, out: &mut dyn Write) -> CommandResult {
    let mut client = args.log.connect().await?;
    let proven = client.consistency(args.first, args.second).await?;
    if let Some(path) = &args.proof_out {
        save_json(path, &proven.proof)?;
    }
    if let Some(path) = &args.head_out {
        save_json(path, &proven.second_head.to_json())?;
    }
    if let (Some(path), Some(head)) = (&args.first_head_out, &proven.first_head) {
        save_json(path, &head.to_json())?;
    }
    if args.out.json {
        return print_json(
            out,
            &ConsistencyOutput {
                consistency_proof: proven.proof,
                first_tree_head: proven.first_head.map(|h| h.to_json()),
                second_tree_head: proven.second_head.to_json(),
            },
        );
    }
    let p = &proven.proof;
    writeln!(
        out,
        "the tree of size {} (root {}) is a prefix of the tree of size {} (root {})",
        p.first_size, p.first_root, p.second_size, p.second_root
    )?;
    writeln!(
        out,
        "consistency proof ({} hashes, verified):",
        p.proof.len()
    )?;
    for h in &p.proof {
        writeln!(out, "  {h}")?;
    }
    Ok(())
}
