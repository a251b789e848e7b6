use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::{CompactRange, Error};

/// A SHA-256 output: the hash of a leaf, an interior node or a tree.
///
/// The length is part of the type, so it is checked once, where bytes or hex
/// enter ([`Hash::from_slice`], [`FromStr`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The number of bytes in a hash.
    pub const LEN: usize = 32;

    /// Returns the hash held in `bytes`.
    ///
    /// # Errors
    /// [`Error::HashLength`] when `bytes` is not exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        <[u8; 32]>::try_from(bytes)
            .map(Hash)
            .map_err(|_| Error::HashLength { got: bytes.len() })
    }

    /// Returns the raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl FromStr for Hash {
    type Err = Error;

    /// Parses 64 hex digits, upper or lower case.
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.len() != 2 * Self::LEN {
            return Err(Error::HashLength { got: s.len() / 2 });
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| Error::HashHex {
            reason: e.to_string(),
        })?;
        Ok(Hash(out))
    }
}

/// Returns the leaf hash `SHA-256(0x00 || data)` (RFC 9162 §2.1.1).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    Hash(h.finalize().into())
}

/// Returns the interior node hash `SHA-256(0x01 || left || right)` (RFC 9162 §2.1.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(&left.0);
    buf[33..].copy_from_slice(&right.0);
    Hash(Sha256::digest(buf).into())
}

/// Returns `MTH({})`, the hash of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// Returns `MTH(D[n])` for the leaves whose leaf hashes are given, in O(n)
/// time and O(log n) memory.
pub fn merkle_tree_hash(leaf_hashes: &[Hash]) -> Hash {
    let mut range = CompactRange::new();
    for h in leaf_hashes {
        range.append(*h, |_, _| {});
    }
    range.root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(
            empty_root().to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = leaf_hash(b"");
        let s = h.to_string();
        assert_eq!(
            s,
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(s.parse::<Hash>().unwrap(), h);
        assert_eq!(s.to_uppercase().parse::<Hash>().unwrap(), h);
        assert!(matches!(
            "abcd".parse::<Hash>(),
            Err(Error::HashLength { got: 2 })
        ));
        let bad = format!("{}zz", &s[..62]);
        assert!(matches!(bad.parse::<Hash>(), Err(Error::HashHex { .. })));
        assert!(matches!(
            Hash::from_slice(&[0u8; 31]),
            Err(Error::HashLength { got: 31 })
        ));
        assert_eq!(Hash::from_slice(h.as_bytes()).unwrap(), h);
    }
}
