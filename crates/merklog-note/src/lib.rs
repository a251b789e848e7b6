//! C2SP signed notes, checkpoints and cosignatures, pure (no I/O).
//!
//! - [`note`]: the signed-note text format (c2sp.org/signed-note): a text,
//!   a blank line, signature lines `— <name> base64(key ID || signature)`.
//! - [`keys`]: key IDs, verifier keys (`name+hex(id)+base64(type || key)`),
//!   and the note signers and verifiers merklog uses: Ed25519 (type 0x01),
//!   ECDSA P-256 over SHA-256 (type 0x02, key ID from the DER public key, as
//!   transparency-dev/witness and Rekor sign), and timestamped Ed25519
//!   cosignatures (type 0x04, c2sp.org/tlog-cosignature).
//! - [`checkpoint`]: the note text of a log's tree head
//!   (c2sp.org/tlog-checkpoint): origin, size, base64 root, extension lines.
//! - [`witness`]: the witness side of c2sp.org/tlog-witness `add-checkpoint`:
//!   the request body and the checks, each refusal with its HTTP status.
//!
//! Verification follows signed-note §Signatures: a signature whose (name,
//! key ID) matches no known key is ignored; one that matches must verify,
//! or the whole note is refused; a note with no verified signature from a
//! known key is refused.
//!
//! Dependencies: `ed25519-dalek` for Ed25519 (RFC 8032), `p256` for ECDSA
//! (already the log's key type), `sha2`, `base64`, `hex`.

pub mod checkpoint;
mod error;
pub mod keys;
pub mod note;
pub mod witness;

pub use checkpoint::Checkpoint;
pub use error::NoteError;
pub use keys::{
    key_id, CosignatureVerifier, EcdsaNoteSigner, Ed25519Cosigner, Ed25519NoteSigner, NoteVerifier,
    SignatureType, VerifierKey,
};
pub use note::{Note, NoteSignature, MAX_NOTE_BYTES, MAX_SIGNATURES};

/// Results of this crate.
pub type Result<T, E = NoteError> = std::result::Result<T, E>;
