//! `merklog append`: add entries and check the log's receipt.

use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;

use merklog_client::json::{InclusionProofJson, TreeHeadJson};
use merklog_client::AppendReceipt;
use serde::Serialize;

use super::{print_head, print_json, progress, CommandError, CommandResult, LogArgs, OutputArgs};

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

/// Where an entry came from, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The n-th entry given on the command line, from 1.
    Argument(usize),
    /// Line `line` (from 1) of `source`: a file's path, or `stdin`.
    Line { source: String, line: usize },
    /// The whole of `source`, with `--whole`.
    Whole(String),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Argument(n) => write!(f, "argument {n}"),
            Origin::Line { source, line } => write!(f, "line {line} of {source}"),
            Origin::Whole(source) => write!(f, "{source} (whole)"),
        }
    }
}

/// One entry to append and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub data: Vec<u8>,
    pub origin: Origin,
}

/// Collects the entries the arguments name, in order: the arguments, then
/// each file (`-` for `stdin`), or `stdin` when neither is given.
///
/// # Errors
/// [`CommandError::Usage`] when a file cannot be read or no entry is given.
pub fn collect_entries(args: &AppendArgs, stdin: &mut dyn Read) -> CommandResult<Vec<Input>> {
    let mut entries: Vec<Input> = args
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| Input {
            data: e.clone().into_bytes(),
            origin: Origin::Argument(i + 1),
        })
        .collect();
    let mut inputs = Vec::new();
    for path in &args.files {
        if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            stdin.read_to_end(&mut buf)?;
            inputs.push(("stdin".to_owned(), buf));
        } else {
            let buf = std::fs::read(path)
                .map_err(|e| CommandError::Usage(format!("cannot read {}: {e}", path.display())))?;
            inputs.push((path.display().to_string(), buf));
        }
    }
    if args.entries.is_empty() && args.files.is_empty() {
        let mut buf = Vec::new();
        stdin.read_to_end(&mut buf)?;
        inputs.push(("stdin".to_owned(), buf));
    }
    for (source, input) in inputs {
        if args.whole {
            entries.push(Input {
                data: input,
                origin: Origin::Whole(source),
            });
        } else {
            entries.extend(
                input
                    .split(|b| *b == b'\n')
                    .enumerate()
                    .map(|(i, line)| (i, line.strip_suffix(b"\r").unwrap_or(line)))
                    .filter(|(_, line)| !line.is_empty())
                    .map(|(i, line)| Input {
                        data: line.to_vec(),
                        origin: Origin::Line {
                            source: source.clone(),
                            line: i + 1,
                        },
                    }),
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
    run_with_stdin(args, &mut std::io::stdin().lock(), out).await
}

/// Runs `merklog append` reading `stdin` where the arguments say so.
///
/// Every entry is checked against the log's limits (`GetLogInfo`) before
/// anything is sent. When a call fails after earlier calls were stored, the
/// entries of those calls are printed (with `--json`, one JSON document per
/// line) and the error names the first entry not stored by its input line.
///
/// # Errors
/// [`CommandError::Usage`] naming the entry and the bound for an entry the
/// log would refuse; [`CommandError::Partly`] around the error of a call
/// that failed, saying what was stored before it.
pub async fn run_with_stdin(
    args: AppendArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> CommandResult {
    let inputs = collect_entries(&args, stdin)?;
    let mut client = args.log.connect().await?;
    let limits = AppendLimits::from(&client.log_info().await?);
    limits.check(&inputs)?;
    let bar = progress::bar(args.out.json, "append", inputs.len() as u64, "entries");
    let mut receipts = Vec::new();
    for part in limits.calls(&inputs) {
        let entries = inputs[part.clone()]
            .iter()
            .map(|i| i.data.clone())
            .collect();
        match client.append(entries).await {
            Ok(receipt) => {
                bar.inc(part.len() as u64);
                receipts.push(receipt);
            }
            Err(e) => {
                bar.abandon();
                print_stored(out, &receipts, &inputs, args.out.json)?;
                return Err(stopped_at(e.into(), &inputs, part, &receipts));
            }
        }
    }
    bar.finish_and_clear();
    if args.out.json {
        return print_json(out, &AppendOutput::new(&receipts));
    }
    print_entries(out, &receipts)?;
    match receipts.last() {
        Some(last) => print_head(out, &last.head),
        None => Ok(()),
    }
}

/// Prints each appended entry in text, one a line.
fn print_entries(out: &mut dyn Write, receipts: &[AppendReceipt]) -> CommandResult {
    for receipt in receipts {
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
    Ok(())
}

/// One stored entry of an `append` that failed part-way, as a JSON line.
#[derive(Debug, Serialize)]
struct StoredJson<'a> {
    #[serde(flatten)]
    entry: AppendedJson,
    /// Where the entry came from: `line 3 of stdin`, `argument 2`.
    input: String,
    /// The head its inclusion proof was checked against.
    tree_head: &'a TreeHeadJson,
}

/// Prints what the calls before a failure stored: in text as a successful
/// append does, or with `json` as JSON Lines, one entry a line.
fn print_stored(
    out: &mut dyn Write,
    receipts: &[AppendReceipt],
    inputs: &[Input],
    json: bool,
) -> CommandResult {
    if !json {
        print_entries(out, receipts)?;
        return match receipts.last() {
            Some(last) => print_head(out, &last.head),
            None => Ok(()),
        };
    }
    let mut origins = inputs.iter().map(|i| &i.origin);
    for receipt in receipts {
        let head = receipt.head.to_json();
        for e in &receipt.entries {
            let line = StoredJson {
                entry: AppendedJson {
                    leaf_index: e.proof.leaf_index,
                    leaf_hash: e.proof.leaf_hash,
                    duplicate: e.duplicate,
                    inclusion_proof: e.proof.clone(),
                },
                input: origins.next().map(ToString::to_string).unwrap_or_default(),
                tree_head: &head,
            };
            let text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")?;
        }
    }
    Ok(())
}

/// Wraps the error of the call that sent `inputs[failed]` with what the
/// calls before it stored and which input was not stored first.
fn stopped_at(
    error: CommandError,
    inputs: &[Input],
    failed: Range<usize>,
    receipts: &[AppendReceipt],
) -> CommandError {
    let stored: usize = receipts.iter().map(|r| r.entries.len()).sum();
    let first = &inputs[failed.start].origin;
    let mut done = if stored == 0 {
        format!("nothing was stored: not stored from {first} on")
    } else {
        format!(
            "{stored} of {} entries were stored, through {} (printed above); not stored from \
             {first} on",
            inputs.len(),
            inputs[stored - 1].origin
        )
    };
    // The log names a refused entry by its place in the call.
    if let Some(i) = refused_entry(&error).filter(|i| *i < failed.len()) {
        done = format!(
            "{done}; the log refused {}",
            inputs[failed.start + i].origin
        );
    }
    done.push_str(
        " (append those entries again: an entry the log holds already is answered with its index)",
    );
    CommandError::Partly {
        source: Box::new(error),
        done,
    }
}

/// The position in its call of the entry a log's refusal names
/// (`entries[3]: entry is empty`), if it names one.
fn refused_entry(error: &CommandError) -> Option<usize> {
    let CommandError::Client(merklog_client::ClientError::Status { message, .. }) = error else {
        return None;
    };
    let rest = message.strip_prefix("entries[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// What the log takes in one `Append` call, from its `GetLogInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendLimits {
    /// The largest entry, in bytes (`max_entry_bytes`; 0: no bound).
    pub max_entry_bytes: u64,
    /// The most entries in one call (`max_entries_per_append`).
    pub max_entries_per_append: u32,
    /// The largest request, in bytes (`max_request_bytes`; 0: no bound).
    pub max_request_bytes: u64,
}

impl From<&merklog_client::LogInfo> for AppendLimits {
    fn from(info: &merklog_client::LogInfo) -> Self {
        AppendLimits {
            max_entry_bytes: info.max_entry_bytes,
            max_entries_per_append: info.max_entries_per_append,
            max_request_bytes: info.max_request_bytes,
        }
    }
}

impl AppendLimits {
    /// Checks every entry against what the log takes, before anything is
    /// sent.
    ///
    /// # Errors
    /// [`CommandError::Usage`] naming the first entry the log would refuse,
    /// where it came from, and the bound.
    pub fn check(&self, inputs: &[Input]) -> CommandResult {
        // What one request can carry besides its only entry.
        let fits = self
            .max_request_bytes
            .saturating_sub((REQUEST_PREFIX + ENTRY_FRAMING) as u64);
        for Input { data, origin } in inputs {
            let len = data.len() as u64;
            let refusal = if data.is_empty() {
                Some("is empty; the log takes no empty entries".to_owned())
            } else if self.max_entry_bytes > 0 && len > self.max_entry_bytes {
                Some(format!(
                    "is {len} bytes; the log takes at most {} bytes per entry (max_entry_bytes)",
                    self.max_entry_bytes
                ))
            } else if self.max_request_bytes > 0 && len > fits {
                Some(format!(
                    "is {len} bytes; at most {fits} bytes fit in one request of the log's \
                     max_request_bytes {}",
                    self.max_request_bytes
                ))
            } else if merklog_event::is_event_entry(data) {
                Some(format!(
                    "starts with {:?}, the prefix reserved for event leaves; append events with \
                     `merklog emit`",
                    String::from_utf8_lossy(merklog_event::ENTRY_PREFIX)
                ))
            } else {
                None
            };
            if let Some(refusal) = refusal {
                return Err(CommandError::Usage(format!(
                    "{origin} {refusal}; nothing was sent"
                )));
            }
        }
        Ok(())
    }

    /// Splits `inputs` into the calls the log takes: at most
    /// `max_entries_per_append` entries each, in requests that fit in
    /// `max_request_bytes`.
    pub fn calls(&self, inputs: &[Input]) -> Vec<Range<usize>> {
        let sizes: Vec<usize> = inputs.iter().map(|i| i.data.len()).collect();
        batches(
            &sizes,
            (self.max_entries_per_append as usize).max(1),
            usize::try_from(self.max_request_bytes).unwrap_or(usize::MAX),
        )
    }
}

/// The gRPC message prefix, and what one entry costs beyond its bytes in an
/// `AppendRequest` (its field tag and length, rounded up).
const REQUEST_PREFIX: usize = 5;
const ENTRY_FRAMING: usize = 8;

/// Splits entries of `sizes` bytes into runs of at most `count` entries
/// whose request fits in `max_bytes` (0: no byte limit). An entry too large
/// for any request goes alone.
fn batches(sizes: &[usize], count: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let max_bytes = if max_bytes == 0 {
        usize::MAX
    } else {
        max_bytes
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = REQUEST_PREFIX;
    for (i, len) in sizes.iter().enumerate() {
        let cost = len + ENTRY_FRAMING;
        if i > start && (i - start == count || size.saturating_add(cost) > max_bytes) {
            out.push(start..i);
            start = i;
            size = REQUEST_PREFIX;
        }
        size = size.saturating_add(cost);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::SafetyArgs;

    #[test]
    fn appends_are_split_by_count_and_by_bytes() {
        let entries = [100; 10];
        let sizes = |b: Vec<Range<usize>>| b.iter().map(ExactSizeIterator::len).collect::<Vec<_>>();
        assert_eq!(sizes(batches(&entries, 4, 0)), [4, 4, 2]);
        // 5 + 3 × 108 = 329 bytes fit in 330; a fourth entry does not.
        assert_eq!(sizes(batches(&entries, 100, 330)), [3, 3, 3, 1]);
        assert_eq!(batches(&entries, 2, 330)[1], 2..4);
        assert_eq!(sizes(batches(&entries, 2, 330)), [2, 2, 2, 2, 2]);
        // An entry larger than the limit still goes, alone.
        assert_eq!(sizes(batches(&[10, 1000, 10], 10, 100)), [1, 1, 1]);
        assert!(batches(&[], 10, 100).is_empty());
    }

    fn line(data: &[u8], line: usize) -> Input {
        Input {
            data: data.to_vec(),
            origin: Origin::Line {
                source: "stdin".into(),
                line,
            },
        }
    }

    #[test]
    fn entries_the_log_would_refuse_are_named_before_anything_is_sent() {
        let limits = AppendLimits {
            max_entry_bytes: 10,
            max_entries_per_append: 100,
            max_request_bytes: 0,
        };
        assert!(limits.check(&[line(b"0123456789", 1)]).is_ok());
        let err = limits
            .check(&[line(b"ok", 1), line(b"0123456789a", 3)])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3 of stdin is 11 bytes; the log takes at most 10 bytes per entry \
             (max_entry_bytes); nothing was sent"
        );
        assert_eq!(err.exit_code(), 2);
        let err = limits.check(&[line(b"", 4)]).unwrap_err();
        assert!(
            err.to_string().starts_with("line 4 of stdin is empty"),
            "{err}"
        );
        let event = [merklog_event::ENTRY_PREFIX, b"x"].concat();
        let err = AppendLimits {
            max_entry_bytes: 0,
            ..limits
        }
        .check(&[line(&event, 2)])
        .unwrap_err();
        assert!(
            err.to_string().contains("line 2 of stdin starts with"),
            "{err}"
        );
        let by_request = AppendLimits {
            max_entry_bytes: 100,
            max_entries_per_append: 100,
            max_request_bytes: 30,
        };
        let err = by_request.check(&[line(&[b'x'; 18], 7)]).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 7 of stdin is 18 bytes; at most 17 bytes fit in one request"),
            "{err}"
        );
    }

    #[test]
    fn a_refusal_names_the_entry_of_its_call() {
        let refusal = |message: &str| {
            CommandError::Client(merklog_client::ClientError::Status {
                code: tonic::Code::InvalidArgument,
                message: message.into(),
            })
        };
        assert_eq!(
            refused_entry(&refusal("entries[3]: entry is empty")),
            Some(3)
        );
        assert_eq!(refused_entry(&refusal("entries: too many")), None);
        assert_eq!(
            refused_entry(&CommandError::Usage("entries[1]".into())),
            None
        );
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

        let data = |got: Vec<Input>| got.into_iter().map(|i| i.data).collect::<Vec<_>>();
        let got = collect_entries(&args(&["a", "b"], vec![], false), &mut &b""[..]).unwrap();
        assert_eq!(got[1].origin.to_string(), "argument 2");
        assert_eq!(data(got), vec![b"a".to_vec(), b"b".to_vec()]);

        let got = collect_entries(&args(&[], vec![file.clone()], false), &mut &b""[..]).unwrap();
        // Lines keep their numbers in the file, blank lines counted.
        let name = file.display();
        assert_eq!(got[2].origin.to_string(), format!("line 4 of {name}"));
        assert_eq!(
            data(got),
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );

        let got = collect_entries(&args(&[], vec![file.clone()], true), &mut &b""[..]).unwrap();
        assert_eq!(got[0].origin.to_string(), format!("{name} (whole)"));
        assert_eq!(data(got), vec![b"one\r\ntwo\n\nthree".to_vec()]);

        let got = collect_entries(&args(&[], vec![], false), &mut &b"x\ny\n"[..]).unwrap();
        assert_eq!(got[1].origin.to_string(), "line 2 of stdin");
        assert_eq!(data(got), vec![b"x".to_vec(), b"y".to_vec()]);
        let got = collect_entries(&args(&[], vec!["-".into()], true), &mut &b"x\ny\n"[..]).unwrap();
        assert_eq!(data(got), vec![b"x\ny\n".to_vec()]);

        assert!(collect_entries(&args(&[], vec![], false), &mut &b"\n\n"[..]).is_err());
        let missing = collect_entries(&args(&[], vec![dir.join("nope")], false), &mut &b""[..]);
        assert!(matches!(missing, Err(CommandError::Usage(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
