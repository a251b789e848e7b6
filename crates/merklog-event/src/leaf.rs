use merklog_merkle::Hash;

use crate::{Event, EventError, SALT_LEN};

/// An event with its per-event random salt: the leaf form.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent {
    pub salt: [u8; SALT_LEN],
    pub event: Event,
}

impl SealedEvent {
    /// Returns `ENTRY_PREFIX || JCS({"event": <event json>, "salt": "<base64url, no padding>"})`.
    pub fn entry(&self) -> Vec<u8> {
        unimplemented!()
    }

    /// Returns `SHA-256(0x00 || entry)` (RFC 9162 §2.1.1).
    pub fn leaf_hash(&self) -> Hash {
        merklog_merkle::leaf_hash(&self.entry())
    }

    /// Parses leaf bytes; refuses bytes that are not exactly the canonical form.
    ///
    /// # Errors
    /// [`EventError::NotAnEventLeaf`].
    pub fn parse(entry: &[u8]) -> Result<SealedEvent, EventError> {
        let _ = entry;
        unimplemented!()
    }
}
