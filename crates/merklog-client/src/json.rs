//! The JSON documents merklog tools print, save and read back, as
//! `docs/FORMATS.md` describes them: hashes in lowercase hex, signatures in
//! base64 (standard alphabet, padded), timestamps in milliseconds since the
//! Unix epoch, proofs ordered as RFC 9162 §2.1.3 and §2.1.4 order them.
//!
//! Parsing checks every hash's length, so a document that deserializes holds
//! well-formed values; whether they verify is [`crate::offline`]'s job.

use merklog_merkle::Hash;
use merklog_sth::{LogId, SignedTreeHead, TreeHead};
use serde::{Deserialize, Serialize};

/// A signed tree head (RFC 6962 §3.5) with the ID of the log that signed it.
///
/// ```json
/// {"tree_size": 3, "root_hash": "…64 hex…", "timestamp": 1763917200000,
///  "signature": "MEUCIQ…", "log_id": "…64 hex…"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeHeadJson {
    pub tree_size: u64,
    #[serde(with = "hex_hash")]
    pub root_hash: Hash,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// DER-encoded ECDSA P-256 signature over the RFC 6962 §3.5
    /// `TreeHeadSignature`.
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
    #[serde(with = "hex_log_id")]
    pub log_id: LogId,
}

impl TreeHeadJson {
    /// Returns the document for `sth`, signed by the log `log_id`.
    pub fn new(sth: &SignedTreeHead, log_id: LogId) -> Self {
        TreeHeadJson {
            tree_size: sth.head.tree_size,
            root_hash: sth.head.root_hash,
            timestamp: sth.head.timestamp_ms,
            signature: sth.signature.clone(),
            log_id,
        }
    }

    /// Returns the signed tree head the document holds (its signature
    /// unchecked).
    pub fn to_sth(&self) -> SignedTreeHead {
        SignedTreeHead {
            head: TreeHead {
                tree_size: self.tree_size,
                timestamp_ms: self.timestamp,
                root_hash: self.root_hash,
            },
            signature: self.signature.clone(),
        }
    }
}

/// An inclusion proof `PATH(leaf_index, D[tree_size])` (RFC 9162 §2.1.3.1),
/// from the leaf's sibling upward, with the root it leads to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProofJson {
    pub leaf_index: u64,
    pub tree_size: u64,
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    /// `MTH(D[tree_size])`: the root of the signed head the proof is for.
    #[serde(with = "hex_hash")]
    pub root_hash: Hash,
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
}

/// A consistency proof `PROOF(first_size, D[second_size])` (RFC 9162
/// §2.1.4.1) with the two roots it links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProofJson {
    pub first_size: u64,
    pub second_size: u64,
    #[serde(with = "hex_hash")]
    pub first_root: Hash,
    #[serde(with = "hex_hash")]
    pub second_root: Hash,
    #[serde(with = "hex_hashes")]
    pub proof: Vec<Hash>,
}

/// One entry of the log, as `merklog entries` prints it: the data in base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryJson {
    pub leaf_index: u64,
    #[serde(with = "hex_hash")]
    pub leaf_hash: Hash,
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
    /// When the log integrated the entry, in ms since the Unix epoch.
    pub integrated_ms: u64,
}

/// Either kind of saved proof, told apart by their fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProofJson {
    Inclusion(InclusionProofJson),
    Consistency(ConsistencyProofJson),
}

/// Serde for a [`Hash`] as 64 lowercase hex digits (upper case accepted).
pub mod hex_hash {
    use merklog_merkle::Hash;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes lowercase hex.
    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(hash)
    }

    /// Reads 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// Serde for a list of hashes in hex.
pub mod hex_hashes {
    use merklog_merkle::Hash;
    use serde::{de::Error as _, ser::SerializeSeq, Deserialize, Deserializer, Serializer};

    /// Writes a list of lowercase hex strings.
    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(hashes.len()))?;
        for h in hashes {
            seq.serialize_element(&h.to_string())?;
        }
        seq.end()
    }

    /// Reads a list of 64-hex-digit strings, naming the bad element.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        let items = Vec::<String>::deserialize(d)?;
        items
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse()
                    .map_err(|e| D::Error::custom(format!("proof[{i}]: {e}")))
            })
            .collect()
    }
}

/// Serde for a [`LogId`] as 64 lowercase hex digits.
pub mod hex_log_id {
    use merklog_sth::LogId;
    use serde::{Deserializer, Serializer};

    /// Writes lowercase hex.
    pub fn serialize<S: Serializer>(id: &LogId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    /// Reads 64 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LogId, D::Error> {
        super::hex_hash::deserialize(d).map(|h| LogId(h.0))
    }
}

/// Serde for bytes as standard, padded base64.
pub mod base64_bytes {
    use base64::Engine as _;
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Reads base64.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map_err(|e| D::Error::custom(format!("not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TreeHeadJson {
        TreeHeadJson {
            tree_size: 3,
            root_hash: Hash([0xab; 32]),
            timestamp: 1_763_917_200_000,
            signature: vec![0x30, 0x45, 0x02],
            log_id: LogId([0x01; 32]),
        }
    }

    #[test]
    fn tree_head_has_the_documented_shape() {
        let v = serde_json::to_value(head()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "tree_size": 3,
                "root_hash": "ab".repeat(32),
                "timestamp": 1_763_917_200_000u64,
                "signature": "MEUC",
                "log_id": "01".repeat(32),
            })
        );
        let back: TreeHeadJson = serde_json::from_value(v).unwrap();
        assert_eq!(back, head());
        assert_eq!(TreeHeadJson::new(&back.to_sth(), back.log_id), back);
    }

    #[test]
    fn proofs_round_trip_and_are_told_apart() {
        let inclusion = InclusionProofJson {
            leaf_index: 1,
            tree_size: 3,
            leaf_hash: Hash([1; 32]),
            root_hash: Hash([2; 32]),
            proof: vec![Hash([3; 32]), Hash([4; 32])],
        };
        let text = serde_json::to_string(&inclusion).unwrap();
        assert!(text.contains(&format!("\"proof\":[\"{}\",", "03".repeat(32))));
        let parsed: ProofJson = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, ProofJson::Inclusion(inclusion));

        let consistency = ConsistencyProofJson {
            first_size: 2,
            second_size: 3,
            first_root: Hash([5; 32]),
            second_root: Hash([6; 32]),
            proof: vec![Hash([7; 32])],
        };
        let text = serde_json::to_string(&consistency).unwrap();
        let parsed: ProofJson = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, ProofJson::Consistency(consistency));
    }

    #[test]
    fn bad_hashes_are_rejected_with_their_position() {
        let text = format!(
            r#"{{"leaf_index":0,"tree_size":2,"leaf_hash":"{h}","root_hash":"{h}","proof":["{h}","abcd"]}}"#,
            h = "00".repeat(32)
        );
        let err = serde_json::from_str::<InclusionProofJson>(&text).unwrap_err();
        assert!(err.to_string().contains("proof[1]"), "{err}");
        let text = r#"{"tree_size":1,"root_hash":"zz","timestamp":0,"signature":"","log_id":""}"#;
        assert!(serde_json::from_str::<TreeHeadJson>(text).is_err());
        let mut v = serde_json::to_value(head()).unwrap();
        v["signature"] = "not base64!".into();
        assert!(serde_json::from_value::<TreeHeadJson>(v).is_err());
    }
}
