//! Checking saved documents with a public key and nothing else: no server,
//! no network. What `merklog verify` runs.

use merklog_sth::PublicKey;

use crate::check::{check_consistency, check_inclusion, verify_head_json, VerifiedHead};
use crate::json::{ProofJson, TreeHeadJson};
use crate::{ClientError, Result};

/// What a successful offline check established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The head's signature is good.
    TreeHead { head: VerifiedHead },
    /// The leaf is in the signed tree.
    Inclusion { head: VerifiedHead, leaf_index: u64 },
    /// The first tree is a prefix of the signed second tree (and is itself
    /// signed when `first_head` is given).
    Consistency {
        first_head: Option<VerifiedHead>,
        second_head: VerifiedHead,
    },
}

/// Parses a document of `docs/FORMATS.md`, naming `what` in the error.
///
/// # Errors
/// [`ClientError::Input`] when the text is not that document.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ClientError::Input {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// Checks a saved tree head and, when given, a saved proof against it.
///
/// `heads` holds the signed heads the proof refers to: for an inclusion
/// proof the head at its tree size; for a consistency proof the head at its
/// second size and, optionally, the one at its first size. Every head given
/// must verify with `key`.
///
/// # Errors
/// [`ClientError::BadSignature`] or [`ClientError::WrongLog`] for a head;
/// [`ClientError::InclusionProof`] or [`ClientError::ConsistencyProof`] for a
/// proof that does not verify; [`ClientError::HeadMismatch`] when the proof
/// names another size or root than the head's; [`ClientError::Input`] when no
/// given head has the size the proof needs.
pub fn verify_saved(
    key: &PublicKey,
    proof: Option<&ProofJson>,
    heads: &[TreeHeadJson],
) -> Result<Verified> {
    let heads = heads
        .iter()
        .map(|h| verify_head_json(key, h))
        .collect::<Result<Vec<_>>>()?;
    let at = |size: u64| heads.iter().find(|h| h.tree_size() == size).cloned();
    let missing = |size: u64| ClientError::Input {
        what: "tree heads".into(),
        reason: format!("the proof needs the signed tree head of size {size}; none was given"),
    };
    match proof {
        None => {
            let head = heads.into_iter().next().ok_or_else(|| ClientError::Input {
                what: "tree heads".into(),
                reason: "give a tree head to verify".into(),
            })?;
            Ok(Verified::TreeHead { head })
        }
        Some(ProofJson::Inclusion(p)) => {
            // With exactly one head given, check against it whatever its
            // size, so a proof that lies about its size is caught as such.
            let head = match heads.as_slice() {
                [only] => only.clone(),
                _ => at(p.tree_size).ok_or_else(|| missing(p.tree_size))?,
            };
            check_inclusion(&head, p)?;
            Ok(Verified::Inclusion {
                head,
                leaf_index: p.leaf_index,
            })
        }
        Some(ProofJson::Consistency(p)) => {
            let second = match heads.as_slice() {
                [only] => only.clone(),
                _ => at(p.second_size).ok_or_else(|| missing(p.second_size))?,
            };
            let first = heads
                .iter()
                .find(|h| h.tree_size() == p.first_size && **h != second)
                .cloned();
            check_consistency(first.as_ref(), &second, p)?;
            Ok(Verified::Consistency {
                first_head: first,
                second_head: second,
            })
        }
    }
}
