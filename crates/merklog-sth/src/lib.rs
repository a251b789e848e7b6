//! Signed tree heads as RFC 6962 §3.5 defines them, signed with ECDSA P-256
//! over SHA-256 and DER-encoded, so any RFC 6962 verifier can check them.
//!
//! This crate is pure: it does not read key files (callers hand it PEM or DER
//! text) and does not know where heads are stored. Key generation takes the
//! random number generator as a parameter.

use std::fmt;

use merklog_merkle::Hash;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use sha2::{Digest, Sha256};
/// Re-exported: private key text leaves this crate wrapped in it, and
/// callers keep the key text they read in it.
pub use zeroize::Zeroizing;

/// Everything that can go wrong with keys and signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A private key could not be read as PKCS#8 (PEM or DER) for P-256.
    #[error("not a PKCS#8 ECDSA P-256 private key: {reason}")]
    PrivateKey { reason: String },
    /// A public key could not be read as a SubjectPublicKeyInfo (PEM or DER) for P-256.
    #[error("not an ECDSA P-256 public key (SubjectPublicKeyInfo PEM or DER): {reason}")]
    PublicKey { reason: String },
    /// The signature bytes are not a DER-encoded ECDSA signature.
    #[error("signature is not a DER-encoded ECDSA signature")]
    MalformedSignature,
    /// The signature is well formed but does not verify for this head and key.
    #[error("signature does not verify for tree head (size {tree_size}, root {root_hash}) with log {log_id}")]
    BadSignature {
        tree_size: u64,
        root_hash: Hash,
        log_id: LogId,
    },
}

/// The fields of a tree head that are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// The number of leaves in the tree.
    pub tree_size: u64,
    /// Milliseconds since the Unix epoch, as RFC 6962 defines `timestamp`.
    pub timestamp_ms: u64,
    /// `MTH(D[tree_size])`.
    pub root_hash: Hash,
}

/// The `signature_type` of a tree head in RFC 6962 §3.2: `tree_hash(1)`.
const SIGNATURE_TYPE_TREE_HASH: u8 = 1;
/// RFC 6962 `Version v1(0)`.
const VERSION_V1: u8 = 0;

impl TreeHead {
    /// The length of [`TreeHead::signed_bytes`].
    pub const SIGNED_LEN: usize = 2 + 8 + 8 + 32;

    /// Returns the TLS encoding of RFC 6962 §3.5 `TreeHeadSignature`: the
    /// bytes that are signed.
    pub fn signed_bytes(&self) -> [u8; Self::SIGNED_LEN] {
        let mut out = [0u8; Self::SIGNED_LEN];
        out[0] = VERSION_V1;
        out[1] = SIGNATURE_TYPE_TREE_HASH;
        out[2..10].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[10..18].copy_from_slice(&self.tree_size.to_be_bytes());
        out[18..].copy_from_slice(self.root_hash.as_bytes());
        out
    }
}

/// A tree head with the log's DER-encoded ECDSA signature over
/// [`TreeHead::signed_bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTreeHead {
    pub head: TreeHead,
    pub signature: Vec<u8>,
}

/// A log's identity: SHA-256 of its DER-encoded public key (RFC 6962 §3.2).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogId(pub [u8; 32]);

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Hash(self.0), f)
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({self})")
    }
}

/// A log's public key: what verifiers pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    der: Vec<u8>,
}

impl PublicKey {
    fn from_verifying_key(key: VerifyingKey) -> Self {
        let der = key
            .to_public_key_der()
            .expect("a valid P-256 point always encodes")
            .into_vec();
        PublicKey { key, der }
    }

    /// Reads a SubjectPublicKeyInfo in DER.
    ///
    /// # Errors
    /// [`Error::PublicKey`] when the bytes are not a P-256 public key.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        VerifyingKey::from_public_key_der(der)
            .map(Self::from_verifying_key)
            .map_err(|e| Error::PublicKey {
                reason: e.to_string(),
            })
    }

    /// Reads a SubjectPublicKeyInfo in PEM (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`Error::PublicKey`] when the text is not a P-256 public key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self::from_verifying_key)
            .map_err(|e| Error::PublicKey {
                reason: e.to_string(),
            })
    }

    /// Returns the DER-encoded SubjectPublicKeyInfo.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Returns the PEM-encoded SubjectPublicKeyInfo.
    pub fn pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("a valid P-256 point always encodes")
    }

    /// Returns the log ID: SHA-256 of the DER public key.
    pub fn log_id(&self) -> LogId {
        LogId(Sha256::digest(&self.der).into())
    }

    /// Checks `sth`'s signature.
    ///
    /// # Errors
    /// [`Error::MalformedSignature`] when the signature is not DER ECDSA;
    /// [`Error::BadSignature`] when it does not verify.
    pub fn verify(&self, sth: &SignedTreeHead) -> Result<(), Error> {
        let signature =
            Signature::from_der(&sth.signature).map_err(|_| Error::MalformedSignature)?;
        self.key
            .verify(&sth.head.signed_bytes(), &signature)
            .map_err(|_| Error::BadSignature {
                tree_size: sth.head.tree_size,
                root_hash: sth.head.root_hash,
                log_id: self.log_id(),
            })
    }
}

/// A log's private key, which signs tree heads.
#[derive(Clone)]
pub struct LogSigner {
    key: SigningKey,
    public: PublicKey,
}

impl fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("LogSigner")
            .field("log_id", &self.public.log_id())
            .finish_non_exhaustive()
    }
}

impl LogSigner {
    fn from_signing_key(key: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        LogSigner { key, public }
    }

    /// Generates a new key with `rng`.
    pub fn generate(rng: &mut impl rand_core::CryptoRngCore) -> Self {
        Self::from_signing_key(SigningKey::random(rng))
    }

    /// Reads a PKCS#8 private key in PEM (`-----BEGIN PRIVATE KEY-----`).
    /// The decoded copies made here are wiped; `pem` is the caller's to wipe
    /// (keep it in a [`Zeroizing`]).
    ///
    /// # Errors
    /// [`Error::PrivateKey`] when the text is not a PKCS#8 P-256 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(Self::from_signing_key)
            .map_err(|e| Error::PrivateKey {
                reason: e.to_string(),
            })
    }

    /// Returns the key as PKCS#8 PEM, wiped from memory when dropped.
    /// Whoever writes it must protect it, and must not copy it into a plain
    /// `String` (which would be freed without being wiped).
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("a valid P-256 key always encodes")
    }

    /// Returns the matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `head` (ECDSA P-256 with SHA-256, deterministic per RFC 6979).
    pub fn sign(&self, head: TreeHead) -> SignedTreeHead {
        let signature: DerSignature = self.key.sign(&head.signed_bytes());
        SignedTreeHead {
            head,
            signature: signature.as_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LogSigner {
        // A fixed key keeps the test deterministic.
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        LogSigner::from_signing_key(key)
    }

    fn head() -> TreeHead {
        TreeHead {
            tree_size: 8,
            timestamp_ms: 1_700_000_000_123,
            root_hash: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
                .parse()
                .unwrap(),
        }
    }

    #[test]
    fn signed_bytes_follow_rfc6962_tree_head_signature() {
        let bytes = head().signed_bytes();
        assert_eq!(bytes[0], 0, "version v1");
        assert_eq!(bytes[1], 1, "signature_type tree_hash");
        assert_eq!(&bytes[2..10], &1_700_000_000_123u64.to_be_bytes());
        assert_eq!(&bytes[10..18], &8u64.to_be_bytes());
        assert_eq!(&bytes[18..], head().root_hash.as_bytes());
    }

    #[test]
    fn sign_then_verify_and_reject_tampering() {
        let s = signer();
        let sth = s.sign(head());
        s.public_key().verify(&sth).unwrap();

        let mut other = sth.clone();
        other.head.tree_size += 1;
        assert!(matches!(
            s.public_key().verify(&other),
            Err(Error::BadSignature { .. })
        ));

        let mut other = sth.clone();
        other.head.root_hash.0[0] ^= 1;
        assert!(matches!(
            s.public_key().verify(&other),
            Err(Error::BadSignature { .. })
        ));

        let mut other = sth.clone();
        other.signature[3] ^= 0x40;
        assert!(s.public_key().verify(&other).is_err());

        let mut other = sth.clone();
        other.signature.truncate(5);
        assert_eq!(
            s.public_key().verify(&other),
            Err(Error::MalformedSignature)
        );

        let stranger = LogSigner::from_signing_key(SigningKey::from_slice(&[9u8; 32]).unwrap());
        assert!(matches!(
            stranger.public_key().verify(&sth),
            Err(Error::BadSignature { .. })
        ));
    }

    #[test]
    fn keys_round_trip_through_pem_and_der() {
        let s = signer();
        // The PEM text comes wrapped, so that it is wiped when dropped.
        let pem: Zeroizing<String> = s.to_pkcs8_pem();
        let again = LogSigner::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.public_key(), s.public_key());
        let public = PublicKey::from_pem(&s.public_key().pem()).unwrap();
        assert_eq!(&public, s.public_key());
        assert_eq!(PublicKey::from_der(s.public_key().der()).unwrap(), public);
        assert_eq!(
            public.log_id().0,
            <[u8; 32]>::from(Sha256::digest(public.der()))
        );
        assert!(LogSigner::from_pkcs8_pem("nonsense").is_err());
        assert!(PublicKey::from_der(&[1, 2, 3]).is_err());
    }

    #[test]
    fn generated_keys_differ() {
        let a = LogSigner::generate(&mut rand_core::OsRng);
        let b = LogSigner::generate(&mut rand_core::OsRng);
        assert_ne!(a.public_key(), b.public_key());
    }
}
