//! Admission: what every call passes through before its body is read, for
//! every service on the port (the log, health and reflection alike).
//!
//! 1. **Access** is decided from the headers, the peer's address and its
//!    TLS certificate by [`AuthConfig::authorize`], the one decision point:
//!    `merklog.v1.Log/Append` and `AppendEvents` need a writer, every other
//!    method is a read.
//!    A refused call is answered at once; its body is never read, so a
//!    caller without credentials costs the server a header block.
//! 2. **Size**: each request message may declare at most
//!    [`Limits::max_request_bytes`] (an `Append`) or
//!    [`Limits::max_read_request_bytes`] (anything else), and carry at most
//!    [`Limits::max_request_fields`] top-level fields ([`FieldScan`]), both
//!    checked as the bytes arrive, before tonic buffers or decodes them.
//! 3. **Bytes in flight** across all connections are bounded by
//!    [`TransportLimits::max_inflight_bytes`]: each request byte is counted
//!    twice (as received and as decoded) from its arrival until its call's
//!    answer is sent; each answer byte from when the service produced it
//!    until hyper has taken it to send. Before an answer exists, the most it
//!    can take is reserved: at admission for a method whose answer is
//!    bounded by the limits (a `GetEntries` page: `max_response_bytes` plus
//!    one entry), and per entry or leaf as the request arrives for `Append`
//!    and `GetInclusionProofs` (one proof each). A call whose request bytes
//!    or reservation would pass the bound is refused with
//!    RESOURCE_EXHAUSTED. An answer larger than its reservation is counted
//!    even past the bound (it exists already); so are answers slow readers
//!    do not take, which keep new calls out until they are read or their
//!    connections close.
//!
//! Answers are handed to hyper in copied pieces of [`ANSWER_PIECE`] bytes,
//! one as HTTP/2 flow control allows, so that what a peer does not read
//! stays counted here rather than queued whole in hyper; hyper queues at
//! most its send buffer per stream (400 KiB) beyond that.
//!
//! It does not time calls out or limit connections; the transport does.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use crate::auth::{Access, AuthConfig};
use crate::config::{Limits, TransportLimits, GRPC_PREFIX, PROOF_ANSWER_BYTES, SMALL_ANSWER};
use crate::status::ServiceError;
use crate::wire_scan::{FieldScan, ScanError};

/// The path prefix of the log's methods.
const LOG_PATH: &str = "/merklog.v1.Log/";
/// The methods that need a writer.
const APPEND_PATH: &str = "/merklog.v1.Log/Append";
const APPEND_EVENTS_PATH: &str = "/merklog.v1.Log/AppendEvents";

/// The size of the pieces an answer is handed to hyper in: one HTTP/2 DATA
/// frame at the default frame size.
pub const ANSWER_PIECE: usize = 16 * 1024;

/// The client a call was admitted for, put into the request's extensions
/// for the service: its name under the access rules, or `None` when the
/// rules let anyone make the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Option<String>);

/// The bytes all calls hold, against their bound.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    /// Takes `n` bytes unless that would pass the limit.
    fn try_take(&self, n: usize) -> bool {
        let taken = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok();
        if taken {
            crate::metrics::inflight_bytes(self.used.load(Ordering::Relaxed));
        }
        taken
    }

    /// Takes `n` bytes that are already in memory, past the limit if need be.
    fn force_take(&self, n: usize) {
        let used = self.used.fetch_add(n, Ordering::AcqRel) + n;
        crate::metrics::inflight_bytes(used);
    }

    fn give_back(&self, n: usize) {
        let used = self.used.fetch_sub(n, Ordering::AcqRel) - n;
        crate::metrics::inflight_bytes(used);
    }
}

/// The bytes one call holds; given back as they are sent, and all at once
/// when both its request and its answer body are dropped.
#[derive(Debug)]
struct Held {
    budget: Arc<Budget>,
    /// Everything this call holds, `reserved` included.
    bytes: AtomicUsize,
    /// The part reserved for the answer before it exists.
    reserved: AtomicUsize,
}

impl Held {
    fn new(budget: Arc<Budget>) -> Self {
        Held {
            budget,
            bytes: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
        }
    }

    /// Reserves `n` bytes for the answer, unless that would pass the limit.
    fn try_reserve(&self, n: usize) -> bool {
        let taken = self.try_take(n);
        if taken {
            self.reserved.fetch_add(n, Ordering::AcqRel);
        }
        taken
    }

    /// Gives back the reservation: the answer exists and is counted itself.
    fn release_reservation(&self) {
        let n = self.reserved.swap(0, Ordering::AcqRel);
        if n > 0 {
            self.give_back(n);
        }
    }

    fn try_take(&self, n: usize) -> bool {
        let taken = self.budget.try_take(n);
        if taken {
            self.bytes.fetch_add(n, Ordering::AcqRel);
        }
        taken
    }

    fn force_take(&self, n: usize) {
        self.budget.force_take(n);
        self.bytes.fetch_add(n, Ordering::AcqRel);
    }

    fn give_back(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::AcqRel);
        self.budget.give_back(n);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = *self.bytes.get_mut();
        if n > 0 {
            self.budget.give_back(n);
        }
    }
}

/// What admission needs to know, shared by every connection.
#[derive(Debug)]
struct Rules {
    auth: AuthConfig,
    budget: Arc<Budget>,
    append_bytes: usize,
    read_bytes: usize,
    max_fields: usize,
    limits: Limits,
}

/// The tower layer that admits calls; see the module documentation.
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    rules: Arc<Rules>,
}

impl AdmissionLayer {
    /// Returns the layer for `auth`, `limits` and `transport`.
    pub fn new(auth: AuthConfig, limits: Limits, transport: &TransportLimits) -> Self {
        AdmissionLayer {
            rules: Arc::new(Rules {
                auth,
                budget: Arc::new(Budget {
                    used: AtomicUsize::new(0),
                    limit: transport.max_inflight_bytes,
                }),
                append_bytes: limits.max_request_bytes,
                read_bytes: limits.max_read_request_bytes(),
                max_fields: limits.max_request_fields(),
                limits,
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            rules: self.rules.clone(),
        }
    }
}

/// The service [`AdmissionLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    rules: Arc<Rules>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Admit<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let path = path.as_str();
        let (method, access, limit) = if path == APPEND_PATH {
            (
                "Append",
                Access::Append,
                Bound::Append(self.rules.append_bytes),
            )
        } else if path == APPEND_EVENTS_PATH {
            (
                "AppendEvents",
                Access::Append,
                Bound::Append(self.rules.append_bytes),
            )
        } else {
            let method = path.strip_prefix(LOG_PATH).unwrap_or(path);
            (method, Access::Read, Bound::Read(self.rules.read_bytes))
        };
        let refuse = |status: Status| -> Self::Future {
            Box::pin(std::future::ready(Ok(status.into_http())))
        };
        let client = match self.rules.authorize(&request, method, access) {
            Ok(client) => client,
            Err(status) => return refuse(status),
        };
        request.extensions_mut().insert(Caller(client));
        let held = Arc::new(Held::new(self.rules.budget.clone()));
        let (answer, per_field) = self.rules.answer_reservation(method, access);
        if !held.try_reserve(answer) {
            return refuse(self.rules.inflight_full());
        }
        let rules = self.rules.clone();
        let request = request.map(|body| {
            Body::new(Admitted {
                inner: body,
                held: held.clone(),
                scan: FieldScan::new(limit.bytes().saturating_sub(GRPC_PREFIX), rules.max_fields),
                reserved_fields: 0,
                per_field,
                limit,
                rules,
                failed: false,
            })
        });
        // The clone is ready only if `self.inner` was: take the ready one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(response.map(|body| {
                Body::new(Metered {
                    inner: body,
                    held,
                    pending: None,
                })
            }))
        })
    }
}

impl Rules {
    /// Returns what to reserve for the answer of `method` at admission, and
    /// per top-level field of its request.
    fn answer_reservation(&self, method: &str, access: Access) -> (usize, usize) {
        match (access, method) {
            (Access::Append, _) | (_, "GetInclusionProofs") => (SMALL_ANSWER, PROOF_ANSWER_BYTES),
            (_, "GetEntries") => (self.limits.max_entries_answer_bytes(), 0),
            // A page of hits is cut at max_response_bytes of entries and
            // proofs, as a GetEntries page is.
            (_, "SearchEvents") => (self.limits.max_entries_answer_bytes(), 0),
            (_, "GetEntryAndProof") => (self.limits.max_entry_bytes + SMALL_ANSWER, 0),
            _ => (SMALL_ANSWER, 0),
        }
    }

    fn inflight_full(&self) -> Status {
        crate::metrics::inflight_refused();
        ServiceError::InflightFull {
            limit: self.budget.limit,
        }
        .into()
    }

    /// Decides access from the call's headers and connection.
    fn authorize(
        &self,
        request: &http::Request<Body>,
        method: &str,
        access: Access,
    ) -> Result<Option<String>, Status> {
        let extensions = request.extensions();
        let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
        let peer = extensions
            .get::<TcpConnectInfo>()
            .or_else(|| tls.map(TlsConnectInfo::get_ref))
            .and_then(TcpConnectInfo::remote_addr);
        // The leaf comes first; it is present only with mutual TLS.
        let certs = tls.and_then(TlsConnectInfo::peer_certs);
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.as_ref());
        // Only the headers are copied, and only for a call that needs
        // credentials: `authorize` reads the `authorization` header alone.
        let metadata = if self.auth.is_open() {
            MetadataMap::new()
        } else {
            MetadataMap::from_headers(request.headers().clone())
        };
        Ok(self.auth.authorize(&metadata, peer, leaf, method, access)?)
    }
}

/// The size bound of one request message, by the kind of call.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Append(usize),
    Read(usize),
}

impl Bound {
    fn bytes(self) -> usize {
        match self {
            Bound::Append(n) | Bound::Read(n) => n,
        }
    }
}

/// A request body under admission: scanned and counted frame by frame
/// before tonic sees it.
struct Admitted {
    inner: Body,
    held: Arc<Held>,
    scan: FieldScan,
    /// Fields whose answer is reserved, and what each reserves.
    reserved_fields: usize,
    per_field: usize,
    limit: Bound,
    rules: Arc<Rules>,
    failed: bool,
}

impl Admitted {
    fn refusal(&self, error: ScanError) -> Status {
        let l = &self.rules.limits;
        let error = match (error, self.limit) {
            (ScanError::TooLarge { declared }, Bound::Append(limit)) => {
                ServiceError::RequestTooLarge {
                    declared: declared + GRPC_PREFIX,
                    limit,
                    bound: "max request bytes (--max-request-bytes) for an Append",
                }
            }
            (ScanError::TooLarge { declared }, Bound::Read(limit)) => {
                ServiceError::RequestTooLarge {
                    declared: declared + GRPC_PREFIX,
                    limit,
                    bound: "a read request (48 bytes per leaf of --max-page-size, \
                            at least 4096)",
                }
            }
            (ScanError::TooManyFields, _) => ServiceError::TooManyFields {
                limit: self.rules.max_fields,
                entries: l.max_entries_per_append,
                page: l.max_page_size,
            },
            (ScanError::Malformed, _) => ServiceError::invalid(
                "request",
                "the request body is not a well-formed protobuf message",
            ),
        };
        error.into()
    }
}

impl HttpBody for Admitted {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len();
            let checked = self.scan.feed(data);
            let fields = self.scan.total_fields();
            let answer = (fields - self.reserved_fields).saturating_mul(self.per_field);
            self.reserved_fields = fields;
            let refused = match checked {
                Err(e) => Some(self.refusal(e)),
                // Counted twice: the bytes tonic buffers, and the message
                // decoded from them.
                Ok(()) if !self.held.try_take(n.saturating_mul(2)) => {
                    Some(self.rules.inflight_full())
                }
                Ok(()) if !self.held.try_reserve(answer) => Some(self.rules.inflight_full()),
                Ok(()) => None,
            };
            if let Some(status) = refused {
                self.failed = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer body: counted from when the service produced it until hyper
/// takes it, piece by piece.
struct Metered {
    inner: Body,
    held: Arc<Held>,
    /// A large data frame being handed out, and how much of it has been.
    pending: Option<(Bytes, usize)>,
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            if let Some((data, at)) = &mut self.pending {
                let end = data.len().min(*at + ANSWER_PIECE);
                // A copy, so that the whole answer is freed once its last
                // piece is taken rather than when hyper sends it.
                let piece = Bytes::copy_from_slice(&data[*at..end]);
                let n = end - *at;
                *at = end;
                if end == data.len() {
                    self.pending = None;
                }
                self.held.give_back(n);
                return Poll::Ready(Some(Ok(Frame::data(piece))));
            }
            let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
            // The answer exists (or ended): what it takes is counted below.
            self.held.release_reservation();
            let frame = match polled {
                Some(Ok(frame)) => frame,
                other => return Poll::Ready(other),
            };
            match frame.into_data() {
                Ok(data) if data.len() > ANSWER_PIECE => {
                    self.held.force_take(data.len());
                    self.pending = Some((data, 0));
                }
                Ok(data) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Err(frame) => return Poll::Ready(Some(Ok(frame))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.pending {
            None => self.inner.size_hint(),
            Some(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_proto::v1::log_server::LogServer;
    use tonic::server::NamedService;

    #[test]
    fn the_paths_are_the_log_service() {
        type Log = LogServer<crate::LogService<merklog_storage::AnyStore>>;
        assert_eq!(LOG_PATH, format!("/{}/", Log::NAME));
    }

    #[test]
    fn the_budget_refuses_past_its_limit_and_counts_answers_past_it() {
        let budget = Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit: 100,
        });
        let held = Held::new(budget.clone());
        assert!(held.try_take(40));
        assert!(held.try_reserve(20));
        assert!(!held.try_take(41));
        held.force_take(50);
        assert_eq!(budget.used.load(Ordering::Relaxed), 110);
        assert!(!budget.try_take(1));
        held.give_back(50);
        held.release_reservation();
        assert_eq!(budget.used.load(Ordering::Relaxed), 40);
        drop(held);
        assert_eq!(budget.used.load(Ordering::Relaxed), 0);
        assert!(budget.try_take(100));
    }
}
