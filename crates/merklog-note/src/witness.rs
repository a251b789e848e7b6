//! The witness side of c2sp.org/tlog-witness §add-checkpoint, pure: the
//! request body, every check in the spec's order, and the HTTP status each
//! refusal takes. Persisting the state atomically with the check is the
//! caller's (the spec's §add-checkpoint race): this module decides, given
//! the state it is shown.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use merklog_merkle::{empty_root, verify_consistency, Hash};

use crate::keys::NoteVerifier;
use crate::{Checkpoint, Note, NoteError};

/// The most consistency proof lines a request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The largest request body read, in bytes: 63 proof lines and a note with
/// room for many signatures.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// A parsed `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub note: Note,
    pub checkpoint: Checkpoint,
}

/// What the witness last cosigned for one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessedHead {
    pub tree_size: u64,
    pub root_hash: Hash,
}

/// Why a witness does not cosign, with the HTTP status the spec assigns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: the body is malformed, or the old size is above the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no trusted signature for the origin, or a trusted one fails.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: the origin is not one the witness follows.
    #[error("unknown origin {0:?}")]
    UnknownOrigin(String),
    /// 409: the old size is not the size the witness last cosigned; the
    /// body is that size and a newline (`text/x.tlog.size`).
    #[error("conflict: the witness last cosigned size {latest}")]
    Conflict { latest: u64 },
    /// 422: the checkpoint is not consistent with what the witness saw.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
}

impl Refusal {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Unprocessable(_) => 422,
        }
    }
}

fn bad(reason: impl Into<String>) -> Refusal {
    Refusal::BadRequest(reason.into())
}

impl AddCheckpoint {
    /// Parses a request body: `old <size>`, up to 63 base64 proof lines, an
    /// empty line, a signed checkpoint note.
    ///
    /// # Errors
    /// [`Refusal::BadRequest`] naming the line or rule broken.
    pub fn parse(body: &[u8]) -> Result<Self, Refusal> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_REQUEST_BYTES} accepted",
                body.len()
            )));
        }
        let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line must be \"old <size>\""))?;
        let leading_zero = old.len() > 1 && old.starts_with('0');
        let old_size = (!leading_zero && old.bytes().all(|b| b.is_ascii_digit()))
            .then(|| old.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                bad(format!(
                    "the old size {old:?} is not a decimal without leading zeros"
                ))
            })?;
        let proof = lines
            .enumerate()
            .map(|(i, l)| {
                STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash)
                    .ok_or_else(|| {
                        bad(format!(
                            "proof line {} is not the base64 of 32 bytes",
                            i + 1
                        ))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad(format!(
                "{} proof lines, more than {MAX_PROOF_LINES}",
                proof.len()
            )));
        }
        let note = Note::parse(note.as_bytes()).map_err(|e| bad(e.to_string()))?;
        let checkpoint = Checkpoint::parse(note.text()).map_err(|e| bad(e.to_string()))?;
        Ok(AddCheckpoint {
            old_size,
            proof,
            note,
            checkpoint,
        })
    }

    /// The request body for this checkpoint note, old size and proof (what
    /// a log sends).
    pub fn body(old_size: u64, proof: &[Hash], note: &Note) -> String {
        let mut s = format!("old {old_size}\n");
        for h in proof {
            s.push_str(&STANDARD.encode(h.0));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&note.to_string());
        s
    }

    /// Runs the spec's checks against the origin's `log_keys` (`None` when
    /// the origin is unknown) and the `latest` head cosigned for it. On
    /// success the caller persists the checkpoint as the new latest (in the
    /// same atomic step as reading `latest`) and cosigns.
    ///
    /// # Errors
    /// The [`Refusal`] the spec prescribes, in its order: 404, 403, 400,
    /// 409, 422.
    pub fn check(
        &self,
        log_keys: Option<&[&dyn NoteVerifier]>,
        latest: Option<WitnessedHead>,
    ) -> Result<WitnessedHead, Refusal> {
        let cp = &self.checkpoint;
        let keys = log_keys.ok_or_else(|| Refusal::UnknownOrigin(cp.origin.clone()))?;
        self.note.verify(keys).map_err(|e| match e {
            NoteError::AmbiguousKey { .. } => {
                Refusal::Forbidden(format!("witness configuration: {e}"))
            }
            _ => Refusal::Forbidden(e.to_string()),
        })?;
        if self.old_size > cp.tree_size {
            return Err(bad(format!(
                "the old size {} is above the checkpoint's size {}",
                self.old_size, cp.tree_size
            )));
        }
        let latest_size = latest.map_or(0, |h| h.tree_size);
        if self.old_size != latest_size {
            return Err(Refusal::Conflict {
                latest: latest_size,
            });
        }
        if cp.tree_size == 0 && cp.root_hash != empty_root() {
            return Err(Refusal::Unprocessable(
                "a checkpoint of size 0 must have the empty tree's root".into(),
            ));
        }
        let new = WitnessedHead {
            tree_size: cp.tree_size,
            root_hash: cp.root_hash,
        };
        let Some(latest) = latest.filter(|h| h.tree_size > 0) else {
            if !self.proof.is_empty() {
                return Err(Refusal::Unprocessable(
                    "the old size is 0: the consistency proof must be empty".into(),
                ));
            }
            return Ok(new);
        };
        if latest.tree_size == cp.tree_size {
            if latest.root_hash != cp.root_hash || !self.proof.is_empty() {
                return Err(Refusal::Unprocessable(format!(
                    "size {} was cosigned with another root (or a proof was sent for equal sizes)",
                    cp.tree_size
                )));
            }
            return Ok(new);
        }
        verify_consistency(
            latest.tree_size,
            cp.tree_size,
            &latest.root_hash,
            &cp.root_hash,
            &self.proof,
        )
        .map_err(|e| {
            Refusal::Unprocessable(format!(
                "no consistency from size {} to {}: {e}",
                latest.tree_size, cp.tree_size
            ))
        })?;
        Ok(new)
    }
}
