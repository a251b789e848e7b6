//! Time windows proved complete: the export bundle of `docs/FORMATS.md`
//! ("Export bundle"), its offline verification, and the time rule that makes
//! each entry's integration time checkable against signed heads.
//!
//! # The time rule
//!
//! For leaf `i` let `P` be the latest signed head with `tree_size <= i` (the
//! head before its batch) and `C` the earliest head with `tree_size > i`
//! (the first that covers it). The log promises, and its store enforces
//! (`migrations/*/20261203000010_time_order.sql`):
//!
//! - `P.timestamp <= integrated_ms(i) <= C.timestamp`;
//! - heads' timestamps do not decrease in (size, timestamp) order, and
//!   integration times do not decrease with the index;
//! - the leaves one head adds (between two consecutive sizes) share one
//!   integration time: they are one batch.
//!
//! [`TimeOrder`] checks it over a stream of leaves; `verify-store`, `audit`
//! and [`verify_bundle`] all use it.
//!
//! # Why a window is complete
//!
//! A window `[T1, T2)` is proved by a start head `S` dated before `T1` (or of
//! size 0), an end head `E` dated at or after `T2`, every signed head
//! between them, the left border of the tree of `S.tree_size` leaves and
//! every leaf in `[S.tree_size, E.tree_size)`. By the rule, a leaf below
//! `S.tree_size` was integrated at or before its first covering head, which
//! is dated at or before `S`, so before `T1`; a leaf at or past
//! `E.tree_size` was integrated at or after `E`, so not before `T2`. The
//! leaves in between are recomputed into every head's root, so none can be
//! left out, added or changed, and each one's time is checked against its
//! own `P` and `C`. The time rule for the leaves outside the bundle is the
//! log's promise, which `verify-store` and `audit` check over the whole log.

use std::fmt;

use merklog_merkle::{empty_root, leaf_hash, CompactRange, Hash};
use merklog_sth::{LogId, PublicKey, TreeHead};
use serde::{Deserialize, Serialize};

use crate::check::{verify_head_json, VerifiedHead};
use crate::json::{base64_bytes, hex_hash, hex_log_id, EntryJson, TreeHeadJson};
use crate::{ClientError, Result};

/// The `format` of an export bundle this version writes and reads.
pub const BUNDLE_FORMAT: &str = "merklog-export-bundle/1";

/// One violation of the time rule, naming the leaf or head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimeViolation {
    /// A head dated before the head that precedes it in (size, timestamp)
    /// order.
    HeadWentBack {
        tree_size: u64,
        timestamp_ms: u64,
        previous_size: u64,
        previous_ms: u64,
    },
    /// A leaf integrated before the leaf before it.
    EntryWentBack {
        index: u64,
        integrated_ms: u64,
        previous_ms: u64,
    },
    /// A leaf integrated outside `[P.timestamp, C.timestamp]`; `covering` is
    /// `None` when no head covers the leaf yet (then only `P` bounds it).
    OutsideHeads {
        index: u64,
        integrated_ms: u64,
        before_size: u64,
        before_ms: u64,
        covering: Option<(u64, u64)>,
    },
    /// The leaves one head adds were integrated at two times: a batch ended
    /// at `boundary`, and the head of that size is missing.
    TwoTimesOneHead {
        first: u64,
        boundary: u64,
        end: u64,
        first_ms: u64,
        boundary_ms: u64,
    },
}

impl fmt::Display for TimeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeViolation::HeadWentBack {
                tree_size,
                timestamp_ms,
                previous_size,
                previous_ms,
            } => write!(
                f,
                "the head at size {tree_size} is dated {} ({timestamp_ms} ms), before the head at size {previous_size} ({}, {previous_ms} ms): heads must not go back in time",
                rfc3339(*timestamp_ms),
                rfc3339(*previous_ms)
            ),
            TimeViolation::EntryWentBack {
                index,
                integrated_ms,
                previous_ms,
            } => write!(
                f,
                "integrated time of entry {index} ({}, {integrated_ms} ms) is before that of entry {} ({previous_ms} ms): integration times must not go back",
                rfc3339(*integrated_ms),
                index.saturating_sub(1)
            ),
            TimeViolation::OutsideHeads {
                index,
                integrated_ms,
                before_size,
                before_ms,
                covering,
            } => match covering {
                Some((size, ms)) => write!(
                    f,
                    "integrated time of entry {index} ({}, {integrated_ms} ms) outside [P, C] = [{before_ms}, {ms}] ms ({} .. {}), the timestamps of the heads at sizes {before_size} and {size}",
                    rfc3339(*integrated_ms),
                    rfc3339(*before_ms),
                    rfc3339(*ms)
                ),
                None => write!(
                    f,
                    "integrated time of entry {index} ({}, {integrated_ms} ms) is before {before_ms} ms ({}), the timestamp of the head at size {before_size} that precedes it",
                    rfc3339(*integrated_ms),
                    rfc3339(*before_ms)
                ),
            },
            TimeViolation::TwoTimesOneHead {
                first,
                boundary,
                end,
                first_ms,
                boundary_ms,
            } => write!(
                f,
                "head at size {boundary} withheld: entries {first}..{boundary} have no covering head of their own (they were integrated at {first_ms} ms, entries {boundary}..{end} at {boundary_ms} ms, and only the head at size {end} follows them)"
            ),
        }
    }
}

impl TimeViolation {
    /// Returns the leaf index (or the head's size) the violation names.
    pub fn index(&self) -> u64 {
        match self {
            TimeViolation::HeadWentBack { tree_size, .. } => *tree_size,
            TimeViolation::EntryWentBack { index, .. }
            | TimeViolation::OutsideHeads { index, .. } => *index,
            TimeViolation::TwoTimesOneHead { boundary, .. } => *boundary,
        }
    }
}

/// Checks the time rule over leaves given in index order, against every
/// signed head of the log (or of a window), in (size, timestamp) order.
#[derive(Debug)]
pub struct TimeOrder<'h> {
    heads: &'h [TreeHead],
    /// The first head whose size is larger than the last leaf's index.
    next: usize,
    previous: Option<(u64, u64)>,
    /// The first leaf of the current head interval, and its time.
    batch: Option<(u64, u64)>,
    /// Whether the current interval has been reported already.
    batch_reported: bool,
    violations: Vec<TimeViolation>,
}

impl<'h> TimeOrder<'h> {
    /// Starts a check against `heads`, which must be sorted by (size,
    /// timestamp); it reports the heads that go back in time at once.
    pub fn new(heads: &'h [TreeHead]) -> Self {
        let violations = heads
            .windows(2)
            .filter(|w| w[1].timestamp_ms < w[0].timestamp_ms)
            .map(|w| TimeViolation::HeadWentBack {
                tree_size: w[1].tree_size,
                timestamp_ms: w[1].timestamp_ms,
                previous_size: w[0].tree_size,
                previous_ms: w[0].timestamp_ms,
            })
            .collect();
        TimeOrder {
            heads,
            next: 0,
            previous: None,
            batch: None,
            batch_reported: false,
            violations,
        }
    }

    /// Checks leaf `index`, integrated at `integrated_ms`. Leaves must come
    /// in index order, without gaps (a gap is the caller's to report).
    pub fn leaf(&mut self, index: u64, integrated_ms: u64) {
        let mut moved = false;
        while self
            .heads
            .get(self.next)
            .is_some_and(|h| h.tree_size <= index)
        {
            self.next += 1;
            moved = true;
        }
        if moved || self.batch.is_none() {
            self.batch = Some((index, integrated_ms));
            self.batch_reported = false;
        }
        if let Some((_, previous_ms)) = self.previous {
            if integrated_ms < previous_ms {
                self.violations.push(TimeViolation::EntryWentBack {
                    index,
                    integrated_ms,
                    previous_ms,
                });
            }
        }
        self.previous = Some((index, integrated_ms));
        let heads = self.heads;
        let before = self.next.checked_sub(1).map(|i| &heads[i]);
        let covering = heads.get(self.next);
        if let Some(p) = before {
            let late = covering.is_some_and(|c| integrated_ms > c.timestamp_ms);
            if integrated_ms < p.timestamp_ms || late {
                self.violations.push(TimeViolation::OutsideHeads {
                    index,
                    integrated_ms,
                    before_size: p.tree_size,
                    before_ms: p.timestamp_ms,
                    covering: covering.map(|c| (c.tree_size, c.timestamp_ms)),
                });
            }
        }
        if let (Some((first, first_ms)), Some(c)) = (self.batch, covering) {
            if integrated_ms != first_ms && !self.batch_reported {
                self.batch_reported = true;
                self.violations.push(TimeViolation::TwoTimesOneHead {
                    first,
                    boundary: index,
                    end: c.tree_size,
                    first_ms,
                    boundary_ms: integrated_ms,
                });
            }
        }
    }

    /// Returns every violation found, in the order found.
    pub fn finish(self) -> Vec<TimeViolation> {
        self.violations
    }

    /// Returns the violations found so far.
    pub fn violations(&self) -> &[TimeViolation] {
        &self.violations
    }
}

/// A leaf of an export bundle: its leaf hash and integration time, and its
/// bytes when it lies inside the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEntry {
    pub leaf_index: u64,
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    pub integrated_ms: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_base64"
    )]
    pub data: Option<Vec<u8>>,
}

/// The proof that a time window holds every entry the log integrated in it
/// (`docs/FORMATS.md`, "Export bundle").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBundle {
    /// [`BUNDLE_FORMAT`].
    pub format: String,
    #[serde(with = "hex_log_id")]
    pub log_id: LogId,
    /// The window is `[since_ms, until_ms)`, in ms since the Unix epoch.
    pub since_ms: u64,
    pub until_ms: u64,
    /// The compact range (left border) of the tree of the first head's
    /// size, largest subtree first.
    #[serde(with = "hex_list")]
    pub left_border: Vec<Hash>,
    /// Every signed head from the start head to the end head, in (size,
    /// timestamp) order.
    pub heads: Vec<TreeHeadJson>,
    /// Every leaf from the start head's size to the end head's, in order.
    pub entries: Vec<BundleEntry>,
}

/// What a verified bundle proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWindow {
    pub since_ms: u64,
    pub until_ms: u64,
    pub start: VerifiedHead,
    pub end: VerifiedHead,
    pub heads: usize,
    /// The entries integrated in `[since_ms, until_ms)` (their bytes
    /// checked), in index order.
    pub in_window: Vec<EntryJson>,
}

impl VerifiedWindow {
    /// Returns true when the end head is dated at or after `until_ms`: no
    /// later entry can fall in the window. Otherwise the window is proved
    /// complete only up to the end head's time.
    pub fn closed(&self) -> bool {
        self.end.timestamp_ms() >= self.until_ms
    }

    /// Returns what a reader may conclude, in plain sentences: the window
    /// the heads actually prove, and how far the ends are from the asked
    /// times when the log signed no head near them.
    pub fn conclusions(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (s, e) = (self.start.timestamp_ms(), self.end.timestamp_ms());
        out.push(format!(
            "{} entries were integrated in [{}, {}) (entries {}..{} checked against {} signed heads)",
            self.in_window.len(),
            rfc3339(self.since_ms),
            rfc3339(self.until_ms),
            self.start.tree_size(),
            self.end.tree_size(),
            self.heads
        ));
        if self.start.tree_size() == 0 && s >= self.since_ms {
            out.push("the window starts before the log's first entry".into());
        } else {
            let gap = self.since_ms.saturating_sub(s);
            out.push(format!(
                "the nearest signed head before {} is {} earlier (size {}, {})",
                rfc3339(self.since_ms),
                duration(gap),
                self.start.tree_size(),
                rfc3339(s)
            ));
        }
        if self.closed() {
            out.push(format!(
                "the first signed head at or after {} is {} later (size {}, {})",
                rfc3339(self.until_ms),
                duration(e - self.until_ms),
                self.end.tree_size(),
                rfc3339(e)
            ));
            out.push(format!(
                "the bundle proves the window [{}, {}], which contains [{}, {}): the list is complete",
                rfc3339(s),
                rfc3339(e),
                rfc3339(self.since_ms),
                rfc3339(self.until_ms)
            ));
        } else {
            out.push(format!(
                "OPEN WINDOW: the log has signed no head at or after {} yet; the list is complete only up to {} (the latest head, size {}): entries integrated after it may still fall in the window; export again later",
                rfc3339(self.until_ms),
                rfc3339(e),
                self.end.tree_size()
            ));
        }
        out
    }
}

/// Fails with a bundle problem.
fn bad(reason: impl Into<String>) -> ClientError {
    ClientError::Bundle {
        reason: reason.into(),
    }
}

/// Verifies `bundle` with `key` alone: every head's signature and log, the
/// left border against the start head's root, every entry's leaf hash (and
/// bytes, where given) recomputed into the root of every head up to the end
/// head, every entry's time against its heads, and the window's ends.
///
/// # Errors
/// [`ClientError::BadSignature`] or [`ClientError::WrongLog`] for a head;
/// [`ClientError::EntryMissing`], [`ClientError::EntryOutOfPlace`],
/// [`ClientError::LeafHash`] for entries; [`ClientError::WindowRoot`] when
/// entries do not hash to a head's root; [`ClientError::HeadWithheld`] for
/// entries without their head; [`ClientError::EntryTime`] for a time
/// outside its heads; [`ClientError::TimeWentBack`];
/// [`ClientError::Bundle`] for a bundle of the wrong shape or ends.
pub fn verify_bundle(key: &PublicKey, bundle: &ExportBundle) -> Result<VerifiedWindow> {
    if bundle.format != BUNDLE_FORMAT {
        return Err(bad(format!(
            "format is {:?}, {BUNDLE_FORMAT:?} expected",
            bundle.format
        )));
    }
    if bundle.until_ms <= bundle.since_ms {
        return Err(bad(format!(
            "the window [{}, {}) is empty: until must be after since",
            bundle.since_ms, bundle.until_ms
        )));
    }
    if bundle.log_id != key.log_id() {
        return Err(ClientError::WrongLog {
            what: "the export bundle".into(),
            expected: key.log_id(),
            got: bundle.log_id,
        });
    }
    let heads = verify_heads(key, &bundle.heads)?;
    let (Some(start), Some(end)) = (heads.first(), heads.last()) else {
        return Err(bad("it holds no signed head"));
    };
    for w in heads.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if (b.tree_size(), b.timestamp_ms()) <= (a.tree_size(), a.timestamp_ms()) {
            return Err(bad(format!(
                "the heads are not in (size, timestamp) order: size {} at {} ms follows size {} at {} ms",
                b.tree_size(),
                b.timestamp_ms(),
                a.tree_size(),
                a.timestamp_ms()
            )));
        }
        if b.timestamp_ms() < a.timestamp_ms() {
            return Err(ClientError::TimeWentBack {
                small_size: a.tree_size(),
                small_ms: a.timestamp_ms(),
                large_size: b.tree_size(),
                large_ms: b.timestamp_ms(),
            });
        }
    }
    if start.tree_size() > 0 && start.timestamp_ms() >= bundle.since_ms {
        return Err(bad(format!(
            "its first head (size {}) is dated {}, not before the window's start {}: entries before it could fall in the window",
            start.tree_size(),
            rfc3339(start.timestamp_ms()),
            rfc3339(bundle.since_ms)
        )));
    }
    // The start head's tree, from its left border.
    let mut range = CompactRange::from_parts(start.tree_size(), bundle.left_border.clone())
        .map_err(|e| bad(format!("left_border: {e}")))?;
    let border_root = if start.tree_size() == 0 {
        empty_root()
    } else {
        range.root()
    };
    if border_root != start.root_hash() {
        return Err(ClientError::WindowRoot {
            first: 0,
            tree_size: start.tree_size(),
            computed: border_root,
            signed: start.root_hash(),
        });
    }

    let plain: Vec<TreeHead> = heads.iter().map(|h| h.sth().head).collect();
    let mut times = TimeOrder::new(&plain);
    let mut in_window = Vec::new();
    // Heads whose size the tree has reached, checked; the first is S.
    let mut checked = heads
        .iter()
        .take_while(|h| h.tree_size() == start.tree_size())
        .count();
    check_same_root(&heads[..checked], start.root_hash(), 0)?;
    let mut interval_first = start.tree_size();
    for (position, e) in bundle.entries.iter().enumerate() {
        let expected = start.tree_size() + position as u64;
        if e.leaf_index != expected {
            let later = bundle.entries[position..]
                .iter()
                .any(|x| x.leaf_index == expected);
            return Err(if e.leaf_index > expected && !later {
                ClientError::EntryMissing {
                    index: expected,
                    what: "the bundle".into(),
                }
            } else {
                ClientError::EntryOutOfPlace {
                    found: e.leaf_index,
                    expected,
                    what: "the bundle".into(),
                }
            });
        }
        if expected >= end.tree_size() {
            return Err(ClientError::HeadWithheld {
                tree_size: start.tree_size() + bundle.entries.len() as u64,
                first: end.tree_size(),
            });
        }
        if let Some(data) = &e.data {
            let computed = leaf_hash(data);
            if computed != e.leaf_hash {
                return Err(ClientError::LeafHash {
                    leaf_index: e.leaf_index,
                    claimed: e.leaf_hash,
                    computed,
                });
            }
        }
        let inside = (bundle.since_ms..bundle.until_ms).contains(&e.integrated_ms);
        if inside {
            let Some(data) = &e.data else {
                return Err(bad(format!(
                    "entry {} is inside the window but its data is not in the bundle",
                    e.leaf_index
                )));
            };
            in_window.push(EntryJson {
                leaf_index: e.leaf_index,
                leaf_hash: e.leaf_hash,
                data: data.clone(),
                integrated_ms: e.integrated_ms,
            });
        }
        times.leaf(e.leaf_index, e.integrated_ms);
        if let Some(v) = times.violations().first() {
            return Err(time_error(v));
        }
        range.append(e.leaf_hash, |_, _| {});
        let size = range.size();
        let at = heads[checked..]
            .iter()
            .take_while(|h| h.tree_size() == size)
            .count();
        if at > 0 {
            check_same_root(&heads[checked..checked + at], range.root(), interval_first)?;
            checked += at;
            interval_first = size;
        }
    }
    let reached = range.size();
    if reached < end.tree_size() {
        return Err(ClientError::EntryMissing {
            index: reached,
            what: "the bundle".into(),
        });
    }
    if let Some(v) = times.finish().first() {
        return Err(time_error(v));
    }
    Ok(VerifiedWindow {
        since_ms: bundle.since_ms,
        until_ms: bundle.until_ms,
        start: start.clone(),
        end: end.clone(),
        heads: heads.len(),
        in_window,
    })
}

/// Checks the bundle's heads, in parallel where the machine has cores: one
/// signature check costs more than hashing a thousand entries.
fn verify_heads(key: &PublicKey, heads: &[TreeHeadJson]) -> Result<Vec<VerifiedHead>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(heads.len() / 64 + 1);
    if threads <= 1 {
        return heads.iter().map(|h| verify_head_json(key, h)).collect();
    }
    let chunk = heads.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = heads
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|h| verify_head_json(key, h))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(heads.len());
        for w in workers {
            out.extend(w.join().expect("a signature check does not panic")?);
        }
        Ok(out)
    })
}

/// Checks that every head of `heads` (all of one size) has `root`, the
/// root recomputed from the entries since `first`.
fn check_same_root(heads: &[VerifiedHead], root: Hash, first: u64) -> Result<()> {
    for h in heads {
        if h.root_hash() != root {
            return Err(ClientError::WindowRoot {
                first,
                tree_size: h.tree_size(),
                computed: root,
                signed: h.root_hash(),
            });
        }
    }
    Ok(())
}

/// Turns the first time violation of a bundle into the error that names it.
fn time_error(v: &TimeViolation) -> ClientError {
    match v {
        TimeViolation::TwoTimesOneHead {
            first, boundary, ..
        } => ClientError::HeadWithheld {
            tree_size: *boundary,
            first: *first,
        },
        other => ClientError::EntryTime {
            index: other.index(),
            reason: other.to_string(),
        },
    }
}

/// Checks an entries file (JSON Lines of [`EntryJson`]) against a verified
/// window: it must hold exactly the window's entries, in index order, each
/// with the bytes and time the bundle proves.
///
/// # Errors
/// [`ClientError::EntryMissing`], [`ClientError::EntryOutOfPlace`] naming
/// the entry; [`ClientError::LeafHash`] for bytes that do not match;
/// [`ClientError::Input`] for a line that is not an entry.
pub fn check_entries_file(window: &VerifiedWindow, text: &str) -> Result<()> {
    let what = || "the entries file".to_owned();
    let mut expected = window.in_window.iter();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let got: EntryJson = serde_json::from_str(line).map_err(|e| ClientError::Input {
            what: format!("entries file line {}", n + 1),
            reason: e.to_string(),
        })?;
        let Some(want) = expected.next() else {
            return Err(ClientError::EntryOutOfPlace {
                found: got.leaf_index,
                expected: window.end.tree_size(),
                what: format!("{} (line {}, past the window's last entry)", what(), n + 1),
            });
        };
        if got.leaf_index > want.leaf_index {
            return Err(ClientError::EntryMissing {
                index: want.leaf_index,
                what: what(),
            });
        }
        if got.leaf_index < want.leaf_index {
            return Err(ClientError::EntryOutOfPlace {
                found: got.leaf_index,
                expected: want.leaf_index,
                what: format!("{} (line {})", what(), n + 1),
            });
        }
        let computed = leaf_hash(&got.data);
        if computed != want.leaf_hash || got.leaf_hash != want.leaf_hash {
            return Err(ClientError::LeafHash {
                leaf_index: want.leaf_index,
                claimed: want.leaf_hash,
                computed,
            });
        }
        if got.integrated_ms != want.integrated_ms {
            return Err(ClientError::EntryTime {
                index: want.leaf_index,
                reason: format!(
                    "the entries file says entry {} was integrated at {} ms, the bundle proves {} ms",
                    want.leaf_index, got.integrated_ms, want.integrated_ms
                ),
            });
        }
    }
    if let Some(want) = expected.next() {
        return Err(ClientError::EntryMissing {
            index: want.leaf_index,
            what: what(),
        });
    }
    Ok(())
}

/// Formats ms since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i64::try_from(ms)
        .ok()
        .and_then(|ms| ms.checked_mul(1_000_000))
        .unwrap_or(i64::MAX);
    merklog_event::format_rfc3339(nanos, 3)
}

/// Reads a time given as ms since the Unix epoch (digits only) or as RFC
/// 3339 (`2026-12-03T14:00:00Z`, `2026-12-03T15:00:00.250+01:00`), as ms
/// since the epoch (sub-millisecond digits are dropped).
///
/// # Errors
/// [`ClientError::Input`] naming `what` when it is neither, or before 1970.
pub fn parse_time(text: &str, what: &str) -> Result<u64> {
    let text = text.trim();
    let fail = |reason: String| ClientError::Input {
        what: what.to_owned(),
        reason: format!(
            "{text:?}: {reason}; give RFC 3339 (2026-12-03T14:00:00Z) or ms since the Unix epoch"
        ),
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| fail("too large".into()));
    }
    let nanos = merklog_event::OccurredAt::parse(text)
        .map_err(|e| fail(e.to_string()))?
        .unix_nanos();
    if nanos < 0 {
        return Err(fail("before 1970".into()));
    }
    Ok((nanos / 1_000_000) as u64)
}

/// Says a duration in the largest unit that fits: `3 h 5 min`, `12 s`.
fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

/// Serde for a list of hashes in hex, naming the bad element.
mod hex_list {
    use merklog_merkle::Hash;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse()
                    .map_err(|e| D::Error::custom(format!("left_border[{i}]: {e}")))
            })
            .collect()
    }
}

/// Serde for optional bytes as base64.
mod optional_base64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::base64_bytes::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::base64_bytes")] Vec<u8>);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_sth::LogSigner;

    /// A log of batches of `sizes` leaves, batch `b` integrated and signed
    /// at `base + 1000 * b` ms, with the empty head first.
    struct Fixture {
        signer: LogSigner,
        heads: Vec<TreeHeadJson>,
        entries: Vec<BundleEntry>,
        ranges: Vec<CompactRange>,
    }

    const BASE: u64 = 1_764_770_400_000;

    impl Fixture {
        fn new(sizes: &[u64]) -> Self {
            let signer = LogSigner::generate(&mut rand_core::OsRng);
            let mut range = CompactRange::new();
            let sign = |range: &CompactRange, ts: u64| {
                let sth = signer.sign(TreeHead {
                    tree_size: range.size(),
                    timestamp_ms: ts,
                    root_hash: if range.size() == 0 {
                        empty_root()
                    } else {
                        range.root()
                    },
                });
                TreeHeadJson::new(&sth, signer.public_key().log_id())
            };
            let mut heads = vec![sign(&range, BASE)];
            let mut ranges = vec![range.clone()];
            let mut entries = Vec::new();
            for (b, &n) in sizes.iter().enumerate() {
                let ts = BASE + 1000 * (b as u64 + 1);
                for _ in 0..n {
                    let data = format!("entry {}", range.size()).into_bytes();
                    let h = leaf_hash(&data);
                    entries.push(BundleEntry {
                        leaf_index: range.size(),
                        leaf_hash: h,
                        integrated_ms: ts,
                        data: Some(data),
                    });
                    range.append(h, |_, _| {});
                    ranges.push(range.clone());
                }
                heads.push(sign(&range, ts));
            }
            Fixture {
                signer,
                heads,
                entries,
                ranges,
            }
        }

        /// The bundle of heads `[first, last]` (positions in `heads`).
        fn bundle(&self, first: usize, last: usize, since: u64, until: u64) -> ExportBundle {
            let s = self.heads[first].tree_size as usize;
            let e = self.heads[last].tree_size as usize;
            ExportBundle {
                format: BUNDLE_FORMAT.into(),
                log_id: self.signer.public_key().log_id(),
                since_ms: since,
                until_ms: until,
                left_border: self.ranges[s].hashes().to_vec(),
                heads: self.heads[first..=last].to_vec(),
                entries: self.entries[s..e].to_vec(),
            }
        }

        fn key(&self) -> &PublicKey {
            self.signer.public_key()
        }
    }

    #[test]
    fn a_complete_window_verifies_and_says_what_it_proves() {
        let f = Fixture::new(&[3, 2, 4, 1]);
        // [BASE + 1500, BASE + 3500): batches 2 and 3 (ts +2000, +3000).
        let b = f.bundle(1, 4, BASE + 1500, BASE + 3500);
        let w = verify_bundle(f.key(), &b).unwrap();
        assert!(w.closed());
        let idx: Vec<u64> = w.in_window.iter().map(|e| e.leaf_index).collect();
        assert_eq!(idx, vec![3, 4, 5, 6, 7, 8]);
        let text = w.conclusions().join("\n");
        assert!(
            text.contains("is 0 s earlier") || text.contains("ms earlier"),
            "{text}"
        );
        assert!(text.contains("complete"), "{text}");
        // Round trip through JSON.
        let json = serde_json::to_string(&b).unwrap();
        let back: ExportBundle = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
        // An empty window before the first entry is proven from size 0.
        let b = f.bundle(0, 1, BASE - 10_000, BASE - 5_000);
        let w = verify_bundle(f.key(), &b).unwrap();
        assert!(w.in_window.is_empty());
    }

    #[test]
    fn tampering_is_named() {
        let f = Fixture::new(&[3, 2, 4, 1]);
        let good = f.bundle(1, 4, BASE + 1500, BASE + 3500);
        let check = |b: &ExportBundle| verify_bundle(f.key(), b).unwrap_err();

        let mut b = good.clone();
        b.entries.remove(2);
        let err = check(&b);
        assert!(
            matches!(err, ClientError::EntryMissing { index: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("entry 5 missing"), "{err}");

        let mut b = good.clone();
        b.entries.swap(1, 2);
        let err = check(&b);
        assert!(
            matches!(
                err,
                ClientError::EntryOutOfPlace {
                    found: 5,
                    expected: 4,
                    ..
                }
            ),
            "{err}"
        );

        // Swapped contents at their places: the roots say so.
        let mut b = good.clone();
        let (x, y) = (b.entries[0].clone(), b.entries[1].clone());
        b.entries[0] = BundleEntry {
            leaf_index: x.leaf_index,
            ..y.clone()
        };
        b.entries[1] = BundleEntry {
            leaf_index: y.leaf_index,
            ..x
        };
        let err = check(&b);
        assert!(
            matches!(
                err,
                ClientError::WindowRoot {
                    tree_size: 5,
                    first: 3,
                    ..
                }
            ),
            "{err}"
        );

        let mut b = good.clone();
        b.entries[0].data = Some(b"forged".to_vec());
        let err = check(&b);
        assert!(
            matches!(err, ClientError::LeafHash { leaf_index: 3, .. }),
            "{err}"
        );

        // A head withheld in the middle: its entries' time names it.
        let mut b = good.clone();
        b.heads.remove(1);
        let err = check(&b);
        assert!(
            matches!(
                err,
                ClientError::HeadWithheld {
                    tree_size: 5,
                    first: 3
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("head at size 5 withheld"), "{err}");
        // The end head withheld: entries past the last head.
        let mut b = good.clone();
        b.heads.pop();
        let err = check(&b);
        assert!(
            matches!(
                err,
                ClientError::HeadWithheld {
                    tree_size: 10,
                    first: 9
                }
            ),
            "{err}"
        );

        // A tampered time, outside its heads.
        let mut b = good.clone();
        b.entries[3].integrated_ms = BASE + 2500;
        let err = check(&b);
        assert!(
            matches!(err, ClientError::EntryTime { index: 6, .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("integrated time of entry 6"),
            "{err}"
        );

        // A start head dated inside the window.
        let b = f.bundle(2, 4, BASE + 1500, BASE + 3500);
        assert!(matches!(check(&b), ClientError::Bundle { .. }));
        // Another key.
        let other = LogSigner::generate(&mut rand_core::OsRng);
        assert!(verify_bundle(other.public_key(), &good).is_err());
    }

    #[test]
    fn a_window_past_the_latest_head_is_open() {
        let f = Fixture::new(&[3, 2]);
        let b = f.bundle(2, 2, BASE + 5000, BASE + 9000);
        let w = verify_bundle(f.key(), &b).unwrap();
        assert!(!w.closed());
        assert!(w.in_window.is_empty());
        assert!(w.conclusions().join(" ").contains("OPEN WINDOW"));
    }

    #[test]
    fn the_entries_file_must_be_the_window() {
        let f = Fixture::new(&[3, 2, 4, 1]);
        let w = verify_bundle(f.key(), &f.bundle(1, 4, BASE + 1500, BASE + 3500)).unwrap();
        let lines: Vec<String> = w
            .in_window
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        check_entries_file(&w, &lines.join("\n")).unwrap();
        let mut missing = lines.clone();
        missing.remove(2);
        let err = check_entries_file(&w, &missing.join("\n")).unwrap_err();
        assert!(err.to_string().contains("entry 5 missing"), "{err}");
        let mut short = lines.clone();
        short.pop();
        assert!(matches!(
            check_entries_file(&w, &short.join("\n")),
            Err(ClientError::EntryMissing { index: 8, .. })
        ));
        let mut swapped = lines.clone();
        swapped.swap(0, 1);
        assert!(check_entries_file(&w, &swapped.join("\n")).is_err());
    }

    #[test]
    fn times_parse_and_print() {
        assert_eq!(parse_time("1764770400000", "t").unwrap(), 1_764_770_400_000);
        let t = parse_time("2025-12-03T14:00:00Z", "t").unwrap();
        assert_eq!(t, 1_764_770_400_000);
        assert_eq!(rfc3339(t), "2025-12-03T14:00:00.000Z");
        assert_eq!(
            parse_time("2025-12-03T15:00:00.25+01:00", "t").unwrap(),
            t + 250
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_time("2000-02-29T00:00:00Z", "t").unwrap(),
            951_782_400_000
        );
        for bad in [
            "",
            "yesterday",
            "2025-12-03",
            "2025-13-03T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(parse_time(bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_time_rule_names_each_violation() {
        let head = |tree_size, timestamp_ms| TreeHead {
            tree_size,
            timestamp_ms,
            root_hash: Hash::default(),
        };
        let heads = [head(0, 10), head(2, 20), head(4, 30)];
        let run = |times: &[u64]| {
            let mut t = TimeOrder::new(&heads);
            for (i, ms) in times.iter().enumerate() {
                t.leaf(i as u64, *ms);
            }
            t.finish()
        };
        assert!(run(&[20, 20, 30, 30]).is_empty());
        assert!(run(&[10, 10, 20, 20]).is_empty());
        assert!(matches!(
            run(&[21, 21, 30, 30])[..],
            [TimeViolation::OutsideHeads { index: 0, .. }, ..]
        ));
        assert!(matches!(
            run(&[20, 20, 19, 19])[..],
            [TimeViolation::EntryWentBack { index: 2, .. }, ..]
        ));
        assert!(matches!(
            run(&[15, 20, 30, 30])[..],
            [TimeViolation::TwoTimesOneHead {
                boundary: 1,
                first: 0,
                end: 2,
                ..
            }]
        ));
        let back = [head(0, 10), head(2, 5)];
        assert!(matches!(
            TimeOrder::new(&back).finish()[..],
            [TimeViolation::HeadWentBack { tree_size: 2, .. }]
        ));
    }
}
