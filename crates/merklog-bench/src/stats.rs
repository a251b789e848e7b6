//! What the workers record: a latency histogram, call and item counts and
//! errors by gRPC status code per operation, merged once at the end; and
//! live counters that the progress line reads every second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The operations the generator issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Append,
    Inclusion,
    Consistency,
    Entries,
    Search,
}

/// How many kinds of operation there are.
const OPS: usize = Op::ALL.len();

impl Op {
    pub const ALL: [Op; 5] = [
        Op::Append,
        Op::Inclusion,
        Op::Consistency,
        Op::Entries,
        Op::Search,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Append => "append",
            Op::Inclusion => "inclusion_proof",
            Op::Consistency => "consistency_proof",
            Op::Entries => "get_entries",
            Op::Search => "search_events",
        }
    }

    /// What one item of this operation is, for the report.
    pub fn item(self) -> &'static str {
        match self {
            Op::Append => "entries appended",
            Op::Inclusion => "proofs",
            Op::Consistency => "proofs",
            Op::Entries => "entries read",
            Op::Search => "hits",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// The error class of a failed verification, next to gRPC codes.
pub const VERIFICATION_FAILED: &str = "VerificationFailed";

/// Counters shared by every worker, read by the progress line.
#[derive(Default)]
pub struct Live {
    calls: [AtomicU64; OPS],
    items: [AtomicU64; OPS],
    errors: [AtomicU64; OPS],
    pub verified: AtomicU64,
    pub prefilled: AtomicU64,
}

/// A snapshot of [`Live`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveSnapshot {
    pub calls: [u64; OPS],
    pub items: [u64; OPS],
    pub errors: [u64; OPS],
}

impl Live {
    pub fn snapshot(&self) -> LiveSnapshot {
        let read = |a: &[AtomicU64; OPS]| std::array::from_fn(|i| a[i].load(Ordering::Relaxed));
        LiveSnapshot {
            calls: read(&self.calls),
            items: read(&self.items),
            errors: read(&self.errors),
        }
    }
}

/// One worker's record; merged into the run's at the end.
pub struct Recorder {
    /// Latency in microseconds, per operation; made on the first call of
    /// that operation, since a histogram of this range takes 180 KiB and a
    /// run can have hundreds of workers that each do one operation.
    hist: [Option<Histogram<u64>>; OPS],
    calls: [u64; OPS],
    items: [u64; OPS],
    errors: BTreeMap<(Op, String), u64>,
    pub verified: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Recorder {
            hist: std::array::from_fn(|_| None),
            calls: [0; OPS],
            items: [0; OPS],
            errors: BTreeMap::new(),
            verified: 0,
        }
    }

    /// Records a successful call of `op` that carried `items` items.
    pub fn ok(&mut self, live: &Live, op: Op, latency: Duration, items: u64) {
        let i = op.slot();
        self.hist[i]
            .get_or_insert_with(new_histogram)
            .saturating_record(latency.as_micros().max(1) as u64);
        self.calls[i] += 1;
        self.items[i] += items;
        live.calls[i].fetch_add(1, Ordering::Relaxed);
        live.items[i].fetch_add(items, Ordering::Relaxed);
    }

    /// Records a failed call of `op`, by class (a gRPC code's name or
    /// [`VERIFICATION_FAILED`]).
    pub fn error(&mut self, live: &Live, op: Op, class: &str) {
        *self.errors.entry((op, class.to_owned())).or_default() += 1;
        live.errors[op.slot()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.hist.iter_mut().zip(other.hist) {
            match (mine.as_mut(), theirs) {
                (Some(mine), Some(theirs)) => {
                    mine.add(theirs).expect("histograms share their bounds");
                }
                (None, theirs) => *mine = theirs,
                (Some(_), None) => {}
            }
        }
        for i in 0..OPS {
            self.calls[i] += other.calls[i];
            self.items[i] += other.items[i];
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.verified += other.verified;
    }

    /// The report of `op` over a run of `seconds`; `None` if it never ran.
    pub fn op_report(&self, op: Op, seconds: f64) -> Option<OpReport> {
        let i = op.slot();
        let errors: BTreeMap<String, u64> = self
            .errors
            .iter()
            .filter(|((o, _), _)| *o == op)
            .map(|((_, class), n)| (class.clone(), *n))
            .collect();
        if self.calls[i] == 0 && errors.is_empty() {
            return None;
        }
        let empty;
        let h = match &self.hist[i] {
            Some(h) => h,
            None => {
                empty = new_histogram();
                &empty
            }
        };
        let ms = |us: u64| us as f64 / 1000.0;
        Some(OpReport {
            op: op.name(),
            item: op.item(),
            calls: self.calls[i],
            calls_per_s: self.calls[i] as f64 / seconds,
            items: self.items[i],
            items_per_s: self.items[i] as f64 / seconds,
            latency_ms: Latency {
                mean: h.mean() / 1000.0,
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                p999: ms(h.value_at_quantile(0.999)),
                max: ms(h.max()),
            },
            errors,
        })
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency from 1 µs to an hour, to three significant digits.
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

/// Latency of successful calls, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// Throughput, latency and errors of one operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub op: &'static str,
    pub item: &'static str,
    pub calls: u64,
    pub calls_per_s: f64,
    pub items: u64,
    pub items_per_s: f64,
    pub latency_ms: Latency,
    /// Failed calls by gRPC status code, and failed verifications.
    pub errors: BTreeMap<String, u64>,
}

/// Resident set size of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// RSS samples of the server, one a second.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RssReport {
    pub pid: u32,
    pub samples: usize,
    pub peak_mib: f64,
    pub mean_mib: f64,
    pub last_mib: f64,
}

impl RssReport {
    pub fn from_samples(pid: u32, kib: &[u64]) -> Option<Self> {
        let last = *kib.last()?;
        let mib = |k: u64| k as f64 / 1024.0;
        Some(RssReport {
            pid,
            samples: kib.len(),
            peak_mib: mib(kib.iter().copied().max().unwrap_or(0)),
            mean_mib: kib.iter().sum::<u64>() as f64 / kib.len() as f64 / 1024.0,
            last_mib: mib(last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merge_and_report() {
        let live = Live::default();
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        a.ok(&live, Op::Append, Duration::from_millis(2), 1000);
        b.ok(&live, Op::Append, Duration::from_millis(4), 1000);
        b.error(&live, Op::Append, "Unavailable");
        a.merge(b);
        let r = a.op_report(Op::Append, 2.0).unwrap();
        assert_eq!(r.calls, 2);
        assert_eq!(r.items_per_s, 1000.0);
        assert!((r.latency_ms.max - 4.0).abs() < 0.01);
        assert_eq!(r.errors["Unavailable"], 1);
        assert!(a.op_report(Op::Entries, 2.0).is_none());
        assert_eq!(live.snapshot().items[0], 2000);
    }

    #[test]
    fn workers_of_different_operations_merge() {
        let live = Live::default();
        let mut total = Recorder::new();
        let mut reader = Recorder::new();
        reader.ok(&live, Op::Inclusion, Duration::from_millis(3), 8);
        let mut failing = Recorder::new();
        failing.error(&live, Op::Consistency, "Unavailable");
        let mut writer = Recorder::new();
        writer.ok(&live, Op::Append, Duration::from_millis(5), 1);
        for worker in [reader, failing, writer] {
            total.merge(worker);
        }
        let inclusion = total.op_report(Op::Inclusion, 1.0).unwrap();
        assert_eq!((inclusion.calls, inclusion.items), (1, 8));
        assert!((inclusion.latency_ms.p50 - 3.0).abs() < 0.01);
        let append = total.op_report(Op::Append, 1.0).unwrap();
        assert!((append.latency_ms.max - 5.0).abs() < 0.01);
        // Only errors: a report with no latencies, not a missing one.
        let consistency = total.op_report(Op::Consistency, 1.0).unwrap();
        assert_eq!(consistency.calls, 0);
        assert_eq!(consistency.latency_ms.max, 0.0);
        assert_eq!(consistency.errors["Unavailable"], 1);
        assert!(total.op_report(Op::Entries, 1.0).is_none());
    }

    #[test]
    fn reads_own_rss() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
