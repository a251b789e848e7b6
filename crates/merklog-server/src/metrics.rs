//! The service's metrics, named in one place. They are recorded through the
//! `metrics` facade; the `merklog` binary installs a Prometheus exporter, and
//! without one they cost next to nothing.

use std::time::Duration;

/// Entries newly appended to the log (duplicates excluded).
pub const APPENDED_ENTRIES: &str = "merklog_appended_entries_total";
/// Append calls answered, by outcome (`ok` or the gRPC code's name).
pub const APPEND_CALLS: &str = "merklog_append_calls_total";
/// Entries per committed batch.
pub const BATCH_ENTRIES: &str = "merklog_batch_entries";
/// Seconds from the start of a batch's integration to its commit.
pub const INTEGRATION_SECONDS: &str = "merklog_integration_seconds";
/// The size of the latest signed tree head.
pub const TREE_SIZE: &str = "merklog_tree_size";
/// Entries waiting for the sequencer.
pub const QUEUE_DEPTH: &str = "merklog_queue_depth";
/// Storage calls that failed, by operation.
pub const STORAGE_ERRORS: &str = "merklog_storage_errors_total";
/// Requests refused for missing or insufficient credentials, by reason.
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

/// Describes every metric, for the exporter's `# HELP` lines.
pub fn describe() {
    metrics::describe_counter!(APPENDED_ENTRIES, "Entries newly appended to the log");
    metrics::describe_counter!(APPEND_CALLS, "Append calls answered, by outcome");
    metrics::describe_histogram!(BATCH_ENTRIES, "Entries per committed batch");
    metrics::describe_histogram!(
        INTEGRATION_SECONDS,
        metrics::Unit::Seconds,
        "Time to integrate, store and sign one batch"
    );
    metrics::describe_gauge!(TREE_SIZE, "Size of the latest signed tree head");
    metrics::describe_gauge!(QUEUE_DEPTH, "Entries waiting for the sequencer");
    metrics::describe_counter!(STORAGE_ERRORS, "Storage calls that failed");
    metrics::describe_counter!(AUTH_FAILURES, "Requests refused by access control");
    metrics::describe_gauge!(LEADER, "1 while this instance sequences appends");
    metrics::describe_gauge!(
        INFLIGHT_BYTES,
        metrics::Unit::Bytes,
        "Bytes of requests and answers held by the calls in flight"
    );
    metrics::describe_counter!(
        INFLIGHT_REFUSED,
        "Requests refused because the bytes in flight were at their limit"
    );
    metrics::describe_gauge!(CONNECTIONS, "Open connections");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed at once because max connections were open"
    );
    metrics::describe_counter!(
        PROOF_NODE_QUERIES,
        "Store queries for proof nodes below the node cache"
    );
    metrics::describe_gauge!(
        NODE_CACHE_LEAVES,
        "Leaves whose upper tree levels the node cache holds"
    );
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

pub(crate) fn storage_error(operation: &'static str) {
    metrics::counter!(STORAGE_ERRORS, "operation" => operation).increment(1);
}

pub(crate) fn queue_depth(entries: usize) {
    metrics::gauge!(QUEUE_DEPTH).set(entries as f64);
}

pub(crate) fn append_call(outcome: &'static str) {
    metrics::counter!(APPEND_CALLS, "outcome" => outcome).increment(1);
}

pub(crate) fn auth_failure(reason: &'static str) {
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
