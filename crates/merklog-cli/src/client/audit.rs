//! `merklog audit`: download the whole log and check it against what it
//! signed and what it proves.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;

use merklog_client::json::{hex_hash, TreeHeadJson};
use merklog_client::window::TimeOrder;
use merklog_client::{Client, ClientError, HeadsFrom, ProvenInclusion};
use merklog_merkle::{leaf_hash, merkle_tree_hash, CompactRange, Hash};
use serde::Serialize;

use super::{print_json, CommandError, CommandResult, LogArgs, OutputArgs, Progress};

/// Arguments of `merklog audit`.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    #[command(flatten)]
    pub log: LogArgs,
    /// Skip the inclusion proofs (one for every second entry, asked many per
    /// call): check only the entries, the latest root and the heads at batch
    /// boundaries.
    #[arg(long)]
    pub no_proofs: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// What to check besides the entries and the latest root.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// Fetch the inclusion proof of every even leaf (which between them use
    /// every stored interior node) and compare each hash with the tree the
    /// entries give.
    pub proofs: bool,
}

/// Something the audit found wrong, naming the entry, head or node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditProblem {
    /// The entry's bytes do not hash to the leaf hash served with it.
    BadEntry {
        leaf_index: u64,
        #[serde(with = "hex_hash")]
        served_leaf_hash: Hash,
        #[serde(with = "hex_hash")]
        computed_leaf_hash: Hash,
    },
    /// The log refuses to serve an entry its head covers, saying its store
    /// is damaged there (`DATA_LOSS`: the stored bytes do not match the
    /// leaf hash, or the row is gone). The audit goes on past it, but
    /// cannot rebuild the tree (nor check the root and proofs) beyond it.
    RefusedEntry { leaf_index: u64, error: String },
    /// The log served fewer entries than its latest head covers.
    MissingEntries { tree_size: u64, served: u64 },
    /// The entries give another root than the latest signed head.
    RootMismatch {
        tree_size: u64,
        #[serde(with = "hex_hash")]
        signed: Hash,
        #[serde(with = "hex_hash")]
        computed: Hash,
    },
    /// A signed head at an earlier size does not verify or is not
    /// consistent with the latest.
    BadHead { tree_size: u64, error: String },
    /// A signed head at an earlier size has another root than the entries
    /// give.
    HeadRoot {
        tree_size: u64,
        timestamp: u64,
        #[serde(with = "hex_hash")]
        signed: Hash,
        #[serde(with = "hex_hash")]
        computed: Hash,
    },
    /// The log serves a wrong hash for a subtree in its inclusion proofs.
    BadProofNode {
        /// The subtree's leaves `[first, end)`.
        first: u64,
        end: u64,
        /// `(level, index)` when the subtree is complete (a stored node).
        node: Option<(u8, u64)>,
        #[serde(with = "hex_hash")]
        served: Hash,
        #[serde(with = "hex_hash")]
        computed: Hash,
        /// The first leaf whose proof showed it.
        seen_in_proof_of: u64,
    },
    /// An inclusion proof failed for another reason (its length, its leaf).
    BadProof { leaf_index: u64, error: String },
    /// The log could not answer for data it signed (e.g. `DATA_LOSS`: a
    /// node of a proof is gone from its store).
    LogError { during: String, error: String },
    /// An entry's integrated_ms breaks the time rule against the log's
    /// signed heads (docs/FORMATS.md, "Export bundle").
    IntegratedTime { leaf_index: u64, detail: String },
}

impl fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditProblem::BadEntry {
                leaf_index,
                served_leaf_hash,
                computed_leaf_hash,
            } => write!(
                f,
                "entry {leaf_index}: its bytes hash to {computed_leaf_hash} but the log serves leaf hash {served_leaf_hash} (the entry or its leaf hash was changed)"
            ),
            AuditProblem::RefusedEntry { leaf_index, error } => write!(
                f,
                "entry {leaf_index}: the log refuses to serve it, its store is damaged there: {error}"
            ),
            AuditProblem::MissingEntries { tree_size, served } => write!(
                f,
                "entries {served}..{tree_size} are missing: the signed head covers {tree_size} entries but the log served only {served}"
            ),
            AuditProblem::RootMismatch {
                tree_size,
                signed,
                computed,
            } => write!(
                f,
                "root mismatch at size {tree_size}: the entries give root {computed} but the signed head says {signed}"
            ),
            AuditProblem::BadHead { tree_size, error } => {
                write!(f, "signed head at size {tree_size}: {error}")
            }
            AuditProblem::HeadRoot {
                tree_size,
                timestamp,
                signed,
                computed,
            } => write!(
                f,
                "signed head at size {tree_size} (timestamp {timestamp}) says root {signed} but the entries give {computed}"
            ),
            AuditProblem::BadProofNode {
                first,
                end,
                node,
                served,
                computed,
                seen_in_proof_of,
            } => {
                write!(f, "the log serves hash {served} for leaves [{first}, {end})")?;
                if let Some((level, index)) = node {
                    write!(f, " (stored node level {level}, index {index})")?;
                }
                write!(
                    f,
                    " but the entries give {computed} (seen in the inclusion proof of leaf {seen_in_proof_of})"
                )
            }
            AuditProblem::BadProof { leaf_index, error } => {
                write!(f, "inclusion proof of leaf {leaf_index}: {error}")
            }
            AuditProblem::LogError { during, error } => {
                write!(f, "the log failed to answer for {during}: {error}")
            }
            AuditProblem::IntegratedTime { leaf_index, detail } => {
                write!(f, "entry {leaf_index}: {detail}")
            }
        }
    }
}

/// The audit's findings.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub tree_head: TreeHeadJson,
    pub entries_checked: u64,
    pub heads_checked: u64,
    pub proofs_checked: u64,
    pub problems: Vec<AuditProblem>,
}

impl AuditReport {
    /// Returns true when nothing was found wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Audits the log behind `client`: checks its latest head (signature, and
/// consistency with the client's trusted head), downloads every entry,
/// checks each against its leaf hash, recomputes the root, checks the
/// signed heads at each batch boundary (where the entries' integration time
/// changes) and, with `options.proofs`, every interior node the log serves
/// in inclusion proofs.
///
/// Problems in the log's data are collected in the report, every one of
/// them: past an entry the log refuses to serve (`DATA_LOSS`), the audit
/// narrows the refused range down to single entries, names each and goes
/// on. The error is for a latest head that fails (bad signature, fork,
/// rollback) and for transport failures.
///
/// Memory: 32 bytes per entry (the leaf hashes, kept for naming wrong
/// proof nodes).
///
/// # Errors
/// As [`Client::latest_head`]; transport and status errors.
pub async fn audit(
    client: &mut Client,
    options: AuditOptions,
    progress: &mut Progress,
) -> Result<AuditReport, ClientError> {
    let head = client.latest_head().await?;
    let n = head.tree_size();
    let mut problems = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut range = CompactRange::new();
    let mut boundaries: Vec<(u64, Hash)> = Vec::new();
    let mut last_ms = None;
    // Every signed head, for the time rule; none from a log that cannot
    // list them.
    let heads = match all_heads(client).await {
        Ok(heads) => heads,
        Err(ClientError::Status {
            code: tonic::Code::Unimplemented,
            ..
        }) => Vec::new(),
        Err(e) if is_refusal(&e) || e.is_verification_failure() => {
            problems.push(AuditProblem::LogError {
                during: "its list of signed heads".into(),
                error: e.to_string(),
            });
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let mut times = (!heads.is_empty()).then(|| TimeOrder::new(&heads));
    // The next index to fetch, and how many to ask for: a whole page, or
    // less while narrowing down entries the log refuses to serve.
    let mut next = 0u64;
    let mut span = u64::MAX;
    let mut entries_checked = 0u64;
    // Whether every entry so far was served, so that the tree is known.
    let mut intact = true;
    while next < n {
        let end = next.saturating_add(span).min(n);
        let page = match client.served_entries_page(next, end).await {
            Ok(page) => page,
            // The log found entries of the range damaged: narrow the range
            // down to each entry it refuses, report it, and go on past it.
            Err(ClientError::Status {
                code: tonic::Code::DataLoss,
                message,
            }) => {
                if end - next > 1 {
                    span = (end - next) / 2;
                } else {
                    problems.push(AuditProblem::RefusedEntry {
                        leaf_index: next,
                        error: message,
                    });
                    intact = false;
                    next += 1;
                    span = u64::MAX;
                }
                continue;
            }
            // The log refuses to serve entries for another reason: a
            // finding, and the audit cannot go past it.
            Err(e) if is_refusal(&e) => {
                problems.push(AuditProblem::LogError {
                    during: format!("the entries from index {next}"),
                    error: e.to_string(),
                });
                intact = false;
                break;
            }
            Err(e) => return Err(e),
        };
        if page.is_empty() {
            problems.push(AuditProblem::MissingEntries {
                tree_size: n,
                served: next,
            });
            intact = false;
            break;
        }
        span = u64::MAX;
        for e in page {
            if intact && last_ms.is_some_and(|ms| ms != e.integrated_ms) {
                boundaries.push((e.index, range.root()));
            }
            last_ms = Some(e.integrated_ms);
            if let Some(t) = times.as_mut() {
                t.leaf(e.index, e.integrated_ms);
            }
            let computed = leaf_hash(&e.data);
            if computed != e.claimed_leaf_hash {
                problems.push(AuditProblem::BadEntry {
                    leaf_index: e.index,
                    served_leaf_hash: e.claimed_leaf_hash,
                    computed_leaf_hash: computed,
                });
            }
            if intact {
                range.append(computed, |_, _| {});
                leaves.push(computed);
            }
            entries_checked += 1;
            next = e.index + 1;
        }
        progress.update(next, n, "entries");
    }
    if let Some(t) = times {
        problems.extend(
            t.finish()
                .into_iter()
                .map(|v| AuditProblem::IntegratedTime {
                    leaf_index: v.index(),
                    detail: v.to_string(),
                }),
        );
    }
    let complete = intact && range.size() == n;
    if complete && range.root() != head.root_hash() {
        problems.push(AuditProblem::RootMismatch {
            tree_size: n,
            signed: head.root_hash(),
            computed: range.root(),
        });
    }

    let mut heads_checked = 1;
    for (size, computed) in boundaries {
        match client.head_at(size).await {
            Ok(h) => {
                heads_checked += 1;
                if h.root_hash() != computed {
                    problems.push(AuditProblem::HeadRoot {
                        tree_size: size,
                        timestamp: h.timestamp_ms(),
                        signed: h.root_hash(),
                        computed,
                    });
                }
            }
            Err(ClientError::NoSignedHead { .. }) => {}
            Err(e) if e.is_verification_failure() => {
                heads_checked += 1;
                problems.push(AuditProblem::BadHead {
                    tree_size: size,
                    error: e.to_string(),
                });
            }
            Err(e) if is_refusal(&e) => problems.push(AuditProblem::LogError {
                during: format!("its signed head at size {size}"),
                error: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }

    let mut proofs_checked = 0;
    if options.proofs && complete {
        let mut findings = ProofFindings {
            subtrees: SubtreeCache::new(&leaves),
            reported: HashSet::new(),
            problems: &mut problems,
        };
        let mut next = 0;
        while next < n {
            let chunk: Vec<u64> = (next..n).step_by(2).take(PROOFS_PER_ROUND).collect();
            next = chunk.last().map_or(n, |last| last + 2);
            let results = match client.inclusions_by_index(&chunk, Some(n)).await {
                Ok(results) => results,
                // A refused or unverifiable call, or a log without batch
                // proofs: ask leaf by leaf, so that each finding names its
                // leaf.
                Err(e) if is_refusal(&e) || e.is_verification_failure() => {
                    let mut results = Vec::with_capacity(chunk.len());
                    for &m in &chunk {
                        results.push(client.inclusion_by_index(m, Some(n)).await);
                    }
                    results
                }
                Err(e) => return Err(e),
            };
            for (&m, result) in chunk.iter().zip(results) {
                findings.record(m, n, result)?;
                proofs_checked += 1;
            }
            progress.update(proofs_checked, n.div_ceil(2), "inclusion proofs");
        }
    }
    Ok(AuditReport {
        tree_head: head.to_json(),
        entries_checked,
        heads_checked,
        proofs_checked,
        problems,
    })
}

/// Even leaves proved per round of `GetInclusionProofs` calls (the client
/// splits a round into calls of the log's page size).
const PROOFS_PER_ROUND: usize = 4096;

/// Turns failed inclusion proofs into findings, naming each wrong subtree
/// hash once.
struct ProofFindings<'a> {
    subtrees: SubtreeCache<'a>,
    reported: HashSet<(u64, u64)>,
    problems: &'a mut Vec<AuditProblem>,
}

impl ProofFindings<'_> {
    /// Records what the proof of leaf `m` in the tree of size `n` showed.
    ///
    /// # Errors
    /// A transport or transient error: the audit could not be made.
    fn record(
        &mut self,
        m: u64,
        n: u64,
        result: Result<ProvenInclusion, ClientError>,
    ) -> Result<(), ClientError> {
        match result {
            Ok(_) => {}
            Err(ClientError::InclusionProof { proof, reason, .. }) => {
                let ranges = path_ranges(m, n);
                let mut named = false;
                if ranges.len() == proof.len() {
                    for (&(first, end), served) in ranges.iter().zip(&proof) {
                        let computed = self.subtrees.hash(first, end);
                        if computed != *served {
                            named = true;
                            if self.reported.insert((first, end)) {
                                self.problems.push(AuditProblem::BadProofNode {
                                    first,
                                    end,
                                    node: complete_node(first, end),
                                    served: *served,
                                    computed,
                                    seen_in_proof_of: m,
                                });
                            }
                        }
                    }
                }
                if !named {
                    self.problems.push(AuditProblem::BadProof {
                        leaf_index: m,
                        error: reason.to_string(),
                    });
                }
            }
            Err(e) if e.is_verification_failure() => self.problems.push(AuditProblem::BadProof {
                leaf_index: m,
                error: e.to_string(),
            }),
            Err(e) if is_refusal(&e) => self.problems.push(AuditProblem::LogError {
                during: format!("the inclusion proof of leaf {m}"),
                error: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Returns true for an error status that is not transient: the log will
/// not answer for data it signed. Overload and outages stay errors (the
/// audit could not be made), not findings.
/// Fetches every signed head the log lists, in (size, timestamp) order,
/// each signature checked.
async fn all_heads(client: &mut Client) -> Result<Vec<merklog_sth::TreeHead>, ClientError> {
    let page = u32::try_from(client.page_size().await?).unwrap_or(u32::MAX);
    let mut heads: Vec<merklog_sth::TreeHead> = Vec::new();
    loop {
        let from = match heads.last() {
            None => HeadsFrom::First,
            Some(h) => HeadsFrom::After {
                tree_size: h.tree_size,
                timestamp_ms: h.timestamp_ms,
            },
        };
        let more = client.tree_heads_page(from, page).await?;
        if more.is_empty() {
            return Ok(heads);
        }
        heads.extend(more.iter().map(|h| h.sth().head));
    }
}

pub(super) fn is_refusal(e: &ClientError) -> bool {
    use tonic::Code;
    matches!(e, ClientError::Status { code, .. } if !matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Cancelled | Code::Unauthenticated | Code::PermissionDenied
    ))
}

/// Returns the leaf ranges `[first, end)` whose hashes make up
/// `PATH(m, D[n])`, in proof order (RFC 9162 §2.1.3.1): at each level the
/// sibling of the node holding `m`, cut at `n`; a sibling past the end does
/// not exist.
fn path_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let last = n - 1;
    let mut level = 0u32;
    while level < 64 && (last >> level) > 0 {
        let begin = ((m >> level) ^ 1) << level;
        if begin < n {
            out.push((begin, begin.saturating_add(1u64 << level).min(n)));
        }
        level += 1;
    }
    out
}

/// Returns `(level, index)` when `[first, end)` is a complete subtree.
fn complete_node(first: u64, end: u64) -> Option<(u8, u64)> {
    let len = end - first;
    (len.is_power_of_two() && first.is_multiple_of(len))
        .then(|| (len.trailing_zeros() as u8, first >> len.trailing_zeros()))
}

/// `MTH(D[first:end])` from the leaf hashes, each range computed once.
struct SubtreeCache<'a> {
    leaves: &'a [Hash],
    cache: HashMap<(u64, u64), Hash>,
}

impl<'a> SubtreeCache<'a> {
    fn new(leaves: &'a [Hash]) -> Self {
        SubtreeCache {
            leaves,
            cache: HashMap::new(),
        }
    }

    fn hash(&mut self, first: u64, end: u64) -> Hash {
        *self
            .cache
            .entry((first, end))
            .or_insert_with(|| merkle_tree_hash(&self.leaves[first as usize..end as usize]))
    }
}

/// Audits the log and prints the report; exit code 1 when it found
/// problems.
///
/// # Errors
/// [`CommandError::Problems`] listing how many were found; as [`audit`].
pub async fn run(args: AuditArgs, out: &mut dyn Write) -> CommandResult {
    let mut client = args.log.connect().await?;
    let mut progress = Progress::new("audit", true);
    let report = audit(
        &mut client,
        AuditOptions {
            proofs: !args.no_proofs,
        },
        &mut progress,
    )
    .await?;
    if args.out.json {
        print_json(out, &report)?;
    } else {
        for p in &report.problems {
            writeln!(out, "PROBLEM: {p}")?;
        }
        writeln!(
            out,
            "{}: {} entries, {} signed heads and {} inclusion proofs checked against the head of size {} (root {})",
            if report.ok() { "OK" } else { "FAILED" },
            report.entries_checked,
            report.heads_checked,
            report.proofs_checked,
            report.tree_head.tree_size,
            report.tree_head.root_hash
        )?;
    }
    if report.ok() {
        Ok(())
    } else {
        Err(CommandError::Problems {
            summary: format!("audit found {} problem(s)", report.problems.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ranges_follow_the_rfc() {
        // PATH(1, D[7]) = [leaf 0, MTH(D[2:4]), MTH(D[4:7])].
        assert_eq!(path_ranges(1, 7), vec![(0, 1), (2, 4), (4, 7)]);
        assert_eq!(path_ranges(6, 7), vec![(4, 6), (0, 4)]);
        assert_eq!(path_ranges(0, 1), vec![]);
        for n in 1..40u64 {
            for m in 0..n {
                let expected = merklog_merkle::inclusion_proof_nodes(m, n)
                    .unwrap()
                    .proof_len();
                assert_eq!(path_ranges(m, n).len(), expected, "m={m} n={n}");
            }
        }
        assert_eq!(complete_node(4, 8), Some((2, 1)));
        assert_eq!(complete_node(4, 7), None);
    }
}
