//! RFC 8785 JSON Canonicalization Scheme.

use serde_json::Value;

use crate::EventError;

/// Returns the RFC 8785 canonical form of `v`.
///
/// # Errors
/// [`EventError::Invalid`] when a number cannot be represented.
pub fn to_canonical(v: &Value) -> Result<Vec<u8>, EventError> {
    let _ = v;
    unimplemented!()
}
