//! The one place where the service's errors become gRPC statuses.

use merklog_storage::StorageError;
use tonic::{Code, Status};

/// Why a request failed, in the service's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed: the message names the field and the bound.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The request is well formed but points past what the log holds.
    #[error("{field}: {reason}")]
    OutOfRange { field: String, reason: String },
    /// The thing asked for is not in the log.
    #[error("{0}")]
    NotFound(String),
    /// The sequencer's queue is full, counted in `unit` (entries or bytes):
    /// retry later.
    #[error(
        "the log is overloaded: {queued} {unit} are waiting (capacity {capacity}); retry later"
    )]
    Overloaded {
        queued: usize,
        capacity: usize,
        unit: &'static str,
    },
    /// The request could not be served for now (the database is
    /// unreachable, the service is stopping, no head is signed yet): retry.
    /// Nothing of this request was committed unless the message says
    /// otherwise.
    #[error("{0}")]
    Unavailable(String),
    /// The service or its database is misconfigured or failed in a way a
    /// retry will not fix; the message says what the operator must look at.
    #[error("internal error: {0}")]
    Internal(String),
    /// No credentials, or credentials the log does not know.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Known credentials that do not allow this method.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// This instance does not sequence appends: another does, or none for
    /// the moment (it took over seconds ago or is about to).
    #[error("{}", not_leader_message(leader.as_deref(), *read_only))]
    NotLeader {
        leader: Option<String>,
        read_only: bool,
    },
    /// Stored data is missing or malformed: the store needs `verify-store`.
    #[error("stored log is damaged: {0}")]
    DataLoss(String),
    /// A request message declares more bytes than its bound allows; refused
    /// before its body is read.
    #[error("the request message is {declared} bytes; the limit of {bound} is {limit} bytes")]
    RequestTooLarge {
        declared: usize,
        limit: usize,
        bound: &'static str,
    },
    /// A request message carries more top-level fields than any valid
    /// request, which would make decoding it cost many times its size.
    #[error(
        "the request message has more than {limit} fields; a call carries at most \
         {entries} entries (--max-entries-per-append) or {page} leaves (--max-page-size)"
    )]
    TooManyFields {
        limit: usize,
        entries: usize,
        page: usize,
    },
    /// The requests and answers in flight on the whole server hold their
    /// bound of bytes: retry later.
    #[error(
        "the server is overloaded: requests and answers in flight hold its limit of {limit} \
         bytes (--max-inflight-bytes); retry later"
    )]
    InflightFull { limit: usize },
    /// A search ran past the database's time bound for one query: asking
    /// again the same way will too.
    #[error(
        "the search took longer than the log allows one query ({detail}): narrow the time \
         window, add filters or ask for a smaller page"
    )]
    SearchTooCostly { detail: String },
}

impl ServiceError {
    /// A malformed field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ServiceError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A field that points past the log.
    pub fn out_of_range(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ServiceError::OutOfRange {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

fn not_leader_message(leader: Option<&str>, read_only: bool) -> String {
    let here = if read_only {
        "this instance is read-only and takes no appends"
    } else {
        "this instance is a follower and takes no appends"
    };
    match leader {
        Some(address) => format!("{here}; send them to the leader at {address}"),
        None if read_only => format!("{here}; send them to the leader"),
        None => format!("{here}; no instance leads right now, retry in a few seconds"),
    }
}

/// Told to the callers of an Append whose outcome is not known here (its
/// write failed, possibly after COMMIT reached the database, or it ran past
/// the request timeout).
pub(crate) const APPEND_AGAIN_IS_SAFE: &str =
    "the entries of this call may or may not have been stored: appending them again is safe, \
     an entry already stored is answered with its index";

/// The response header naming the leader on a NotLeader refusal, so that a
/// client can redirect without parsing the message.
pub const LEADER_HEADER: &str = "merklog-leader";

/// Tells callers what kind of storage failure ended their call, never the
/// database's own text: that can name tables, roles, hosts and values, and
/// is for the operator. The whole error goes to the server's log under
/// `merklog::storage` with an error id, which the caller's message quotes so
/// that the two can be matched.
impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        let id = error_id();
        let transient = matches!(
            e,
            StorageError::Unavailable { .. }
                | StorageError::LeaseLost { .. }
                | StorageError::OutOfOrder { .. }
                | StorageError::TreeHeadRejected { .. }
                | StorageError::QueryTimeout { .. }
        );
        if transient {
            tracing::warn!(target: "merklog::storage", error_id = %id, error = %e, "storage call failed");
        } else {
            tracing::error!(target: "merklog::storage", error_id = %id, error = %e, "storage call failed");
        }
        let see_log = format!("error id {id}; the server log has the details");
        match e {
            // Names a node of the tree, which any caller may know.
            StorageError::NodeMissing { .. } => ServiceError::DataLoss(e.to_string()),
            StorageError::QueryTimeout { .. } => ServiceError::SearchTooCostly { detail: see_log },
            StorageError::Corrupt { .. } => ServiceError::DataLoss(format!(
                "a stored value does not have the shape the schema promises; \
                 the operator should run `merklog verify-store` ({see_log})"
            )),
            // Transient: the database is down or busy, or another instance
            // wrote first (a takeover); the sequencer reloads its state
            // before the next batch.
            StorageError::Unavailable { .. } => ServiceError::Unavailable(format!(
                "storage unavailable: the database did not answer; retry ({see_log})"
            )),
            StorageError::LeaseLost { .. } => ServiceError::Unavailable(format!(
                "this instance lost the leader lock; retry, another instance takes over ({see_log})"
            )),
            StorageError::OutOfOrder { .. } | StorageError::TreeHeadRejected { .. } => {
                ServiceError::Unavailable(format!(
                    "another instance appended to the log first; retry ({see_log})"
                ))
            }
            // A missing privilege, a bad schema or configuration, a
            // statement the database refused (AppendOnly, DuplicateLeaf,
            // InvalidBatch, PermissionDenied, Migration, Config, Unsupported,
            // Database): retrying changes nothing.
            _ => ServiceError::Internal(format!("the store refused the request ({see_log})")),
        }
    }
}

/// Returns a fresh id for one logged error: 16 random hex digits, so that
/// ids do not repeat across restarts or instances.
fn error_id() -> String {
    use rand_core::RngCore;
    hex::encode(rand_core::OsRng.next_u64().to_be_bytes())
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let code = match &e {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::OutOfRange { .. } => Code::OutOfRange,
            ServiceError::NotFound(_) => Code::NotFound,
            ServiceError::Overloaded { .. }
            | ServiceError::RequestTooLarge { .. }
            | ServiceError::InflightFull { .. }
            | ServiceError::SearchTooCostly { .. } => Code::ResourceExhausted,
            ServiceError::TooManyFields { .. } => Code::InvalidArgument,
            ServiceError::Unavailable(_) | ServiceError::NotLeader { .. } => Code::Unavailable,
            ServiceError::Internal(_) => Code::Internal,
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::PermissionDenied(_) => Code::PermissionDenied,
            ServiceError::DataLoss(_) => Code::DataLoss,
        };
        let mut status = Status::new(code, e.to_string());
        if let ServiceError::NotLeader {
            leader: Some(address),
            ..
        } = &e
        {
            if let Ok(value) = address.parse() {
                status.metadata_mut().insert(LEADER_HEADER, value);
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_names_the_leader_in_message_and_header() {
        let s: Status = ServiceError::NotLeader {
            leader: Some("http://log-2:7300".into()),
            read_only: false,
        }
        .into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.message(),
            "this instance is a follower and takes no appends; send them to the leader at http://log-2:7300"
        );
        assert_eq!(
            s.metadata().get(LEADER_HEADER).unwrap().to_str().unwrap(),
            "http://log-2:7300"
        );
        let s: Status = ServiceError::NotLeader {
            leader: None,
            read_only: false,
        }
        .into();
        assert!(s
            .message()
            .ends_with("no instance leads right now, retry in a few seconds"));
        assert!(s.metadata().get(LEADER_HEADER).is_none());
    }

    #[test]
    fn codes_and_messages() {
        let s: Status = ServiceError::invalid("entries[3]", "entry is empty").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "entries[3]: entry is empty");
        let s: Status = ServiceError::Overloaded {
            queued: 10,
            capacity: 10,
            unit: "entries",
        }
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        let s: Status = ServiceError::Unavailable("db down".into()).into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "db down");
    }

    #[test]
    fn storage_errors_say_whether_a_retry_can_help() {
        let status = |e: StorageError| Status::from(ServiceError::from(e));
        let down = status(StorageError::Unavailable {
            source: sqlx::Error::PoolTimedOut,
        });
        assert_eq!(down.code(), Code::Unavailable);
        // One prefix, not the storage error's and the service's both.
        assert_eq!(down.message().matches("unavailable").count(), 1, "{down:?}");
        let raced = status(StorageError::OutOfOrder {
            message: "leaves [5, 9] inserted but the next index is 7".into(),
        });
        assert_eq!(raced.code(), Code::Unavailable);
        let denied = status(StorageError::PermissionDenied {
            message: "permission denied for table leaves".into(),
        });
        assert_eq!(denied.code(), Code::Internal);
        // The database's text stays in the server's log.
        assert!(
            denied
                .message()
                .starts_with("internal error: the store refused the request (error id "),
            "{denied:?}"
        );
        assert!(!denied.message().contains("leaves"), "{denied:?}");
        let damaged = status(StorageError::Corrupt {
            what: "a leaf hash of 31 bytes".into(),
        });
        assert_eq!(damaged.code(), Code::DataLoss);
        assert!(!damaged.message().contains("31 bytes"), "{damaged:?}");
        // Two failures, two ids.
        let id = |s: &Status| s.message().split("error id ").nth(1).map(str::to_owned);
        assert_ne!(id(&down), id(&raced));
        assert_eq!(
            id(&down).unwrap().len(),
            16 + "; the server log has the details)".len()
        );
    }
}
