//! Key IDs, verifier keys, and the note signers and verifiers merklog
//! uses (c2sp.org/signed-note §Signatures, §Verifier keys;
//! c2sp.org/tlog-cosignature §Format).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};

use crate::{NoteError, Result};

/// The signature type identifier bytes of signed-note §Signature types
/// that merklog signs or verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SignatureType {
    /// Ed25519 over the note text.
    Ed25519 = 0x01,
    /// ECDSA (here P-256 with SHA-256, ASN.1 DER signature) over the note
    /// text, as github.com/transparency-dev/witness implements it.
    EcdsaP256 = 0x02,
    /// Timestamped Ed25519 checkpoint cosignature (tlog-cosignature).
    CosignatureEd25519 = 0x04,
}

impl SignatureType {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(SignatureType::Ed25519),
            0x02 => Some(SignatureType::EcdsaP256),
            0x04 => Some(SignatureType::CosignatureEd25519),
            _ => None,
        }
    }
}

/// The recommended key ID: `SHA-256(name || 0x0A || type || public key)[:4]`
/// as a big-endian `u32` (signed-note §Signatures). Not used for type 0x02,
/// whose key ID hashes the DER public key alone ([`EcdsaNoteSigner`]).
pub fn key_id(name: &str, signature_type: SignatureType, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', signature_type as u8]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// The key ID of an ECDSA (type 0x02) key: the first four bytes of SHA-256
/// of its DER `SubjectPublicKeyInfo` (signed-note §Signature types).
fn ecdsa_key_id(spki_der: &[u8]) -> u32 {
    let d = Sha256::digest(spki_der);
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Checks a key name: non-empty, no Unicode space, no `+`.
///
/// # Errors
/// [`NoteError::BadKeyName`].
pub fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::BadKeyName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Something that signs note texts under a key name and key ID.
pub trait NoteSigner {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    /// The signature bytes over `text` (without the key ID).
    fn sign(&self, text: &[u8]) -> Vec<u8>;
}

/// Something that checks signatures of one key name and key ID.
pub trait NoteVerifier {
    fn name(&self) -> &str;
    fn key_id(&self) -> u32;
    /// Whether `signature` (without the key ID) is valid over `text`.
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool;
}

/// A verifier key (`<name>+<hex key ID>+<base64(type || public key)>`,
/// signed-note §Verifier keys), parsed and checked: the key ID is the one
/// its type computes, and the key material is a valid key of that type.
#[derive(Debug, Clone)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    key: KeyMaterial,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
    CosignatureEd25519(ed25519_dalek::VerifyingKey),
}

impl VerifierKey {
    /// Parses a verifier key string.
    ///
    /// # Errors
    /// [`NoteError::BadKey`] naming what is wrong: not three `+`-separated
    /// parts, a key ID that is not 8 hex digits, bad base64, an unknown
    /// signature type, key material of the wrong length or not on its
    /// curve, or a key ID that does not match the key.
    pub fn parse(vkey: &str) -> Result<Self> {
        let bad = |reason: &str| NoteError::BadKey {
            key: vkey.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <name>+<key ID>+<base64 key>"));
        };
        check_key_name(name)?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key ID must be 8 hex digits"));
        }
        let stated_id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("bad key ID"))?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| bad("the key is not standard base64"))?;
        let (&type_byte, material) = bytes.split_first().ok_or_else(|| bad("empty key"))?;
        let signature_type =
            SignatureType::from_byte(type_byte).ok_or_else(|| bad("unknown signature type"))?;
        let (key, expected_id) = match signature_type {
            SignatureType::Ed25519 | SignatureType::CosignatureEd25519 => {
                let raw: [u8; 32] = material
                    .try_into()
                    .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
                let k = ed25519_dalek::VerifyingKey::from_bytes(&raw)
                    .map_err(|_| bad("not an Ed25519 public key"))?;
                let id = key_id(name, signature_type, &raw);
                if signature_type == SignatureType::Ed25519 {
                    (KeyMaterial::Ed25519(k), id)
                } else {
                    (KeyMaterial::CosignatureEd25519(k), id)
                }
            }
            SignatureType::EcdsaP256 => {
                let k = p256::ecdsa::VerifyingKey::from_public_key_der(material)
                    .map_err(|_| bad("not a DER P-256 public key (SubjectPublicKeyInfo)"))?;
                (KeyMaterial::EcdsaP256(k), ecdsa_key_id(material))
            }
        };
        if stated_id != expected_id {
            return Err(bad(&format!(
                "the key ID {stated_id:08x} is not the key's ({expected_id:08x})"
            )));
        }
        Ok(VerifierKey {
            name: name.to_owned(),
            key_id: stated_id,
            key,
        })
    }

    /// The key's signature type.
    pub fn signature_type(&self) -> SignatureType {
        match self.key {
            KeyMaterial::Ed25519(_) => SignatureType::Ed25519,
            KeyMaterial::EcdsaP256(_) => SignatureType::EcdsaP256,
            KeyMaterial::CosignatureEd25519(_) => SignatureType::CosignatureEd25519,
        }
    }

    /// For a cosigner's key (type 0x04): the verifier that also reads the
    /// cosignature's timestamp.
    pub fn cosignature_verifier(&self) -> Option<CosignatureVerifier> {
        match &self.key {
            KeyMaterial::CosignatureEd25519(k) => Some(CosignatureVerifier {
                name: self.name.clone(),
                key_id: self.key_id,
                key: *k,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bytes = vec![self.signature_type() as u8];
        match &self.key {
            KeyMaterial::Ed25519(k) | KeyMaterial::CosignatureEd25519(k) => {
                bytes.extend_from_slice(k.as_bytes());
            }
            KeyMaterial::EcdsaP256(k) => bytes.extend_from_slice(&spki_der(k)),
        }
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }
}

impl NoteVerifier for VerifierKey {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            KeyMaterial::Ed25519(k) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|s| k.verify_strict(text, &s).is_ok()),
            KeyMaterial::EcdsaP256(k) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|s| k.verify(text, &s).is_ok()),
            KeyMaterial::CosignatureEd25519(k) => {
                cosignature_timestamp_and_check(k, text, signature).is_some()
            }
        }
    }
}

fn spki_der(k: &p256::ecdsa::VerifyingKey) -> Vec<u8> {
    k.to_public_key_der()
        .expect("a valid P-256 key always encodes")
        .into_vec()
}

/// Signs notes with Ed25519 (type 0x01).
pub struct Ed25519NoteSigner {
    name: String,
    key_id: u32,
    key: ed25519_dalek::SigningKey,
}

impl Ed25519NoteSigner {
    /// A signer named `name` with the Ed25519 key of `seed` (RFC 8032's
    /// 32-byte private key).
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`].
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self> {
        check_key_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Ok(Ed25519NoteSigner {
            name: name.to_owned(),
            key_id: key_id(name, SignatureType::Ed25519, key.verifying_key().as_bytes()),
            key,
        })
    }

    /// The verifier key string of this signer.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: KeyMaterial::Ed25519(self.key.verifying_key()),
        }
    }
}

impl NoteSigner for Ed25519NoteSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, text: &[u8]) -> Vec<u8> {
        self.key.sign(text).to_bytes().to_vec()
    }
}

/// Signs notes with ECDSA P-256 over SHA-256 (type 0x02): an ASN.1 DER
/// signature, key ID from the DER public key, as Rekor and
/// transparency-dev/witness verify.
pub struct EcdsaNoteSigner {
    name: String,
    key_id: u32,
    key: p256::ecdsa::SigningKey,
}

impl EcdsaNoteSigner {
    /// A signer named `name` with the P-256 key `key` (the log's key).
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`].
    pub fn new(name: &str, key: p256::ecdsa::SigningKey) -> Result<Self> {
        check_key_name(name)?;
        Ok(EcdsaNoteSigner {
            name: name.to_owned(),
            key_id: ecdsa_key_id(&spki_der(key.verifying_key())),
            key,
        })
    }

    /// The verifier key string of this signer.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: KeyMaterial::EcdsaP256(*self.key.verifying_key()),
        }
    }
}

impl NoteSigner for EcdsaNoteSigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, text: &[u8]) -> Vec<u8> {
        let signature: p256::ecdsa::Signature = self.key.sign(text);
        signature.to_der().as_bytes().to_vec()
    }
}

/// The message an Ed25519 cosignature signs (tlog-cosignature §Ed25519
/// signed message): `cosignature/v1`, `time <t>`, then the checkpoint text.
fn cosigned_message(timestamp: u64, text: &[u8]) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(text);
    m
}

/// Returns the cosignature's timestamp if `signature` (timestamp || Ed25519
/// signature) is valid over `text`.
fn cosignature_timestamp_and_check(
    key: &ed25519_dalek::VerifyingKey,
    text: &[u8],
    signature: &[u8],
) -> Option<u64> {
    let (time, sig) = signature.split_first_chunk::<8>()?;
    let timestamp = u64::from_be_bytes(*time);
    if timestamp > i64::MAX as u64 {
        return None;
    }
    let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
    key.verify_strict(&cosigned_message(timestamp, text), &sig)
        .ok()
        .map(|()| timestamp)
}

/// Cosigns checkpoints with Ed25519 (type 0x04), as a witness does.
pub struct Ed25519Cosigner {
    name: String,
    key_id: u32,
    key: ed25519_dalek::SigningKey,
    /// The time the next signature states, in POSIX seconds.
    timestamp: u64,
}

impl Ed25519Cosigner {
    /// A cosigner named `name` with the Ed25519 key of `seed`, stating
    /// `timestamp` (POSIX seconds; the caller reads its clock).
    ///
    /// # Errors
    /// [`NoteError::BadKeyName`].
    pub fn new(name: &str, seed: &[u8; 32], timestamp: u64) -> Result<Self> {
        check_key_name(name)?;
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Ok(Ed25519Cosigner {
            name: name.to_owned(),
            key_id: key_id(
                name,
                SignatureType::CosignatureEd25519,
                key.verifying_key().as_bytes(),
            ),
            key,
            timestamp: timestamp.min(i64::MAX as u64),
        })
    }

    /// The verifier key string of this cosigner.
    pub fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: KeyMaterial::CosignatureEd25519(self.key.verifying_key()),
        }
    }
}

impl NoteSigner for Ed25519Cosigner {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, text: &[u8]) -> Vec<u8> {
        let mut out = self.timestamp.to_be_bytes().to_vec();
        out.extend_from_slice(
            &self
                .key
                .sign(&cosigned_message(self.timestamp, text))
                .to_bytes(),
        );
        out
    }
}

/// Verifies Ed25519 cosignatures (type 0x04) and reads their timestamps.
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    name: String,
    key_id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl CosignatureVerifier {
    /// The timestamp a valid cosignature states, or `None` when it is not
    /// valid over `text`.
    pub fn timestamp(&self, text: &[u8], signature: &[u8]) -> Option<u64> {
        cosignature_timestamp_and_check(&self.key, text, signature)
    }
}

impl NoteVerifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        self.timestamp(text, signature).is_some()
    }
}
