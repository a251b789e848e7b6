//! Checkpoint note texts (c2sp.org/tlog-checkpoint §Note text).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use merklog_merkle::Hash;

use crate::{NoteError, Result};

/// A log's tree head as a checkpoint: origin, tree size, RFC 6962 root
/// hash, and optional extension lines (opaque, not auditable: merklog
/// writes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub extensions: Vec<String>,
}

fn malformed(reason: impl Into<String>) -> NoteError {
    NoteError::MalformedCheckpoint {
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// The note text: one line each for origin, size and base64 root, then
    /// the extension lines, each ending in a newline.
    ///
    /// # Errors
    /// [`NoteError::MalformedCheckpoint`] for an empty origin or extension
    /// line, or one holding a newline or another control character.
    pub fn to_text(&self) -> Result<String> {
        check_line("the origin", &self.origin)?;
        for e in &self.extensions {
            check_line("an extension line", e)?;
        }
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            STANDARD.encode(self.root_hash.0)
        );
        for e in &self.extensions {
            text.push_str(e);
            text.push('\n');
        }
        Ok(text)
    }

    /// Parses a checkpoint's note text (without signatures: see
    /// [`crate::Note`]).
    ///
    /// # Errors
    /// [`NoteError::MalformedCheckpoint`] naming the line: fewer than three
    /// lines, an empty line, a size that is not a decimal without leading
    /// zeros, a root that is not the base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<Self> {
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| malformed("the text does not end in a newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() < 3 {
            return Err(malformed(format!(
                "{} lines; origin, size and root hash are needed",
                lines.len()
            )));
        }
        for (i, line) in lines.iter().enumerate() {
            check_line(&format!("line {}", i + 1), line)?;
        }
        let size = lines[1];
        let leading_zero = size.len() > 1 && size.starts_with('0');
        if leading_zero || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed(format!(
                "line 2: the tree size {size:?} is not a decimal number without leading zeros"
            )));
        }
        let tree_size = size
            .parse::<u64>()
            .map_err(|_| malformed(format!("line 2: the tree size {size:?} is over 2^64 - 1")))?;
        let root: [u8; 32] = STANDARD
            .decode(lines[2])
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("line 3: the root hash is not the base64 of 32 bytes"))?;
        Ok(Checkpoint {
            origin: lines[0].to_owned(),
            tree_size,
            root_hash: Hash(root),
            extensions: lines[3..].iter().map(|s| (*s).to_owned()).collect(),
        })
    }
}

fn check_line(what: &str, line: &str) -> Result<()> {
    if line.is_empty() {
        return Err(malformed(format!("{what} is empty")));
    }
    if line.chars().any(|c| c < ' ') {
        return Err(malformed(format!("{what} holds a control character")));
    }
    Ok(())
}
