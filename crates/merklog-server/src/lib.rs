//! The merklog log service.
//!
//! - [`sequencer`]: the one task that owns the tree's right edge. It batches
//!   concurrent appends, integrates them with the core crate, commits leaves,
//!   nodes and the new signed tree head in one storage transaction, and only
//!   then answers the callers.
//! - [`service`]: the `merklog.v1.Log` gRPC service over a store and the
//!   sequencer.
//! - [`status`]: the single translation of domain errors into gRPC statuses.
//! - [`admission`]: access control, request size bounds and the bound on
//!   bytes in flight, applied to every call before its body is read;
//!   [`connections`]: the cap on open connections.
//!
//! It does not parse command lines or read key files; the `merklog` binary
//! does that and hands this crate a [`ServerConfig`], a store and a signer.

pub mod admission;
pub mod auth;
pub mod clock;
pub mod config;
pub mod connections;
pub mod leadership;
pub mod metrics;
pub mod node_cache;
mod node_reads;
pub mod refusals;
pub mod sequencer;
pub mod service;
pub mod status;
mod tasks;
pub mod tls;
mod wire_scan;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use merklog_proto::v1::log_server::LogServer;
use merklog_storage::LogStore;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use admission::{AdmissionLayer, Caller};
pub use auth::{token_hash, AuthConfig, Role};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Deployment, Limits, SequencerConfig, ServerConfig, TransportLimits};
use leadership::Running;
pub use leadership::{InstanceRole, LogKeys, Polling};
pub use sequencer::{Sequencer, StartupError};
pub use service::LogService;
pub use tls::{cert_fingerprint, leaf_fingerprint_from_pem, TlsConfig, TlsInputError};

/// Everything that stops the server from running.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The stored log failed a start-up check, or the store could not be read.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The listener could not be bound or served.
    #[error("gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Server reflection could not be set up.
    #[error("server reflection: {0}")]
    Reflection(String),
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A task the server ran beside the transport (the sequencer, or a
    /// reader task: the proof node reads, the node cache filler) panicked;
    /// the calls it was serving failed.
    #[error("the {task} task panicked: {message}")]
    TaskPanicked { task: &'static str, message: String },
}

/// How much longer than the service the transport waits before it gives up
/// on a call.
const TRANSPORT_TIMEOUT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Returns the transport with the TLS and per-connection limits of `config`.
fn transport_builder(config: &ServerConfig) -> Result<tonic::transport::Server, ServeError> {
    let t = &config.transport;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        // Fails on a key that does not match the certificate.
        builder = builder.tls_config(tls.to_tonic())?;
    }
    // A connection past its limit is refused at once with
    // RESOURCE_EXHAUSTED (load shedding) rather than queued: queued requests
    // would hold their bodies in memory and run into their deadlines, and one
    // flooding client could fill the sequencer's queue for everyone.
    // The service ends its calls at the request timeout with
    // DEADLINE_EXCEEDED; the transport's timeout, a little later, only
    // catches what the service does not see (a request body that never
    // finishes arriving), and answers CANCELLED.
    //
    // Neither covers an answer a peer does not read: HTTP/2 flow control
    // holds it. Admission counts it against the bytes in flight, the stream
    // limit bounds how many one connection holds, and the connection age
    // ends them: a connection past it is sent GOAWAY and, one request
    // timeout later, closed with whatever it still holds.
    Ok(builder
        .concurrency_limit_per_connection(t.max_concurrent_requests_per_connection)
        .load_shed(true)
        .timeout(t.request_timeout + TRANSPORT_TIMEOUT_MARGIN)
        .max_concurrent_streams(t.max_streams_per_connection())
        .http2_keepalive_interval(Some(t.keepalive_interval))
        .http2_keepalive_timeout(Some(config::KEEPALIVE_TIMEOUT))
        .max_connection_age(t.max_connection_age)
        .max_connection_age_grace(t.request_timeout + TRANSPORT_TIMEOUT_MARGIN))
}

/// Runs the log on `listener` until `shutdown` resolves, then stops taking
/// requests, lets the batch in flight commit and answers its callers.
///
/// `keys` is the log's signer, or only its public key for a read-only
/// instance ([`Deployment::ReadOnly`]).
///
/// # Errors
/// [`ServeError`] when the stored log fails its start-up checks or the
/// transport fails.
pub async fn serve<S: LogStore + Send + Sync + 'static>(
    listener: TcpListener,
    mut config: ServerConfig,
    store: Arc<S>,
    keys: impl Into<LogKeys>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let local: Option<SocketAddr> = listener.local_addr().ok();
    if let Some(addr) = local {
        config.validate_listener(addr).map_err(ServeError::Config)?;
    }
    let keys = keys.into();
    metrics::register();
    let node_cache = Arc::new(node_cache::NodeCache::new(config.limits.node_cache_bytes));
    let (role_rx, running) = Running::start(
        &config,
        &keys,
        store.clone(),
        clock.clone(),
        local,
        node_cache.clone(),
    )
    .await?;
    // Aborted when serving ends, however it ends; stopped before the
    // sequencer is asked to finish (it holds a receiver of the role).
    let head_age = metrics::HeadAgeTracker::start(role_rx.clone(), clock.clone());
    if config.auth.is_open() && keys.signer.is_some() {
        tracing::warn!("no access rules configured: anyone who can reach this port may append");
    }
    let mut service = LogService::with_role(
        store,
        role_rx,
        keys.public.clone(),
        config.limits,
        node_cache,
    )
    .with_request_timeout(config.transport.request_timeout)
    .with_clock(clock);
    let reader_tasks = service.take_task_watch();

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<LogServer<LogService<S>>>()
        .await;
    // Both reflection versions: older grpcurl and grpcui speak only v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(merklog_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(merklog_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;

    tracing::info!(
        addr = %local.map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
        tls = config.tls.as_ref().map_or("off", |t| if t.is_mutual() { "mutual" } else { "on" }),
        log_id = %keys.public.log_id(),
        "serving merklog.v1.Log"
    );
    // Small answers must not wait for the peer's delayed ACK (Nagle); TCP
    // keepalive finds peers that vanished without a word. tonic sets
    // neither on sockets it is handed.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(config.transport.keepalive_interval));
    let incoming = connections::capped(incoming, config.transport.max_connections);
    // Health and reflection pass admission too: with require_read_token,
    // they need a reader's token like any read.
    let admission = AdmissionLayer::new(config.auth.clone(), config.limits, &config.transport);
    let transport = transport_builder(&config)?;
    // The acceptor holds what it needs of the TLS key now; the PEM copy
    // (zeroized on drop) goes at once rather than when the server stops.
    config.tls = None;
    transport
        .layer(admission)
        .add_service(
            LogServer::new(service)
                // Admission refuses larger requests first, naming the bound.
                .max_decoding_message_size(config.limits.max_request_bytes)
                .max_encoding_message_size(config.limits.max_response_message_bytes()),
        )
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    // The transport has stopped and dropped the service; once the role
    // sender goes too, nothing holds a sender to the sequencer: it drains
    // what is queued and exits. A coordinator hands back the lead likewise.
    tracing::info!("transport stopped; waiting for the sequencer to finish its batch");
    head_age.stop().await;
    running.finish().await?;
    // The service is gone, and with it what keeps its reader tasks alive.
    if let Some((task, message)) = match reader_tasks {
        Some(watch) => watch.first_panic().await,
        None => None,
    } {
        return Err(ServeError::TaskPanicked { task, message });
    }
    tracing::info!("shut down cleanly");
    Ok(())
}
