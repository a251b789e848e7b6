use thiserror::Error;

/// Why a note, a checkpoint, a key or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    /// The note's text or signature lines break the signed-note format.
    #[error("malformed note: {reason}")]
    MalformedNote { reason: String },
    /// The checkpoint's text breaks the tlog-checkpoint format.
    #[error("malformed checkpoint: {reason}")]
    MalformedCheckpoint { reason: String },
    /// A verifier key string or key material is not usable.
    #[error("bad verifier key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
    /// A key name breaks the rules (empty, spaces or `+`).
    #[error("bad key name {name:?}: it must be non-empty, without spaces or '+'")]
    BadKeyName { name: String },
    /// A signature from a known key did not verify.
    #[error("invalid signature for key {name}+{key_id:08x}")]
    BadSignature { name: String, key_id: u32 },
    /// The note carries no signature from any known key.
    #[error("the note has no signature from a known key (signed by: {signed_by})")]
    NoKnownSignature { signed_by: String },
    /// Two known keys share one name and key ID.
    #[error("ambiguous key {name}+{key_id:08x}: two known keys share its name and ID")]
    AmbiguousKey { name: String, key_id: u32 },
}
