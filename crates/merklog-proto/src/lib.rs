//! The merklog gRPC API, generated from `proto/merklog/v1/log.proto`, and the
//! one place where wire messages become domain types.
//!
//! Every byte field that holds a hash is checked here, once, and a bad one is
//! reported with the field's name so a caller's error says what was wrong.

use merklog_merkle::Hash;
use merklog_sth::{LogId, SignedTreeHead, TreeHead};

/// Generated messages, client and server for package `merklog.v1`.
pub mod v1 {
    #![allow(clippy::all, reason = "generated code")]
    tonic::include_proto!("merklog.v1");
}

pub mod events;

/// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/merklog_descriptor.bin"));

/// A wire message that cannot become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// A hash field does not hold exactly 32 bytes.
    #[error("{field}: a hash must be 32 bytes, got {got}")]
    HashLength { field: String, got: usize },
    /// A required message field is absent.
    #[error("{field}: missing")]
    Missing { field: String },
    /// A field holds a value its type does not allow: JSON text that does
    /// not parse, an unknown enum value, a field only the log may set.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

/// Reads a 32-byte hash from the wire field `field`.
///
/// # Errors
/// [`ConversionError::HashLength`] naming `field` when the length is wrong.
pub fn hash_from_wire(bytes: &[u8], field: &str) -> Result<Hash, ConversionError> {
    Hash::from_slice(bytes).map_err(|_| ConversionError::HashLength {
        field: field.to_owned(),
        got: bytes.len(),
    })
}

/// Reads a list of hashes, naming the bad element (`field[i]`) on error.
///
/// # Errors
/// [`ConversionError::HashLength`] for the first element of the wrong length.
pub fn hashes_from_wire(items: &[Vec<u8>], field: &str) -> Result<Vec<Hash>, ConversionError> {
    items
        .iter()
        .enumerate()
        .map(|(i, b)| hash_from_wire(b, &format!("{field}[{i}]")))
        .collect()
}

/// Puts hashes on the wire.
pub fn hashes_to_wire(hashes: &[Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.0.to_vec()).collect()
}

/// Puts a signed tree head on the wire with the log's ID.
pub fn sth_to_wire(sth: &SignedTreeHead, log_id: &LogId) -> v1::SignedTreeHead {
    v1::SignedTreeHead {
        tree_size: sth.head.tree_size,
        root_hash: sth.head.root_hash.0.to_vec(),
        timestamp_ms: sth.head.timestamp_ms,
        signature: sth.signature.clone(),
        log_id: log_id.0.to_vec(),
    }
}

/// Reads a signed tree head from the wire field `field`. The signature is not
/// checked here; that is the verifier's job.
///
/// # Errors
/// [`ConversionError::HashLength`] for a malformed root hash.
pub fn sth_from_wire(
    sth: &v1::SignedTreeHead,
    field: &str,
) -> Result<SignedTreeHead, ConversionError> {
    Ok(SignedTreeHead {
        head: TreeHead {
            tree_size: sth.tree_size,
            timestamp_ms: sth.timestamp_ms,
            root_hash: hash_from_wire(&sth.root_hash, &format!("{field}.root_hash"))?,
        },
        signature: sth.signature.clone(),
    })
}

/// Reads a required signed tree head (`Option` in prost) from `field`.
///
/// # Errors
/// [`ConversionError::Missing`] when absent, or as [`sth_from_wire`].
pub fn required_sth(
    sth: Option<&v1::SignedTreeHead>,
    field: &str,
) -> Result<SignedTreeHead, ConversionError> {
    let sth = sth.ok_or_else(|| ConversionError::Missing {
        field: field.to_owned(),
    })?;
    sth_from_wire(sth, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_hashes_name_their_field() {
        let err = hashes_from_wire(&[vec![0; 32], vec![0; 3]], "proof").unwrap_err();
        assert_eq!(err.to_string(), "proof[1]: a hash must be 32 bytes, got 3");
        let wire = v1::SignedTreeHead {
            root_hash: vec![1; 31],
            ..Default::default()
        };
        let err = sth_from_wire(&wire, "tree_head").unwrap_err();
        assert_eq!(
            err.to_string(),
            "tree_head.root_hash: a hash must be 32 bytes, got 31"
        );
        assert!(required_sth(None, "tree_head").is_err());
    }

    #[test]
    fn tree_heads_round_trip() {
        let sth = SignedTreeHead {
            head: TreeHead {
                tree_size: 3,
                timestamp_ms: 42,
                root_hash: Hash([9; 32]),
            },
            signature: vec![1, 2, 3],
        };
        let wire = sth_to_wire(&sth, &LogId([7; 32]));
        assert_eq!(wire.log_id, vec![7; 32]);
        assert_eq!(sth_from_wire(&wire, "x").unwrap(), sth);
    }

    #[test]
    fn descriptor_set_is_embedded() {
        assert!(!FILE_DESCRIPTOR_SET.is_empty());
    }
}
