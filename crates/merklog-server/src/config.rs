//! Tunables of the service, with the defaults the benchmarks chose.

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 64 * 1024,
            max_entries_per_append: 1000,
            max_page_size: 1000,
            node_cache_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// Returns the largest gRPC message the service accepts or sends: a full
    /// append or page of the largest entries, plus room for proofs.
    pub fn max_message_bytes(&self) -> usize {
        let entries = self.max_entries_per_append.max(self.max_page_size);
        entries
            .saturating_mul(self.max_entry_bytes + 64 * 33 + 64)
            .saturating_add(64 * 1024)
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
}

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
}

impl Default for TransportLimits {
    fn default() -> Self {
        TransportLimits {
            max_concurrent_requests_per_connection: 256,
            request_timeout: Duration::from_secs(30),
        }
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
