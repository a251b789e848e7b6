//! The signed-note format (c2sp.org/signed-note §Format, §Signatures).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::keys::{check_key_name, NoteSigner, NoteVerifier};
use crate::{NoteError, Result};

/// The most signature lines a note may carry. The spec asks verifiers to
/// accept at least 16 and to bound the number; Go's `sumdb/note` refuses
/// more than 100, and so does this crate.
pub const MAX_SIGNATURES: usize = 100;

/// The largest note accepted, in bytes: 100 post-quantum signatures of
/// about 5 kB fit, with room for the text.
pub const MAX_NOTE_BYTES: usize = 1024 * 1024;

/// The signature line's lead: an em dash and a space.
const SIGNATURE_LEAD: &str = "\u{2014} ";

/// One signature line: `— <name> base64(key ID || signature)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    /// The key ID: the first four bytes of the line's base64, big-endian.
    pub key_id: u32,
    /// The signature proper (after the key ID).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line as the note carries it, with its newline.
    pub fn line(&self) -> String {
        let mut bytes = Vec::with_capacity(4 + self.signature.len());
        bytes.extend_from_slice(&self.key_id.to_be_bytes());
        bytes.extend_from_slice(&self.signature);
        format!("{SIGNATURE_LEAD}{} {}\n", self.name, STANDARD.encode(bytes))
    }
}

/// A signed note: its text (ending in a newline) and its signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    text: String,
    pub signatures: Vec<NoteSignature>,
}

fn malformed(reason: impl Into<String>) -> NoteError {
    NoteError::MalformedNote {
        reason: reason.into(),
    }
}

impl Note {
    /// A note of `text` with no signature yet.
    ///
    /// # Errors
    /// [`NoteError::MalformedNote`] when the text is empty, does not end in a
    /// newline or holds a control character other than newline.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        check_text(&text)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Parses a signed note. Signatures are not verified (see
    /// [`Note::verify`]).
    ///
    /// # Errors
    /// [`NoteError::MalformedNote`] naming the rule broken: over
    /// [`MAX_NOTE_BYTES`], not UTF-8, a control character, no blank line
    /// before the signatures, a signature line out of form, no signature,
    /// more than [`MAX_SIGNATURES`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(malformed(format!(
                "{} bytes, more than the {MAX_NOTE_BYTES} accepted",
                bytes.len()
            )));
        }
        let all = std::str::from_utf8(bytes).map_err(|_| malformed("not UTF-8"))?;
        if let Some(c) = all.chars().find(|&c| c < ' ' && c != '\n') {
            return Err(malformed(format!(
                "control character U+{:04X} (only newline is allowed)",
                c as u32
            )));
        }
        // The text ends at the last blank line: signature lines are never
        // empty, so the last "\n\n" is the separator.
        let split = all
            .rfind("\n\n")
            .ok_or_else(|| malformed("no blank line between the text and the signatures"))?;
        let (text, signatures) = (&all[..=split], &all[split + 2..]);
        check_text(text)?;
        if signatures.is_empty() {
            return Err(malformed("no signature lines"));
        }
        if !signatures.ends_with('\n') {
            return Err(malformed(
                "the last signature line does not end in a newline",
            ));
        }
        let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(malformed(format!(
                "{} signatures, more than the {MAX_SIGNATURES} accepted",
                lines.len()
            )));
        }
        let signatures = lines
            .into_iter()
            .enumerate()
            .map(|(i, line)| {
                parse_signature_line(line)
                    .map_err(|r| malformed(format!("signature line {}: {r}", i + 1)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Adds `signer`'s signature over the text, replacing an earlier one of
    /// the same name and key ID.
    pub fn sign(&mut self, signer: &dyn NoteSigner) {
        let signature = NoteSignature {
            name: signer.name().to_owned(),
            key_id: signer.key_id(),
            signature: signer.sign(self.text.as_bytes()),
        };
        self.signatures
            .retain(|s| !(s.name == signature.name && s.key_id == signature.key_id));
        self.signatures.push(signature);
    }

    /// Checks the signatures against `verifiers`: a signature whose name and
    /// key ID match no verifier is ignored; one that matches must verify.
    /// Returns, for each verifier, whether a signature of it verified.
    ///
    /// # Errors
    /// [`NoteError::BadSignature`] when a known key's signature fails;
    /// [`NoteError::NoKnownSignature`] when none verified;
    /// [`NoteError::AmbiguousKey`] when two verifiers share name and ID.
    pub fn verify(&self, verifiers: &[&dyn NoteVerifier]) -> Result<Vec<bool>> {
        for (i, a) in verifiers.iter().enumerate() {
            if verifiers[..i]
                .iter()
                .any(|b| b.name() == a.name() && b.key_id() == a.key_id())
            {
                return Err(NoteError::AmbiguousKey {
                    name: a.name().to_owned(),
                    key_id: a.key_id(),
                });
            }
        }
        let mut verified = vec![false; verifiers.len()];
        for s in &self.signatures {
            let Some(k) = verifiers
                .iter()
                .position(|v| v.name() == s.name && v.key_id() == s.key_id)
            else {
                continue;
            };
            if !verifiers[k].verify(self.text.as_bytes(), &s.signature) {
                return Err(NoteError::BadSignature {
                    name: s.name.clone(),
                    key_id: s.key_id,
                });
            }
            verified[k] = true;
        }
        if !verified.contains(&true) {
            let signed_by = self
                .signatures
                .iter()
                .map(|s| format!("{}+{:08x}", s.name, s.key_id))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(NoteError::NoKnownSignature { signed_by });
        }
        Ok(verified)
    }
}

impl fmt::Display for Note {
    /// The note as text: the text, a blank line, the signature lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            f.write_str(&s.line())?;
        }
        Ok(())
    }
}

fn check_text(text: &str) -> Result<()> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(malformed("the text must be non-empty and end in a newline"));
    }
    if let Some(c) = text.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(malformed(format!(
            "control character U+{:04X} in the text",
            c as u32
        )));
    }
    Ok(())
}

fn parse_signature_line(line: &str) -> std::result::Result<NoteSignature, String> {
    let rest = line
        .strip_prefix(SIGNATURE_LEAD)
        .ok_or("does not start with an em dash and a space")?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or("no space between the key name and the signature")?;
    check_key_name(name).map_err(|e| e.to_string())?;
    let bytes = STANDARD
        .decode(b64)
        .map_err(|e| format!("the signature is not standard base64: {e}"))?;
    if bytes.len() < 5 {
        return Err(format!(
            "{} bytes of signature: a key ID and at least one byte are needed",
            bytes.len()
        ));
    }
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        signature: bytes[4..].to_vec(),
    })
}
