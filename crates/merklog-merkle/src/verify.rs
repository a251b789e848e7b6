//! Proof verification exactly as RFC 9162 §2.1.3.2 and §2.1.4.2 describe it.
//!
//! The proof's length is checked against what `(m, n)` require before any
//! hashing, so a short or long proof is reported as such and not as a root
//! mismatch.

use crate::{consistency_proof_nodes, empty_root, inclusion_proof_nodes, node_hash, Error, Hash};

/// Recomputes the root from leaf `m`'s hash and its inclusion proof in a tree
/// of `n` leaves (RFC 9162 §2.1.3.2, steps 1–4).
///
/// # Errors
/// [`Error::IndexOutOfRange`] when `m >= n`; [`Error::ProofTooShort`] or
/// [`Error::ProofTooLong`] when the proof does not have the length `(m, n)`
/// require.
pub fn root_from_inclusion_proof(
    m: u64,
    n: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
) -> Result<Hash, Error> {
    let expected = inclusion_proof_nodes(m, n)?.proof_len();
    check_len(expected, proof.len())?;
    let (mut f, mut s) = (m, n - 1);
    let mut r = *leaf_hash;
    for p in proof {
        // The length check above guarantees `s > 0` here (step 4a).
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    debug_assert_eq!(s, 0, "a proof of the expected length ends at the root");
    Ok(r)
}

/// Verifies that the leaf with hash `leaf_hash` is leaf `m` of the tree of
/// `n` leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`Error::IndexOutOfRange`], [`Error::ProofTooShort`],
/// [`Error::ProofTooLong`] for malformed input; [`Error::RootMismatch`] when
/// the proof is well formed but leads to another root.
pub fn verify_inclusion(
    m: u64,
    n: u64,
    leaf_hash: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    let computed = root_from_inclusion_proof(m, n, leaf_hash, proof)?;
    if computed != *root {
        return Err(Error::RootMismatch {
            computed,
            expected: *root,
        });
    }
    Ok(())
}

/// Verifies that the tree of `m` leaves with root `first_root` is a prefix of
/// the tree of `n` leaves with root `second_root` (RFC 9162 §2.1.4.2).
///
/// With `m = n` the proof must be empty and the roots equal; with `m = 0` the
/// proof must be empty and `first_root` must be `MTH({})` (the empty tree is a
/// prefix of every tree, so `second_root` is then only checked when `n = 0`).
///
/// # Errors
/// [`Error::SizeOrder`] when `m > n`; [`Error::ProofTooShort`] or
/// [`Error::ProofTooLong`] for a proof of the wrong length;
/// [`Error::FirstRootMismatch`] or [`Error::RootMismatch`] when a well-formed
/// proof leads to other roots.
pub fn verify_consistency(
    m: u64,
    n: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    let expected = consistency_proof_nodes(m, n)?.proof_len();
    check_len(expected, proof.len())?;
    if m == 0 {
        // The empty tree is a prefix of every tree, so nothing constrains
        // `second_root` unless `n = 0` too; but the claim is about the tree
        // whose root is `first_root`, and only `MTH({})` is the root of a tree
        // of size 0.
        roots_match(&empty_root(), first_root, Which::First)?;
        if n == 0 {
            return roots_match(&empty_root(), second_root, Which::Second);
        }
        return Ok(());
    }
    if m == n {
        return roots_match(second_root, first_root, Which::Second);
    }
    // Step 2: a first tree that is a complete subtree is its own first hash.
    let mut path = proof.iter();
    let seed = if m.is_power_of_two() {
        *first_root
    } else {
        *path.next().expect("length checked: a non-empty proof")
    };
    // Steps 3–4.
    let (mut f, mut s) = (m - 1, n - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Steps 5–6.
    let (mut fr, mut sr) = (seed, seed);
    for c in path {
        if s == 0 {
            // Unreachable with the length checked; kept as the RFC's step 6a.
            return Err(Error::ProofTooLong {
                expected,
                got: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    roots_match(&fr, first_root, Which::First)?;
    roots_match(&sr, second_root, Which::Second)
}

fn check_len(expected: usize, got: usize) -> Result<(), Error> {
    match got.cmp(&expected) {
        std::cmp::Ordering::Less => Err(Error::ProofTooShort { expected, got }),
        std::cmp::Ordering::Greater => Err(Error::ProofTooLong { expected, got }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// Which root a consistency check compares.
#[derive(Clone, Copy)]
enum Which {
    First,
    Second,
}

fn roots_match(computed: &Hash, expected: &Hash, which: Which) -> Result<(), Error> {
    let (computed, expected) = (*computed, *expected);
    match (computed == expected, which) {
        (true, _) => Ok(()),
        (false, Which::First) => Err(Error::FirstRootMismatch { computed, expected }),
        (false, Which::Second) => Err(Error::RootMismatch { computed, expected }),
    }
}
