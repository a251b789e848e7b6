//! The checks themselves, pure and shared by the online client and the
//! offline `verify`: a head's signature and log, a proof against a head, and
//! whether a new head may follow a trusted one.

use std::time::Duration;

use merklog_merkle::{verify_consistency, verify_inclusion, Hash};
use merklog_sth::{LogId, PublicKey, SignedTreeHead};

use crate::json::{ConsistencyProofJson, InclusionProofJson, TreeHeadJson};
use crate::{ClientError, Result};

/// A signed tree head whose signature verified with the pinned key and whose
/// log ID is the pinned log's.
///
/// The only way to get one is [`verify_head`]: holding a `VerifiedHead`
/// means both checks passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHead {
    sth: SignedTreeHead,
    log_id: LogId,
}

impl VerifiedHead {
    /// Returns the number of leaves the head covers.
    pub fn tree_size(&self) -> u64 {
        self.sth.head.tree_size
    }

    /// Returns `MTH(D[tree_size])`.
    pub fn root_hash(&self) -> Hash {
        self.sth.head.root_hash
    }

    /// Returns the head's timestamp in ms since the Unix epoch.
    pub fn timestamp_ms(&self) -> u64 {
        self.sth.head.timestamp_ms
    }

    /// Returns the signed head.
    pub fn sth(&self) -> &SignedTreeHead {
        &self.sth
    }

    /// Returns the ID of the log that signed it.
    pub fn log_id(&self) -> LogId {
        self.log_id
    }

    /// Returns the head as the JSON document of `docs/FORMATS.md`.
    pub fn to_json(&self) -> TreeHeadJson {
        TreeHeadJson::new(&self.sth, self.log_id)
    }
}

/// Checks that `sth`, which claims to be from log `claimed_log`, is signed by
/// `key` and that `claimed_log` is `key`'s log.
///
/// # Errors
/// [`ClientError::WrongLog`] when the log IDs differ;
/// [`ClientError::BadSignature`] when the signature is malformed or does not
/// verify.
pub fn verify_head(
    key: &PublicKey,
    sth: &SignedTreeHead,
    claimed_log: LogId,
) -> Result<VerifiedHead> {
    let log_id = key.log_id();
    if claimed_log != log_id {
        return Err(ClientError::WrongLog {
            what: format!("the tree head of size {}", sth.head.tree_size),
            expected: log_id,
            got: claimed_log,
        });
    }
    key.verify(sth).map_err(|e| ClientError::BadSignature {
        tree_size: sth.head.tree_size,
        root_hash: sth.head.root_hash,
        log_id,
        reason: e.to_string(),
    })?;
    Ok(VerifiedHead {
        sth: sth.clone(),
        log_id,
    })
}

/// How far past this machine's clock a log may date a head unless told
/// otherwise: clocks drift, and a head is signed a moment before it is read.
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Checks that `head` is not dated more than `max_skew` after `now_ms`
/// (this machine's clock, in ms since the Unix epoch).
///
/// # Errors
/// [`ClientError::FutureHead`] when it is.
pub fn check_not_future(head: &VerifiedHead, now_ms: u64, max_skew: Duration) -> Result<()> {
    let max_skew_ms = u64::try_from(max_skew.as_millis()).unwrap_or(u64::MAX);
    if head.timestamp_ms() > now_ms.saturating_add(max_skew_ms) {
        return Err(ClientError::FutureHead {
            tree_size: head.tree_size(),
            timestamp_ms: head.timestamp_ms(),
            now_ms,
            max_skew_ms,
        });
    }
    Ok(())
}

/// Checks a saved tree head document with `key`.
///
/// # Errors
/// As [`verify_head`].
pub fn verify_head_json(key: &PublicKey, head: &TreeHeadJson) -> Result<VerifiedHead> {
    verify_head(key, &head.to_sth(), head.log_id)
}

/// Checks that `proof` proves its leaf into the tree of `head`.
///
/// # Errors
/// [`ClientError::HeadMismatch`] when the proof is for another tree size or
/// root than `head`'s; [`ClientError::InclusionProof`] when it does not
/// verify (wrong index, wrong hashes, wrong length).
pub fn check_inclusion(head: &VerifiedHead, proof: &InclusionProofJson) -> Result<()> {
    if proof.tree_size != head.tree_size() {
        return Err(ClientError::HeadMismatch {
            what: "tree size".into(),
            claimed: proof.tree_size.to_string(),
            head: head.tree_size().to_string(),
        });
    }
    if proof.root_hash != head.root_hash() {
        return Err(ClientError::HeadMismatch {
            what: "root hash".into(),
            claimed: proof.root_hash.to_string(),
            head: head.root_hash().to_string(),
        });
    }
    verify_inclusion(
        proof.leaf_index,
        proof.tree_size,
        &proof.leaf_hash,
        &proof.proof,
        &head.root_hash(),
    )
    .map_err(|reason| ClientError::InclusionProof {
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        leaf_hash: proof.leaf_hash,
        proof: proof.proof.clone(),
        reason: Box::new(reason),
    })
}

/// Checks that `proof` links its two roots, and that its second tree is
/// `second`'s and, when given, its first tree is `first`'s.
///
/// # Errors
/// [`ClientError::HeadMismatch`] when a size or root differs from a head's;
/// [`ClientError::ConsistencyProof`] when the proof does not verify.
pub fn check_consistency(
    first: Option<&VerifiedHead>,
    second: &VerifiedHead,
    proof: &ConsistencyProofJson,
) -> Result<()> {
    let mut pairs = vec![(
        "second",
        proof.second_size,
        proof.second_root,
        second.tree_size(),
        second.root_hash(),
    )];
    if let Some(first) = first {
        pairs.push((
            "first",
            proof.first_size,
            proof.first_root,
            first.tree_size(),
            first.root_hash(),
        ));
    }
    for (which, size, root, head_size, head_root) in pairs {
        if size != head_size {
            return Err(ClientError::HeadMismatch {
                what: format!("{which} tree size"),
                claimed: size.to_string(),
                head: head_size.to_string(),
            });
        }
        if root != head_root {
            return Err(ClientError::HeadMismatch {
                what: format!("{which} root"),
                claimed: root.to_string(),
                head: head_root.to_string(),
            });
        }
    }
    verify_consistency(
        proof.first_size,
        proof.second_size,
        &proof.first_root,
        &proof.second_root,
        &proof.proof,
    )
    .map_err(|reason| ClientError::ConsistencyProof {
        first_size: proof.first_size,
        second_size: proof.second_size,
        reason: Box::new(reason),
    })
}

/// Decides whether `new` may follow `trusted`, given the consistency proof
/// the log served from the smaller of the two to the larger (`None` when
/// both have the same size).
///
/// This is the monitor's rule: the same size must have the same root, and a
/// larger tree must prove that the trusted one is its prefix. A smaller tree
/// than the trusted one is checked the same way (it must be a prefix of the
/// trusted tree); whether it is acceptable at all is the caller's decision
/// (the latest head must never shrink: see [`ClientError::Rollback`]).
///
/// # Errors
/// [`ClientError::Fork`] when the two heads cannot both be true;
/// [`ClientError::TimeWentBack`] when the larger tree's head is dated before
/// the smaller one's.
pub fn check_heads_consistent(
    trusted: &VerifiedHead,
    new: &VerifiedHead,
    proof: &[Hash],
) -> Result<()> {
    let fork = |reason: String| ClientError::Fork {
        trusted_size: trusted.tree_size(),
        trusted_root: trusted.root_hash(),
        new_size: new.tree_size(),
        new_root: new.root_hash(),
        reason,
    };
    let (small, large) = if new.tree_size() >= trusted.tree_size() {
        (trusted, new)
    } else {
        (new, trusted)
    };
    if small.tree_size() == large.tree_size() {
        if small.root_hash() != large.root_hash() {
            return Err(fork(
                "two signed heads of the same size have different roots".into(),
            ));
        }
        return Ok(());
    }
    verify_consistency(
        small.tree_size(),
        large.tree_size(),
        &small.root_hash(),
        &large.root_hash(),
        proof,
    )
    .map_err(|e| fork(format!("the log's consistency proof does not verify: {e}")))?;
    // RFC 6962, section 3.5: each new head is more recent than the last. A
    // larger tree signed as older is a replayed or back-dated head.
    if large.timestamp_ms() < small.timestamp_ms() {
        return Err(ClientError::TimeWentBack {
            small_size: small.tree_size(),
            small_ms: small.timestamp_ms(),
            large_size: large.tree_size(),
            large_ms: large.timestamp_ms(),
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use merklog_merkle::{
        consistency_proof, inclusion_proof, leaf_hash, merkle_tree_hash, NodeId, NodeSource,
    };
    use merklog_sth::{LogSigner, TreeHead};

    /// An in-memory tree as a node source.
    pub(crate) struct Leaves(pub Vec<Hash>);

    impl NodeSource for Leaves {
        type Error = ();
        fn node_hashes(&self, ids: &[NodeId]) -> std::result::Result<Vec<Hash>, ()> {
            Ok(ids
                .iter()
                .map(|id| {
                    let a = id.first_leaf() as usize;
                    let b = id.last_leaf() as usize + 1;
                    merkle_tree_hash(&self.0[a..b])
                })
                .collect())
        }
    }

    fn tree(n: u8) -> Leaves {
        Leaves((0..n).map(|i| leaf_hash(&[i])).collect())
    }

    fn head(signer: &LogSigner, leaves: &Leaves, n: usize) -> VerifiedHead {
        let sth = signer.sign(TreeHead {
            tree_size: n as u64,
            timestamp_ms: 1,
            root_hash: merkle_tree_hash(&leaves.0[..n]),
        });
        verify_head(signer.public_key(), &sth, signer.public_key().log_id()).unwrap()
    }

    #[test]
    fn heads_are_checked_for_log_and_signature() {
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let other = LogSigner::generate(&mut rand_core::OsRng);
        let sth = signer.sign(TreeHead {
            tree_size: 1,
            timestamp_ms: 2,
            root_hash: leaf_hash(b"x"),
        });
        let key = signer.public_key();
        assert!(verify_head(key, &sth, key.log_id()).is_ok());
        let err = verify_head(other.public_key(), &sth, other.public_key().log_id()).unwrap_err();
        assert!(
            matches!(err, ClientError::BadSignature { tree_size: 1, .. }),
            "{err}"
        );
        let err = verify_head(key, &sth, other.public_key().log_id()).unwrap_err();
        assert!(matches!(err, ClientError::WrongLog { .. }), "{err}");
    }

    #[test]
    fn heads_dated_past_the_allowed_skew_are_refused() {
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let now = 1_700_000_000_000;
        let skew = Duration::from_secs(300);
        let at = |timestamp_ms| {
            let sth = signer.sign(TreeHead {
                tree_size: 3,
                timestamp_ms,
                root_hash: leaf_hash(b"x"),
            });
            verify_head(signer.public_key(), &sth, signer.public_key().log_id()).unwrap()
        };
        check_not_future(&at(now - 1), now, skew).unwrap();
        check_not_future(&at(now + 300_000), now, skew).unwrap();
        let err = check_not_future(&at(now + 300_001), now, skew).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::FutureHead {
                    tree_size: 3,
                    timestamp_ms: 1_700_000_300_001,
                    now_ms: 1_700_000_000_000,
                    max_skew_ms: 300_000
                }
            ),
            "{err:?}"
        );
        assert!(err.is_verification_failure());
        assert_eq!(err.kind(), "future_head");
        let text = err.to_string();
        assert!(
            text.contains("300001 ms past this machine's clock"),
            "{text}"
        );
        assert!(text.contains("--max-clock-skew"), "{text}");
        // No overflow at the ends of the range.
        check_not_future(&at(u64::MAX), u64::MAX, skew).unwrap();
        check_not_future(&at(0), 0, Duration::MAX).unwrap();
    }

    #[test]
    fn inclusion_and_consistency_accept_good_and_reject_bad() {
        let signer = LogSigner::generate(&mut rand_core::OsRng);
        let leaves = tree(7);
        let h7 = head(&signer, &leaves, 7);
        let h4 = head(&signer, &leaves, 4);
        let good = InclusionProofJson {
            leaf_index: 5,
            tree_size: 7,
            leaf_hash: leaves.0[5],
            root_hash: h7.root_hash(),
            proof: inclusion_proof(&leaves, 5, 7).unwrap(),
        };
        check_inclusion(&h7, &good).unwrap();
        let mut bad = good.clone();
        bad.leaf_index = 4;
        assert!(matches!(
            check_inclusion(&h7, &bad),
            Err(ClientError::InclusionProof { .. })
        ));
        assert!(matches!(
            check_inclusion(&h4, &good),
            Err(ClientError::HeadMismatch { .. })
        ));

        let proof = ConsistencyProofJson {
            first_size: 4,
            second_size: 7,
            first_root: h4.root_hash(),
            second_root: h7.root_hash(),
            proof: consistency_proof(&leaves, 4, 7).unwrap(),
        };
        check_consistency(Some(&h4), &h7, &proof).unwrap();
        check_heads_consistent(&h4, &h7, &proof.proof).unwrap();
        check_heads_consistent(&h7, &h4, &proof.proof).unwrap();
        let mut bad = proof.clone();
        bad.proof[0].0[0] ^= 1;
        assert!(matches!(
            check_consistency(None, &h7, &bad),
            Err(ClientError::ConsistencyProof { .. })
        ));
        assert!(matches!(
            check_heads_consistent(&h4, &h7, &bad.proof),
            Err(ClientError::Fork { .. })
        ));

        // Same size, another root: a fork without any proof.
        let other = {
            let mut leaves = leaves.0.clone();
            leaves[6] = leaf_hash(b"other");
            head(&signer, &Leaves(leaves), 7)
        };
        assert!(matches!(
            check_heads_consistent(&h7, &other, &[]),
            Err(ClientError::Fork { .. })
        ));

        // A larger tree dated before a smaller one, whichever is trusted.
        let dated = |n: usize, timestamp_ms: u64| {
            let sth = signer.sign(TreeHead {
                tree_size: n as u64,
                timestamp_ms,
                root_hash: merkle_tree_hash(&leaves.0[..n]),
            });
            verify_head(signer.public_key(), &sth, signer.public_key().log_id()).unwrap()
        };
        let (h4_late, h7_early) = (dated(4, 2_000), dated(7, 1_000));
        for (trusted, new) in [(&h4_late, &h7_early), (&h7_early, &h4_late)] {
            let err = check_heads_consistent(trusted, new, &proof.proof).unwrap_err();
            assert!(
                matches!(
                    err,
                    ClientError::TimeWentBack {
                        small_size: 4,
                        small_ms: 2_000,
                        large_size: 7,
                        large_ms: 1_000
                    }
                ),
                "{err}"
            );
            assert!(err.is_verification_failure());
        }
        // The same time is not going back.
        check_heads_consistent(&dated(4, 1_000), &h7_early, &proof.proof).unwrap();
    }
}
