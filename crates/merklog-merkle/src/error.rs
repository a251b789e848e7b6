use crate::Hash;

/// Everything that can go wrong in this crate: malformed input is told apart
/// from a proof that is well formed but does not match the root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A hash was given with the wrong number of bytes or hex digits.
    #[error("a hash must be 32 bytes (64 hex digits), got {got}")]
    HashLength { got: usize },
    /// A hash in hex contained a character that is not a hex digit.
    #[error("a hash must be 64 hex digits: {reason}")]
    HashHex { reason: String },
    /// A leaf index is not inside the tree (`index >= tree_size`).
    #[error("leaf index {index} is out of range for a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    /// A consistency proof was asked for or checked with `m > n`.
    #[error("first tree size {first} is larger than second tree size {second}")]
    SizeOrder { first: u64, second: u64 },
    /// The proof has fewer hashes than `(index, size)` or `(m, n)` require.
    #[error("proof has {got} hashes, {expected} expected: too short")]
    ProofTooShort { expected: usize, got: usize },
    /// The proof has more hashes than `(index, size)` or `(m, n)` require.
    #[error("proof has {got} hashes, {expected} expected: too long")]
    ProofTooLong { expected: usize, got: usize },
    /// The proof is well formed but recomputes a different root.
    #[error("computed root {computed} does not match the expected root {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
    /// For a consistency proof: the proof recomputes a different first root.
    #[error("computed first root {computed} does not match the expected first root {expected}")]
    FirstRootMismatch { computed: Hash, expected: Hash },
    /// A compact range was restored with a hash count that does not match its size.
    #[error("a compact range of size {size} needs {expected} hashes, got {got}")]
    CompactRangeShape {
        size: u64,
        expected: usize,
        got: usize,
    },
    /// A tile path breaks the tlog-tiles layout.
    #[error("bad tile path {path:?}: {reason}")]
    TilePath { path: String, reason: String },
    /// An entry is too long for an entry bundle's 16-bit length prefix.
    #[error("entry {position} is {len} bytes; an entry bundle holds at most 65535")]
    BundleEntryTooLarge { position: usize, len: usize },
    /// An entry bundle's lengths do not add up.
    #[error("malformed entry bundle: {reason}")]
    MalformedBundle { reason: String },
    /// A node source returned a different number of hashes than it was asked for.
    #[error("node source returned {got} hashes for {expected} requested nodes")]
    NodeCount { expected: usize, got: usize },
}
