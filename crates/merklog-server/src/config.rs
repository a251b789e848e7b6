//! Tunables of the service, with the defaults the benchmarks chose.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::AuthConfig;
use crate::leadership::Polling;

/// How this instance shares the log with others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Deployment {
    /// The only instance: it sequences from start to stop (SQLite's only
    /// mode).
    #[default]
    Standalone,
    /// One of several instances on one PostgreSQL database: it sequences
    /// while it holds the leader lock and serves reads otherwise.
    LeaderElection {
        /// Where clients reach this instance, told to the others' callers.
        advertise: String,
    },
    /// Never sequences; serves reads, e.g. from a streaming replica. Needs
    /// only the public key.
    ReadOnly,
}
use crate::tls::TlsConfig;

/// Bounds on what one request may ask for, and on the memory reads use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest entry accepted, in bytes.
    pub max_entry_bytes: usize,
    /// The most entries one `Append` call may carry.
    pub max_entries_per_append: usize,
    /// The most entries one `GetEntries` call may return, and the most
    /// leaves one `GetInclusionProofs` call may ask for.
    pub max_page_size: usize,
    /// The most memory the cache of the tree's upper levels may take
    /// (`node_cache`): the larger, the fewer nodes a proof reads from the
    /// store. 0 turns the cache off.
    pub node_cache_bytes: usize,
    /// The largest `Append` request accepted, in bytes of its gRPC message.
    /// Independent of `max_entries_per_append` × `max_entry_bytes`: a call
    /// of many large entries is refused, and clients split by bytes too.
    pub max_request_bytes: usize,
    /// A `GetEntries` page ends before the entry that would take its
    /// entries' data past this many bytes (but holds at least one entry).
    pub max_response_bytes: usize,
}

/// The bytes one entry costs in an `AppendRequest` beyond its data: the
/// field's tag and length (at most 1 + 5 bytes), rounded up.
pub const APPEND_ENTRY_FRAMING: usize = 8;
/// The gRPC message prefix: a compression flag and a 4-byte length.
pub const GRPC_PREFIX: usize = 5;
/// Top-level fields a request message may carry beyond its one repeated
/// field (`entries` or `leaves`): room for the others and unknown fields.
const FIELD_SLACK: usize = 8;
/// The most proof hashes one inclusion or consistency proof holds: one per
/// level of a tree of up to 2^64 leaves, twice for a consistency proof.
const MAX_PROOF_HASHES: usize = 128;
/// The most bytes one inclusion proof with its index and leaf hash takes in
/// an answer: 64 hashes of 32 bytes with their tags, and the rest.
pub const PROOF_ANSWER_BYTES: usize = 64 * 34 + 64;
/// What admission reserves for the answer of a method without a larger
/// bound (a head, a consistency proof, health, a reflection answer).
pub const SMALL_ANSWER: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 64 * 1024,
            max_entries_per_append: 1000,
            max_page_size: 1000,
            node_cache_bytes: 64 << 20,
            max_request_bytes: 8 << 20,
            // With its framing, a full page stays within the 4 MiB a gRPC
            // client accepts by default.
            max_response_bytes: 3 << 20,
        }
    }
}

impl Limits {
    /// Returns the largest request of a read method (every method but
    /// `Append`, health and reflection included), in bytes with the gRPC
    /// prefix: room for a `GetInclusionProofs` of `max_page_size` leaf
    /// hashes (each a 36-byte `LeafRef`, rounded up to 48).
    pub fn max_read_request_bytes(&self) -> usize {
        self.max_page_size
            .saturating_mul(48)
            .saturating_add(1024)
            .max(4096)
    }

    /// Returns the most top-level fields one request message may carry, so
    /// that decoding it cannot allocate a `Vec` per two wire bytes beyond
    /// what a valid request needs.
    pub fn max_request_fields(&self) -> usize {
        self.max_entries_per_append
            .max(self.max_page_size)
            .saturating_add(FIELD_SLACK)
    }

    /// Returns the largest `GetEntries` answer: a page cut at
    /// `max_response_bytes`, plus the one entry that may pass it and each
    /// entry's index, hash and timestamp.
    pub fn max_entries_answer_bytes(&self) -> usize {
        // Index, leaf hash, timestamp and tags of one entry, rounded up.
        let entry_overhead = 64;
        self.max_response_bytes
            .saturating_add(self.max_entry_bytes)
            .saturating_add(self.max_page_size.saturating_mul(entry_overhead))
    }

    /// Returns the most bytes one call may hold in flight (see
    /// `admission`): the larger of a largest `Append` (its request twice,
    /// and a proof per entry) and a `GetEntries` page.
    pub fn largest_call_bytes(&self) -> usize {
        let append = self
            .max_request_bytes
            .saturating_mul(2)
            .saturating_add(SMALL_ANSWER)
            .saturating_add(
                self.max_entries_per_append
                    .saturating_mul(PROOF_ANSWER_BYTES),
            );
        let proofs = self
            .max_read_request_bytes()
            .saturating_mul(2)
            .saturating_add(SMALL_ANSWER)
            .saturating_add(self.max_page_size.saturating_mul(PROOF_ANSWER_BYTES));
        let page = self
            .max_read_request_bytes()
            .saturating_mul(2)
            .saturating_add(self.max_entries_answer_bytes());
        append.max(proofs).max(page)
    }

    /// Returns the largest gRPC message the service sends: a `GetEntries`
    /// page (cut at `max_response_bytes` plus one entry), or an `Append`
    /// answer or `GetInclusionProofs` page of full proofs.
    pub fn max_response_message_bytes(&self) -> usize {
        let page = self.max_entries_answer_bytes();
        let proof = MAX_PROOF_HASHES * 34 + 64;
        let proofs = self
            .max_entries_per_append
            .max(self.max_page_size)
            .saturating_mul(proof);
        page.max(proofs).saturating_add(64 * 1024)
    }
}

/// How the sequencer batches appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencerConfig {
    /// A batch is closed once it holds this many entries.
    pub max_batch_entries: usize,
    /// How long the sequencer waits for more appends after the first one of
    /// a batch arrives when no batch is being written; while one is, the
    /// appends that arrive meanwhile join the next one without waiting.
    pub max_batch_delay: Duration,
    /// How many entries may wait for the sequencer; beyond that, appends are
    /// refused at once with RESOURCE_EXHAUSTED.
    pub queue_capacity: usize,
    /// How many bytes of entries may wait for the sequencer, each entry
    /// counted with [`QUEUED_ENTRY_OVERHEAD`]; beyond that, appends are
    /// refused at once with RESOURCE_EXHAUSTED. Bounds the queue's memory
    /// where the entry count alone would allow `queue_capacity` entries of
    /// the largest size.
    pub queue_capacity_bytes: usize,
    /// How old (by the server's clock) the latest signed head may grow
    /// while no append comes: then the sequencer signs and stores a fresh
    /// head of the same size, root and a new timestamp, so that a monitor
    /// can tell an idle log from a frozen or hidden one. `None` never
    /// re-signs (a monitor's age alarm then fires on every idle log).
    pub max_head_age: Option<Duration>,
}

/// The shortest [`SequencerConfig::max_head_age`]: heads are dated in
/// milliseconds and each one is a stored row.
pub const MIN_MAX_HEAD_AGE: Duration = Duration::from_secs(1);

/// The default [`SequencerConfig::max_head_age`]: a fresh head a minute,
/// about half a million rows of `tree_heads` a year on an idle log.
pub const DEFAULT_MAX_HEAD_AGE: Duration = Duration::from_secs(60);

/// What a queued entry costs besides its bytes: its leaf hash and the
/// vector that holds it.
pub const QUEUED_ENTRY_OVERHEAD: usize = 64;

impl Default for SequencerConfig {
    fn default() -> Self {
        SequencerConfig {
            max_batch_entries: 4096,
            max_batch_delay: Duration::from_millis(2),
            queue_capacity: 100_000,
            queue_capacity_bytes: 256 << 20,
            max_head_age: Some(DEFAULT_MAX_HEAD_AGE),
        }
    }
}

/// Bounds the transport enforces before a request reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// How many requests one connection may have in the service at once;
    /// further requests on that connection are refused at once with
    /// RESOURCE_EXHAUSTED. Other connections are not affected.
    pub max_concurrent_requests_per_connection: usize,
    /// How long a request may run. A request still running then is answered
    /// with CANCELLED ("Timeout expired"), as tonic does; a shorter
    /// `grpc-timeout` sent by the client wins. An append cut off this way
    /// may still be committed with its batch: retrying it finds it as a
    /// duplicate.
    pub request_timeout: Duration,
    /// How many connections (TLS handshakes included) may be open at once;
    /// a connection past it is closed as soon as it is accepted.
    pub max_connections: usize,
    /// How many bytes of requests and answers all calls together may hold:
    /// a request that would take more is refused with RESOURCE_EXHAUSTED.
    /// See `admission` for what is counted.
    pub max_inflight_bytes: usize,
    /// How long a connection may stay open: then it is asked to close
    /// (HTTP/2 GOAWAY) and, after `request_timeout` more, closed.
    pub max_connection_age: Duration,
    /// How often an HTTP/2 ping (and TCP keepalive probes) checks that the
    /// peer of an idle connection is still there; an unanswered ping closes
    /// the connection after `KEEPALIVE_TIMEOUT`.
    pub keepalive_interval: Duration,
}

/// How long a keepalive ping may go unanswered before its connection is
/// closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_concurrent_requests_per_connection: 256,
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_inflight_bytes: 256 << 20,
            max_connection_age: Duration::from_secs(600),
            keepalive_interval: Duration::from_secs(60),
        }
    }
}

impl TransportLimits {
    /// Returns how many HTTP/2 streams one connection may have open (HTTP/2
    /// SETTINGS_MAX_CONCURRENT_STREAMS): twice the requests it may have in
    /// the service, so that calls still sending their answers leave room,
    /// and a request past the service's limit is refused at once (load
    /// shedding) rather than queued by the client; at least 100, as RFC 9113
    /// section 5.1.2 recommends, since a client may open that many before it
    /// has read the setting, and streams past it are reset.
    pub fn max_streams_per_connection(&self) -> u32 {
        u32::try_from(
            self.max_concurrent_requests_per_connection
                .saturating_mul(2)
                .max(100),
        )
        .unwrap_or(u32::MAX)
    }
}

/// The whole service configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub limits: Limits,
    pub sequencer: SequencerConfig,
    pub transport: TransportLimits,
    /// Who may append and read; open (anyone) unless configured.
    pub auth: AuthConfig,
    pub deployment: Deployment,
    /// How often followers poll the store and leaders check their lock.
    pub polling: Polling,
    /// TLS for the listener; plaintext HTTP/2 without it.
    pub tls: Option<TlsConfig>,
    /// Serve without access rules on an address other than loopback: anyone
    /// who reaches it may append. Off by default, and refused without it.
    pub allow_open_access: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            sequencer: SequencerConfig::default(),
            transport: TransportLimits::default(),
            auth: AuthConfig::open(),
            deployment: Deployment::Standalone,
            polling: Polling::default(),
            tls: None,
            allow_open_access: false,
        }
    }
}

impl ServerConfig {
    /// Checks that the settings can work together.
    ///
    /// # Errors
    /// A message naming the setting that is out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        let s = &self.sequencer;
        if l.max_entry_bytes == 0 || l.max_entries_per_append == 0 || l.max_page_size == 0 {
            return Err(
                "max entry bytes, max entries per append and max page size must be at least 1"
                    .into(),
            );
        }
        // GetLogInfo tells clients these two as uint32.
        if l.max_entries_per_append > u32::MAX as usize || l.max_page_size > u32::MAX as usize {
            return Err(format!(
                "max entries per append and max page size must be at most {}",
                u32::MAX
            ));
        }
        if s.max_batch_entries == 0 {
            return Err("max batch entries must be at least 1".into());
        }
        if s.max_head_age.is_some_and(|age| age < MIN_MAX_HEAD_AGE) {
            return Err(format!(
                "the maximum head age must be at least {} s (or off)",
                MIN_MAX_HEAD_AGE.as_secs()
            ));
        }
        if s.queue_capacity < l.max_entries_per_append {
            return Err(format!(
                "queue capacity ({}) must be at least max entries per append ({})",
                s.queue_capacity, l.max_entries_per_append
            ));
        }
        if let Deployment::LeaderElection { advertise } = &self.deployment {
            if advertise.trim().is_empty() || advertise.len() > 512 {
                return Err("the advertised address must be 1 to 512 characters".into());
            }
        }
        if self.polling.interval.is_zero() {
            return Err("the polling interval must be positive".into());
        }
        if s.queue_capacity > u32::MAX as usize {
            return Err(format!("queue capacity must be at most {}", u32::MAX));
        }
        // The largest append must fit in an empty queue, or it could never
        // be taken; permits are taken as one u32.
        let largest_append = l
            .max_entries_per_append
            .saturating_mul(l.max_entry_bytes.saturating_add(QUEUED_ENTRY_OVERHEAD));
        if s.queue_capacity_bytes < largest_append || s.queue_capacity_bytes > u32::MAX as usize {
            return Err(format!(
                "queue capacity in bytes ({}) must be at least max entries per append × \
                 (max entry bytes + {QUEUED_ENTRY_OVERHEAD}) = {largest_append}, and at most {}",
                s.queue_capacity_bytes,
                u32::MAX
            ));
        }
        let t = &self.transport;
        if t.max_concurrent_requests_per_connection == 0 {
            return Err("max concurrent requests per connection must be at least 1".into());
        }
        if t.request_timeout.is_zero() {
            return Err("the request timeout must be longer than 0 ms".into());
        }
        if t.max_connections == 0 {
            return Err("max connections must be at least 1".into());
        }
        if t.max_connection_age.is_zero() || t.keepalive_interval.is_zero() {
            return Err("the max connection age and keepalive interval must be positive".into());
        }
        // One largest entry must fit in an Append, and one in a page.
        let one_entry = l.max_entry_bytes + APPEND_ENTRY_FRAMING + GRPC_PREFIX;
        if l.max_request_bytes < one_entry {
            return Err(format!(
                "max request bytes ({}) must hold one entry of max entry bytes ({}) \
                 with its framing: at least {one_entry}",
                l.max_request_bytes, l.max_entry_bytes
            ));
        }
        if l.max_response_bytes < l.max_entry_bytes {
            return Err(format!(
                "max response bytes ({}) must be at least max entry bytes ({})",
                l.max_response_bytes, l.max_entry_bytes
            ));
        }
        // The largest call must fit on its own.
        let largest = l.largest_call_bytes();
        if t.max_inflight_bytes < largest {
            return Err(format!(
                "max in-flight bytes ({}) must hold the largest call: twice max request bytes \
                 with a proof per entry, or a page of max response bytes: at least {largest}",
                t.max_inflight_bytes
            ));
        }
        // Without a client CA no client presents a certificate, so such
        // entries could never match: the operator meant to turn on mTLS.
        if self.auth.has_certificate_clients() && !self.tls.as_ref().is_some_and(|t| t.is_mutual())
        {
            return Err(
                "the auth file grants roles to client certificates (cert_sha256), \
                 which needs mutual TLS: give --tls-client-ca with --tls-cert and --tls-key"
                    .into(),
            );
        }
        Ok(())
    }

    /// Checks that a server without access rules listens only on loopback
    /// (127.0.0.0/8, ::1), unless `allow_open_access` says otherwise. A
    /// read-only instance is exempt: it takes no appends, and reads are
    /// open by default anyway.
    ///
    /// # Errors
    /// A message naming `--allow-open-access` and `--auth-file`.
    pub fn validate_listener(&self, listen: SocketAddr) -> Result<(), String> {
        let loopback = listen.ip().to_canonical().is_loopback();
        if !self.auth.is_open()
            || loopback
            || self.allow_open_access
            || self.deployment == Deployment::ReadOnly
        {
            return Ok(());
        }
        Err(format!(
            "refusing to serve {listen} without access rules: anyone who reaches it could \
             append. Give --auth-file (see `merklog token`), listen on loopback \
             (127.0.0.1 or ::1), or pass --allow-open-access \
             (MERKLOG_ALLOW_OPEN_ACCESS=true) to serve it open on purpose"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_limits_must_be_positive() {
        let mut config = ServerConfig::default();
        assert!(config.validate().is_ok());
        config.transport.max_concurrent_requests_per_connection = 0;
        let e = config.validate().unwrap_err();
        assert!(e.contains("concurrent requests"), "{e}");
        config.transport = TransportLimits {
            request_timeout: Duration::ZERO,
            ..TransportLimits::default()
        };
        let e = config.validate().unwrap_err();
        assert!(e.contains("request timeout"), "{e}");
    }

    #[test]
    fn open_access_is_refused_beyond_loopback() {
        let mut config = ServerConfig::default();
        for ok in [
            "127.0.0.1:7300",
            "127.8.9.10:1",
            "[::1]:7300",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(
                config.validate_listener(ok.parse().unwrap()).is_ok(),
                "{ok}"
            );
        }
        for open in ["0.0.0.0:7300", "[::]:7300", "10.1.2.3:7300"] {
            let e = config.validate_listener(open.parse().unwrap()).unwrap_err();
            assert!(e.contains("--allow-open-access"), "{e}");
            assert!(e.contains("MERKLOG_ALLOW_OPEN_ACCESS"), "{e}");
        }
        let any: SocketAddr = "0.0.0.0:7300".parse().unwrap();
        config.allow_open_access = true;
        assert!(config.validate_listener(any).is_ok());
        config.allow_open_access = false;
        config.deployment = Deployment::ReadOnly;
        assert!(config.validate_listener(any).is_ok());
        config.deployment = Deployment::Standalone;
        config.auth = AuthConfig::from_toml("").unwrap();
        assert!(config.validate_listener(any).is_ok());
    }

    #[test]
    fn request_and_response_limits_fit_one_entry() {
        let mut config = ServerConfig::default();
        config.limits.max_request_bytes = config.limits.max_entry_bytes;
        let e = config.validate().unwrap_err();
        assert!(e.contains("max request bytes"), "{e}");
        let mut config = ServerConfig::default();
        config.limits.max_response_bytes = 1;
        let e = config.validate().unwrap_err();
        assert!(e.contains("max response bytes"), "{e}");
        let mut config = ServerConfig::default();
        config.transport.max_inflight_bytes = config.limits.max_request_bytes;
        let e = config.validate().unwrap_err();
        assert!(e.contains("max in-flight bytes"), "{e}");
        // The defaults keep an Append far below the 67.8 MB of 1000 full
        // entries, and a read request small.
        let limits = Limits::default();
        assert_eq!(limits.max_request_bytes, 8 << 20);
        assert!(limits.max_read_request_bytes() < 64 * 1024);
        assert!(limits.max_response_message_bytes() < 16 << 20);
    }

    #[test]
    fn limits_told_to_clients_fit_their_fields() {
        let mut config = ServerConfig::default();
        config.limits.max_page_size = u32::MAX as usize + 1;
        let e = config.validate().unwrap_err();
        assert!(
            e.contains("max page size must be at most 4294967295"),
            "{e}"
        );
    }

    #[test]
    fn certificate_clients_need_mutual_tls() {
        let config = ServerConfig {
            auth: AuthConfig::from_toml(&format!(
                "[[client]]\nname = \"box\"\nrole = \"writer\"\ncert_sha256 = \"{}\"\n",
                "ab".repeat(32)
            ))
            .unwrap(),
            ..ServerConfig::default()
        };
        let e = config.validate().unwrap_err();
        assert!(e.contains("--tls-client-ca"), "{e}");
    }
}
