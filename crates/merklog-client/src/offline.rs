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
/// must verify with `key`, and any two of the same size must have the same
/// root. With a proof and more than one head, every head must be of a size
/// the proof names, so that none is given and then left unchecked.
///
/// # Errors
/// [`ClientError::BadSignature`] or [`ClientError::WrongLog`] for a head;
/// [`ClientError::Fork`] for two heads of the same size with different
/// roots; [`ClientError::InclusionProof`] or
/// [`ClientError::ConsistencyProof`] for a proof that does not verify;
/// [`ClientError::HeadMismatch`] when the proof names another size or root
/// than the head's; [`ClientError::Input`] when no given head has the size
/// the proof needs, or a head has a size the proof does not name.
pub fn verify_saved(
    key: &PublicKey,
    proof: Option<&ProofJson>,
    heads: &[TreeHeadJson],
) -> Result<Verified> {
    let heads = heads
        .iter()
        .map(|h| verify_head_json(key, h))
        .collect::<Result<Vec<_>>>()?;
    check_no_fork(&heads)?;
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
            check_all_used(&heads, &[p.tree_size], "inclusion proof")?;
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
            check_all_used(&heads, &[p.first_size, p.second_size], "consistency proof")?;
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

/// Fails when two of `heads` have the same size and different roots: both
/// are signed, so the log has shown two different trees.
fn check_no_fork(heads: &[VerifiedHead]) -> Result<()> {
    for (i, a) in heads.iter().enumerate() {
        for (j, b) in heads.iter().enumerate().skip(i + 1) {
            if a.tree_size() == b.tree_size() && a.root_hash() != b.root_hash() {
                return Err(ClientError::Fork {
                    trusted_size: a.tree_size(),
                    trusted_root: a.root_hash(),
                    new_size: b.tree_size(),
                    new_root: b.root_hash(),
                    reason: format!(
                        "the tree heads given as #{} and #{} are both validly signed and of the \
                         same size but have different roots: keep both as evidence",
                        i + 1,
                        j + 1
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Fails when, among several `heads`, one has none of the `sizes` the proof
/// is about: it would not be checked against anything, and the user who
/// gave it would think it was. A single head is always used (a size that
/// differs from the proof's is then caught as a mismatch).
fn check_all_used(heads: &[VerifiedHead], sizes: &[u64], proof: &str) -> Result<()> {
    if heads.len() < 2 {
        return Ok(());
    }
    if let Some((i, h)) = heads
        .iter()
        .enumerate()
        .find(|(_, h)| !sizes.contains(&h.tree_size()))
    {
        let mut sizes = sizes.to_vec();
        sizes.dedup();
        let sizes = match sizes.as_slice() {
            [one] => format!("size {one}"),
            many => format!(
                "sizes {}",
                many.iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        };
        return Err(ClientError::Input {
            what: "tree heads".into(),
            reason: format!(
                "the tree head given as #{} has size {}, but the {proof} is about {sizes}: it \
                 would not be checked against anything; give only the heads of the proof's sizes",
                i + 1,
                h.tree_size()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{ConsistencyProofJson, InclusionProofJson};
    use merklog_merkle::{consistency_proof, inclusion_proof, leaf_hash, merkle_tree_hash, Hash};
    use merklog_sth::{LogSigner, TreeHead};

    use crate::check::tests::Leaves;

    struct Fixture {
        signer: LogSigner,
        leaves: Leaves,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                signer: LogSigner::generate(&mut rand_core::OsRng),
                leaves: Leaves((0..7u8).map(|i| leaf_hash(&[i])).collect()),
            }
        }

        fn key(&self) -> &PublicKey {
            self.signer.public_key()
        }

        fn head_of(&self, leaves: &[Hash], ts: u64) -> TreeHeadJson {
            let sth = self.signer.sign(TreeHead {
                tree_size: leaves.len() as u64,
                timestamp_ms: ts,
                root_hash: merkle_tree_hash(leaves),
            });
            TreeHeadJson::new(&sth, self.key().log_id())
        }

        fn head(&self, n: usize) -> TreeHeadJson {
            self.head_of(&self.leaves.0[..n], 1)
        }

        /// A validly signed head of size 7 over other entries: a fork of
        /// the fixture's tree.
        fn forked_head(&self) -> TreeHeadJson {
            let mut other = self.leaves.0.clone();
            other[6] = leaf_hash(b"rewritten");
            self.head_of(&other, 2)
        }

        fn inclusion(&self, m: u64, n: u64) -> ProofJson {
            ProofJson::Inclusion(InclusionProofJson {
                leaf_index: m,
                tree_size: n,
                leaf_hash: self.leaves.0[m as usize],
                root_hash: merkle_tree_hash(&self.leaves.0[..n as usize]),
                proof: inclusion_proof(&self.leaves, m, n).unwrap(),
            })
        }

        fn consistency(&self, m: u64, n: u64) -> ProofJson {
            ProofJson::Consistency(ConsistencyProofJson {
                first_size: m,
                second_size: n,
                first_root: merkle_tree_hash(&self.leaves.0[..m as usize]),
                second_root: merkle_tree_hash(&self.leaves.0[..n as usize]),
                proof: consistency_proof(&self.leaves, m, n).unwrap(),
            })
        }
    }

    #[test]
    fn the_usual_documents_verify() {
        let f = Fixture::new();
        let (h4, h7) = (f.head(4), f.head(7));
        let v = verify_saved(f.key(), None, std::slice::from_ref(&h7)).unwrap();
        assert!(matches!(v, Verified::TreeHead { head } if head.tree_size() == 7));
        let v = verify_saved(f.key(), Some(&f.inclusion(5, 7)), std::slice::from_ref(&h7)).unwrap();
        assert!(matches!(v, Verified::Inclusion { leaf_index: 5, .. }));
        let proof = f.consistency(4, 7);
        for heads in [vec![h7.clone()], vec![h7.clone(), h4.clone()], vec![h4, h7]] {
            let v = verify_saved(f.key(), Some(&proof), &heads).unwrap();
            assert!(
                matches!(&v, Verified::Consistency { second_head, .. } if second_head.tree_size() == 7),
                "{v:?}"
            );
        }
        // The same head twice (or re-signed later, same root) is no fork.
        let again = f.head_of(&f.leaves.0, 9);
        verify_saved(f.key(), Some(&f.inclusion(5, 7)), &[f.head(7), again]).unwrap();
    }

    #[test]
    fn two_heads_of_one_size_with_different_roots_are_a_fork() {
        let f = Fixture::new();
        let (h4, h7, forked) = (f.head(4), f.head(7), f.forked_head());
        let cases = [
            (None, vec![h7.clone(), forked.clone()]),
            (Some(f.inclusion(5, 7)), vec![h7.clone(), forked.clone()]),
            (
                Some(f.consistency(4, 7)),
                vec![h7.clone(), h4, forked.clone()],
            ),
        ];
        for (proof, heads) in cases {
            let err = verify_saved(f.key(), proof.as_ref(), &heads).unwrap_err();
            match &err {
                ClientError::Fork {
                    trusted_size: 7,
                    trusted_root,
                    new_size: 7,
                    new_root,
                    reason,
                } => {
                    assert_eq!(*trusted_root, h7.root_hash);
                    assert_eq!(*new_root, forked.root_hash);
                    assert!(reason.contains("#1 and #"), "{reason}");
                }
                other => panic!("expected a fork, got {other:?}"),
            }
            assert!(err.is_verification_failure());
        }
    }

    #[test]
    fn a_head_the_proof_does_not_use_is_refused_not_ignored() {
        let f = Fixture::new();
        let (h4, h5, h7) = (f.head(4), f.head(5), f.head(7));
        let cases = [
            (
                f.inclusion(5, 7),
                vec![h7.clone(), h4.clone()],
                "#2 has size 4",
            ),
            (
                f.inclusion(5, 7),
                vec![h5.clone(), h7.clone()],
                "#1 has size 5",
            ),
            (f.consistency(4, 7), vec![h7, h4, h5], "#3 has size 5"),
        ];
        for (proof, heads, says) in cases {
            let err = verify_saved(f.key(), Some(&proof), &heads).unwrap_err();
            assert!(matches!(err, ClientError::Input { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains(says), "{text}");
            assert!(text.contains("would not be checked"), "{text}");
        }
    }

    #[test]
    fn every_head_given_is_signature_checked() {
        let f = Fixture::new();
        let stranger = LogSigner::generate(&mut rand_core::OsRng);
        let forged = {
            let h = f.head(4);
            TreeHeadJson::new(&stranger.sign(h.to_sth().head), h.log_id)
        };
        let err =
            verify_saved(f.key(), Some(&f.consistency(4, 7)), &[f.head(7), forged]).unwrap_err();
        assert!(
            matches!(err, ClientError::BadSignature { tree_size: 4, .. }),
            "{err:?}"
        );
    }
}
