//! The service's metrics, named in one place. They are recorded through the
//! `metrics` facade; the `merklog` binary installs a Prometheus exporter, and
//! without one they cost next to nothing.
//!
//! [`ALL`] lists every metric with its kind, its label and every value the
//! label takes: [`register`] makes each series exist (counters at 0) from
//! start, the binary takes the histograms' buckets from it, and the table in
//! docs/OPERATIONS.md and the test that observes every metric are checked
//! against it.

use std::time::Duration;

/// Entries newly appended to the log (duplicates excluded).
pub const APPENDED_ENTRIES: &str = "merklog_appended_entries_total";
/// Append and AppendEvents calls answered, by outcome (`ok` or the gRPC
/// code's name, [`APPEND_OUTCOMES`]).
pub const APPEND_CALLS: &str = "merklog_append_calls_total";
/// Entries per committed batch.
pub const BATCH_ENTRIES: &str = "merklog_batch_entries";
/// Seconds from the start of a batch's integration to its commit.
pub const INTEGRATION_SECONDS: &str = "merklog_integration_seconds";
/// The size of the latest signed tree head this instance serves.
pub const TREE_SIZE: &str = "merklog_tree_size";
/// Seconds since the latest signed tree head this instance serves was
/// signed, by this instance's clock.
pub const HEAD_AGE_SECONDS: &str = "merklog_head_age_seconds";
/// Entries waiting for the sequencer.
pub const QUEUE_DEPTH: &str = "merklog_queue_depth";
/// Storage calls that failed, by operation ([`STORAGE_OPERATIONS`]).
pub const STORAGE_ERRORS: &str = "merklog_storage_errors_total";
/// Requests refused for missing or insufficient credentials, by reason
/// ([`AUTH_REASONS`]).
pub const AUTH_FAILURES: &str = "merklog_auth_failures_total";

/// Store queries that proofs took for the nodes below the node cache (the
/// reads of concurrent proofs are merged into one query).
pub const PROOF_NODE_QUERIES: &str = "merklog_proof_node_queries_total";
/// Leaves whose complete subtrees from the cache's lowest level up are in
/// memory for proofs.
pub const NODE_CACHE_LEAVES: &str = "merklog_node_cache_leaves";

/// Bytes of requests and answers the calls in flight hold (see `admission`).
pub const INFLIGHT_BYTES: &str = "merklog_inflight_bytes";
/// Requests refused because the bytes in flight were at their limit.
pub const INFLIGHT_REFUSED: &str = "merklog_inflight_refused_total";
/// Open connections.
pub const CONNECTIONS: &str = "merklog_connections";
/// Connections closed at once because `max_connections` were open.
pub const CONNECTIONS_REFUSED: &str = "merklog_connections_refused_total";

/// 1 while this instance holds the leader lock and sequences, else 0.
pub const LEADER: &str = "merklog_leader";
/// Always 1, labelled with the server's version.
pub const BUILD_INFO: &str = "merklog_build_info";

/// The server's version, the value of [`BUILD_INFO`]'s label.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The outcomes of [`APPEND_CALLS`]: `ok`, or the name of the gRPC code of
/// the refusal ([`append_outcome`]; `other` for codes an append is not
/// refused with). Calls refused before the service sees them (access
/// control, bytes in flight) count in their own metrics, not here.
pub const APPEND_OUTCOMES: &[&str] = &[
    "ok",
    "invalid_argument",
    "resource_exhausted",
    "unavailable",
    "deadline_exceeded",
    "data_loss",
    "internal",
    "other",
];

/// The reasons of [`AUTH_FAILURES`].
pub const AUTH_REASONS: &[&str] = &[
    AUTH_MISSING_TOKEN,
    AUTH_MALFORMED_HEADER,
    AUTH_UNKNOWN_TOKEN,
    AUTH_INSUFFICIENT_ROLE,
];
/// No `authorization` header.
pub const AUTH_MISSING_TOKEN: &str = "missing_token";
/// An `authorization` header that is not `Bearer <token>`.
pub const AUTH_MALFORMED_HEADER: &str = "malformed_header";
/// A token no rule knows.
pub const AUTH_UNKNOWN_TOKEN: &str = "unknown_token";
/// A reader's token or certificate on an append.
pub const AUTH_INSUFFICIENT_ROLE: &str = "insufficient_role";

/// The operations of [`STORAGE_ERRORS`].
pub const STORAGE_OPERATIONS: &[&str] = &[STORAGE_BATCH, STORAGE_REFRESH_HEAD];
/// Committing a batch (leaves, nodes and signed tree head).
pub const STORAGE_BATCH: &str = "batch";
/// Storing the fresh head an idle log signs at its maximum head age.
pub const STORAGE_REFRESH_HEAD: &str = "refresh_head";

/// Upper bounds of [`BATCH_ENTRIES`]' buckets: powers of two up to the
/// largest batch the sequencer is configured for by default (4,096), so
/// that a fleet's distributions add up bucket by bucket.
pub const BATCH_ENTRIES_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0,
];
/// Upper bounds of [`INTEGRATION_SECONDS`]' buckets: from a fast local
/// commit (half a millisecond) to a stalled database (10 s).
pub const INTEGRATION_SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The kind of a metric, as Prometheus types it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from 0 at start).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Counts observations into fixed buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// Returns the Prometheus type name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric: its name, kind, label and meaning.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    /// The full Prometheus name.
    pub name: &'static str,
    /// The Prometheus type.
    pub kind: Kind,
    /// The one label, if any, with every value it takes.
    pub label: Option<(&'static str, &'static [&'static str])>,
    /// The `# HELP` text.
    pub help: &'static str,
    /// The buckets' upper bounds, for a histogram; empty otherwise.
    pub buckets: &'static [f64],
    /// The unit, for the `# HELP` line.
    pub unit: Option<metrics::Unit>,
}

const fn metric(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        label: None,
        help,
        buckets: &[],
        unit: None,
    }
}

const fn labelled(
    name: &'static str,
    label: &'static str,
    values: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        label: Some((label, values)),
        ..metric(name, Kind::Counter, help)
    }
}

/// Every metric the service records.
pub const ALL: &[Metric] = &[
    metric(
        APPENDED_ENTRIES,
        Kind::Counter,
        "Entries newly appended to the log (duplicates excluded)",
    ),
    labelled(
        APPEND_CALLS,
        "outcome",
        APPEND_OUTCOMES,
        "Append and AppendEvents calls answered, by outcome",
    ),
    Metric {
        buckets: BATCH_ENTRIES_BUCKETS,
        ..metric(
            BATCH_ENTRIES,
            Kind::Histogram,
            "Entries per committed batch",
        )
    },
    Metric {
        buckets: INTEGRATION_SECONDS_BUCKETS,
        unit: Some(metrics::Unit::Seconds),
        ..metric(
            INTEGRATION_SECONDS,
            Kind::Histogram,
            "Time to integrate, store and sign one batch",
        )
    },
    metric(
        TREE_SIZE,
        Kind::Gauge,
        "Size of the latest signed tree head served here",
    ),
    Metric {
        unit: Some(metrics::Unit::Seconds),
        ..metric(
            HEAD_AGE_SECONDS,
            Kind::Gauge,
            "Seconds since the latest signed tree head served here was signed",
        )
    },
    metric(
        QUEUE_DEPTH,
        Kind::Gauge,
        "Entries waiting for the sequencer",
    ),
    labelled(
        STORAGE_ERRORS,
        "operation",
        STORAGE_OPERATIONS,
        "Storage calls that failed, by operation",
    ),
    labelled(
        AUTH_FAILURES,
        "reason",
        AUTH_REASONS,
        "Requests refused by access control, by reason",
    ),
    metric(
        PROOF_NODE_QUERIES,
        Kind::Counter,
        "Store queries for proof nodes below the node cache",
    ),
    metric(
        NODE_CACHE_LEAVES,
        Kind::Gauge,
        "Leaves whose upper tree levels the node cache holds",
    ),
    Metric {
        unit: Some(metrics::Unit::Bytes),
        ..metric(
            INFLIGHT_BYTES,
            Kind::Gauge,
            "Bytes of requests and answers held by the calls in flight",
        )
    },
    metric(
        INFLIGHT_REFUSED,
        Kind::Counter,
        "Requests refused because the bytes in flight were at their limit",
    ),
    metric(CONNECTIONS, Kind::Gauge, "Open connections"),
    metric(
        CONNECTIONS_REFUSED,
        Kind::Counter,
        "Connections closed at once because max connections were open",
    ),
    metric(
        LEADER,
        Kind::Gauge,
        "1 while this instance sequences appends, else 0",
    ),
    Metric {
        kind: Kind::Gauge,
        label: Some(("version", &[VERSION])),
        ..metric(
            BUILD_INFO,
            Kind::Gauge,
            "Always 1, labelled with the server's version",
        )
    },
];

/// Describes every metric for the exporter's `# HELP` lines and makes every
/// series of [`ALL`] exist: counters at 0 for each value of their label (a
/// rate over a series that appears with its first event misses that
/// event), gauges at 0 until their first reading, histograms empty, and
/// [`BUILD_INFO`] at 1.
pub fn register() {
    for m in ALL {
        let labels: Vec<(&'static str, &'static str)> = match m.label {
            Some((label, values)) => values.iter().map(|v| (label, *v)).collect(),
            None => Vec::new(),
        };
        let series: Vec<Vec<metrics::Label>> = if labels.is_empty() {
            vec![Vec::new()]
        } else {
            labels
                .iter()
                .map(|(k, v)| vec![metrics::Label::new(*k, *v)])
                .collect()
        };
        match m.kind {
            Kind::Counter => {
                match m.unit {
                    Some(unit) => metrics::describe_counter!(m.name, unit, m.help),
                    None => metrics::describe_counter!(m.name, m.help),
                }
                for labels in series {
                    metrics::counter!(m.name, labels).increment(0);
                }
            }
            Kind::Gauge => {
                match m.unit {
                    Some(unit) => metrics::describe_gauge!(m.name, unit, m.help),
                    None => metrics::describe_gauge!(m.name, m.help),
                }
                for labels in series {
                    // Registering shows a gauge at 0 without overwriting a
                    // reading taken before (the leader's, say).
                    metrics::gauge!(m.name, labels).increment(0.0);
                }
            }
            Kind::Histogram => {
                match m.unit {
                    Some(unit) => metrics::describe_histogram!(m.name, unit, m.help),
                    None => metrics::describe_histogram!(m.name, m.help),
                }
                for labels in series {
                    let _ = metrics::histogram!(m.name, labels);
                }
            }
        }
    }
    metrics::gauge!(BUILD_INFO, "version" => VERSION).set(1.0);
}

/// Returns the [`APPEND_CALLS`] outcome of an append refused with `code`.
pub fn append_outcome(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::InvalidArgument => "invalid_argument",
        Code::ResourceExhausted => "resource_exhausted",
        Code::Unavailable => "unavailable",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::DataLoss => "data_loss",
        Code::Internal => "internal",
        _ => "other",
    }
}

/// How often [`HEAD_AGE_SECONDS`] is recomputed: its reading lags the clock
/// by at most this much.
pub const HEAD_AGE_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps [`HEAD_AGE_SECONDS`] and [`TREE_SIZE`] current from the head `role` serves (the
/// sequencer's latest on a leader, the last one read from the store on a
/// follower), whoever signed it and whether or not appends arrive; stops
/// when dropped.
pub(crate) struct HeadAgeTracker(tokio::task::JoinHandle<()>);

impl HeadAgeTracker {
    pub(crate) fn start(
        role: tokio::sync::watch::Receiver<crate::leadership::InstanceRole>,
        clock: std::sync::Arc<dyn crate::Clock>,
    ) -> Self {
        HeadAgeTracker(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEAD_AGE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let latest = role.borrow().latest().map(|h| h.head);
                if let Some(head) = latest {
                    head_age(clock.now_ms(), head.timestamp_ms);
                    // A follower commits no batch, and a leader none
                    // before its first: their size comes from here.
                    metrics::gauge!(TREE_SIZE).set(head.tree_size as f64);
                }
            }
        }))
    }
}

impl HeadAgeTracker {
    /// Stops the task and waits until it has dropped its receiver of the
    /// role: the role's value holds the sequencer's handle, which must go
    /// before the sequencer can drain and stop.
    pub(crate) async fn stop(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for HeadAgeTracker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets [`HEAD_AGE_SECONDS`]; negative when the head is dated ahead of this
/// instance's clock (a skewed clock somewhere), which an alert may want to
/// see rather than a 0.
fn head_age(now_ms: u64, signed_ms: u64) {
    let age_ms = now_ms as f64 - signed_ms as f64;
    metrics::gauge!(HEAD_AGE_SECONDS).set(age_ms / 1000.0);
}

pub(crate) fn batch_committed(entries: usize, took: Duration, tree_size: u64) {
    metrics::counter!(APPENDED_ENTRIES).increment(entries as u64);
    metrics::histogram!(BATCH_ENTRIES).record(entries as f64);
    metrics::histogram!(INTEGRATION_SECONDS).record(took.as_secs_f64());
    metrics::gauge!(TREE_SIZE).set(tree_size as f64);
}

pub(crate) fn proof_node_query() {
    metrics::counter!(PROOF_NODE_QUERIES).increment(1);
}

pub(crate) fn node_cache_leaves(leaves: u64) {
    metrics::gauge!(NODE_CACHE_LEAVES).set(leaves as f64);
}

/// Counts a failed storage call; `operation` is one of
/// [`STORAGE_OPERATIONS`].
pub(crate) fn storage_error(operation: &'static str) {
    debug_assert!(STORAGE_OPERATIONS.contains(&operation), "{operation}");
    metrics::counter!(STORAGE_ERRORS, "operation" => operation).increment(1);
}

pub(crate) fn queue_depth(entries: usize) {
    metrics::gauge!(QUEUE_DEPTH).set(entries as f64);
}

/// Counts an append call answered with `result`.
pub(crate) fn append_call<T>(result: &Result<T, tonic::Status>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(status) => append_outcome(status.code()),
    };
    metrics::counter!(APPEND_CALLS, "outcome" => outcome).increment(1);
}

/// Counts a refusal by access control; `reason` is one of [`AUTH_REASONS`].
pub(crate) fn auth_failure(reason: &'static str) {
    debug_assert!(AUTH_REASONS.contains(&reason), "{reason}");
    metrics::counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

pub(crate) fn leader(leading: bool) {
    metrics::gauge!(LEADER).set(if leading { 1.0 } else { 0.0 });
}

pub(crate) fn inflight_bytes(bytes: usize) {
    metrics::gauge!(INFLIGHT_BYTES).set(bytes as f64);
}

pub(crate) fn inflight_refused() {
    metrics::counter!(INFLIGHT_REFUSED).increment(1);
}

pub(crate) fn connections(open: usize) {
    metrics::gauge!(CONNECTIONS).set(open as f64);
}

pub(crate) fn connection_refused() {
    metrics::counter!(CONNECTIONS_REFUSED).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_append_outcome_is_listed() {
        use tonic::Code;
        for code in (0..=16).map(Code::from_i32) {
            let outcome = append_outcome(code);
            assert!(APPEND_OUTCOMES.contains(&outcome), "{code:?} → {outcome}");
        }
    }

    #[test]
    fn names_are_unique_and_histograms_have_rising_buckets() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for m in ALL {
            assert_eq!(
                m.kind == Kind::Histogram,
                !m.buckets.is_empty(),
                "{}",
                m.name
            );
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{}", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
        }
    }
}
