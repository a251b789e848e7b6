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
    /// The sequencer's queue is full: retry later.
    #[error(
        "the log is overloaded: {queued} entries are waiting (capacity {capacity}); retry later"
    )]
    Overloaded { queued: usize, capacity: usize },
    /// The storage failed or is unreachable; nothing of this request was
    /// committed unless the message says otherwise.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// No credentials, or credentials the log does not know.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Known credentials that do not allow this method.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Stored data is missing or malformed: the store needs `verify-store`.
    #[error("stored log is damaged: {0}")]
    DataLoss(String),
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

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NodeMissing { .. } | StorageError::Corrupt { .. } => {
                ServiceError::DataLoss(e.to_string())
            }
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let code = match &e {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::OutOfRange { .. } => Code::OutOfRange,
            ServiceError::NotFound(_) => Code::NotFound,
            ServiceError::Overloaded { .. } => Code::ResourceExhausted,
            ServiceError::Unavailable(_) => Code::Unavailable,
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::PermissionDenied(_) => Code::PermissionDenied,
            ServiceError::DataLoss(_) => Code::DataLoss,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let s: Status = ServiceError::invalid("entries[3]", "entry is empty").into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "entries[3]: entry is empty");
        let s: Status = ServiceError::Overloaded {
            queued: 10,
            capacity: 10,
        }
        .into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        let s: Status = ServiceError::Unavailable("db down".into()).into();
        assert_eq!(s.code(), Code::Unavailable);
    }
}
