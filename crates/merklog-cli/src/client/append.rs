//! `merklog append`: add entries and check the log's receipt.

use std::io::{Read, Write};
use std::path::PathBuf;

use merklog_client::json::{InclusionProofJson, TreeHeadJson};
use merklog_client::{AppendReceipt, Client};
use serde::Serialize;

use super::{print_head, print_json, CommandError, CommandResult, LogArgs, OutputArgs};

/// Arguments of `merklog append`.
#[derive(clap::Args, Debug, Clone)]
pub struct AppendArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Entries given on the command line, one entry each.
    pub entries: Vec<String>,
    /// Read entries from these files (`-` for stdin): one per line, or the
    /// whole file as one entry with `--whole`. Without entries or files,
    /// stdin is read.
    #[arg(long = "file", short = 'f')]
    pub files: Vec<PathBuf>,
    /// Take each file (or stdin) whole, as one entry, instead of one entry
    /// per line.
    #[arg(long)]
    pub whole: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// The JSON output of `merklog append`.
#[derive(Debug, Serialize)]
pub struct AppendOutput {
    /// In the order given; each inclusion proof is against the head of its
    /// call (its `tree_size` names it), one of `tree_heads`.
    pub entries: Vec<AppendedJson>,
    /// The head of the last call.
    pub tree_head: TreeHeadJson,
    /// The head of each call, in order, each checked consistent with the
    /// one before.
    pub tree_heads: Vec<TreeHeadJson>,
}

/// One appended entry in the JSON output.
#[derive(Debug, Serialize)]
pub struct AppendedJson {
    pub leaf_index: u64,
    #[serde(with = "merklog_client::json::hex_hash")]
    pub leaf_hash: merklog_merkle::Hash,
    pub duplicate: bool,
    pub inclusion_proof: InclusionProofJson,
}

impl AppendOutput {
    /// Returns the output for the receipts of one or more calls.
    ///
    /// # Panics
    /// When `receipts` is empty.
    pub fn new(receipts: &[AppendReceipt]) -> Self {
        let last = receipts.last().expect("at least one call");
        AppendOutput {
            entries: receipts
                .iter()
                .flat_map(|r| &r.entries)
                .map(|e| AppendedJson {
                    leaf_index: e.proof.leaf_index,
                    leaf_hash: e.proof.leaf_hash,
                    duplicate: e.duplicate,
                    inclusion_proof: e.proof.clone(),
                })
                .collect(),
            tree_head: last.head.to_json(),
            tree_heads: receipts.iter().map(|r| r.head.to_json()).collect(),
        }
    }
}

/// Collects the entries the arguments name.
///
/// # Errors
/// [`CommandError::Usage`] when a file cannot be read or no entry is given.
pub fn collect_entries(args: &AppendArgs, stdin: &mut dyn Read) -> CommandResult<Vec<Vec<u8>>> {
    let mut entries: Vec<Vec<u8>> = args
        .entries
        .iter()
        .map(|e| e.clone().into_bytes())
        .collect();
    let mut inputs = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            stdin.read_to_end(&mut buf)?;
            inputs.push(buf);
        } else {
            let buf = std::fs::read(path)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", path.display())))?;
            inputs.push(buf);
        }
    }
    if args.entries.is_empty() && args.files.is_empty() {
        let mut buf = Vec::new();
        stdin.read_to_end(&mut buf)?;
        inputs.push(buf);
    }
    for input in inputs {
        if args.whole {
            entries.push(input);
        } else {
            entries.extend(
                input
                    .split(|b| *b == b'\n')
                    .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                    .filter(|line| !line.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    if entries.is_empty() {
        return Err(CommandError::Usage("no entries to append".into()));
    }
    Ok(entries)
}

/// Appends the entries and prints the verified receipts.
///
/// # Errors
/// When the log refuses the entries or its receipt does not verify.
pub async fn run(args: AppendArgs, out: &mut dyn Write) -> CommandResult {
    let entries = collect_entries(&args, &mut std::io::stdin().lock())?;
    let mut client = args.log.connect().await?;
    let receipts = append_all(&mut client, entries).await?;
    if args.out.json {
        return print_json(out, &AppendOutput::new(&receipts));
    }
    for receipt in &receipts {
        for e in &receipt.entries {
            let note = if e.duplicate {
                "  (already in the log)"
            } else {
                ""
            };
            writeln!(
                out,
                "index {}  leaf hash {}  inclusion proof verified at size {}{note}",
                e.proof.leaf_index, e.proof.leaf_hash, e.proof.tree_size
            )?;
        }
    }
    match receipts.last() {
        Some(last) => print_head(out, &last.head),
        None => Ok(()),
    }
}

/// Appends `entries` in as many calls as the log's
/// `max_entries_per_append` and `max_request_bytes` require; each call's
/// receipt is checked (its proofs against its head, and its head consistent
/// with the one before).
///
/// # Errors
/// As [`Client::append`].
pub async fn append_all(
    client: &mut Client,
    entries: Vec<Vec<u8>>,
) -> CommandResult<Vec<AppendReceipt>> {
    let info = client.log_info().await?;
    let count = (info.max_entries_per_append as usize).max(1);
    let bytes = usize::try_from(info.max_request_bytes).unwrap_or(usize::MAX);
    let mut receipts = Vec::new();
    for part in batches(&entries, count, bytes) {
        receipts.push(client.append(part.to_vec()).await?);
    }
    Ok(receipts)
}

/// The gRPC message prefix, and what one entry costs beyond its bytes in an
/// `AppendRequest` (its field tag and length, rounded up).
const REQUEST_PREFIX: usize = 5;
const ENTRY_FRAMING: usize = 8;

/// Splits `entries` into runs of at most `count` entries whose request fits
/// in `max_bytes` (0: no byte limit). An entry too large for any request
/// goes alone, for the log to refuse with its reason.
fn batches(entries: &[Vec<u8>], count: usize, max_bytes: usize) -> Vec<&[Vec<u8>]> {
    let max_bytes = if max_bytes == 0 {
        usize::MAX
    } else {
        max_bytes
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = REQUEST_PREFIX;
    for (i, e) in entries.iter().enumerate() {
        let cost = e.len() + ENTRY_FRAMING;
        if i > start && (i - start == count || size.saturating_add(cost) > max_bytes) {
            out.push(&entries[start..i]);
            start = i;
            size = REQUEST_PREFIX;
        }
        size = size.saturating_add(cost);
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SafetyArgs;

    #[test]
    fn appends_are_split_by_count_and_by_bytes() {
        let entries: Vec<Vec<u8>> = (0..10).map(|i| vec![i; 100]).collect();
        let sizes = |b: Vec<&[Vec<u8>]>| b.iter().map(|p| p.len()).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&entries, 4, 0)), [4, 4, 2]);
        // 5 + 3 × 108 = 329 bytes fit in 330; a fourth entry does not.
        assert_eq!(sizes(batches(&entries, 100, 330)), [3, 3, 3, 1]);
        assert_eq!(sizes(batches(&entries, 2, 330)), [2, 2, 2, 2, 2]);
        // An entry larger than the limit still goes, alone.
        let big = vec![vec![0; 10], vec![0; 1000], vec![0; 10]];
        assert_eq!(sizes(batches(&big, 10, 100)), [1, 1, 1]);
        assert!(batches(&[], 10, 100).is_empty());
    }

    fn args(entries: &[&str], files: Vec<PathBuf>, whole: bool) -> AppendArgs {
        AppendArgs {
            log: LogArgs {
                server: String::new(),
                public_key: PathBuf::new(),
                state: None,
                token: None,
                tls_ca: None,
                tls_cert: None,
                tls_key: None,
                safety: SafetyArgs::default(),
            },
            entries: entries.iter().map(|e| (*e).to_owned()).collect(),
            files,
            whole,
            out: OutputArgs::default(),
        }
    }

    #[test]
    fn entries_come_from_arguments_files_and_stdin() {
        let dir = std::env::temp_dir().join(format!("merklog-append-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lines.txt");
        std::fs::write(&file, b"one\r\ntwo\n\nthree").unwrap();

        let got = collect_entries(&args(&["a", "b"], vec![], false), &mut &b""[..]).unwrap();
        assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec()]);

        let got = collect_entries(&args(&[], vec![file.clone()], false), &mut &b""[..]).unwrap();
        assert_eq!(
            got,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );

        let got = collect_entries(&args(&[], vec![file.clone()], true), &mut &b""[..]).unwrap();
        assert_eq!(got, vec![b"one\r\ntwo\n\nthree".to_vec()]);

        let got = collect_entries(&args(&[], vec![], false), &mut &b"x\ny\n"[..]).unwrap();
        assert_eq!(got, vec![b"x".to_vec(), b"y".to_vec()]);
        let got = collect_entries(&args(&[], vec!["-".into()], true), &mut &b"x\ny\n"[..]).unwrap();
        assert_eq!(got, vec![b"x\ny\n".to_vec()]);

        assert!(collect_entries(&args(&[], vec![], false), &mut &b"\n\n"[..]).is_err());
        let missing = collect_entries(&args(&[], vec![dir.join("nope")], false), &mut &b""[..]);
        assert!(matches!(missing, Err(CommandError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
