use std::fmt;
use std::path::PathBuf;

use merklog_merkle::Hash;
use merklog_sth::LogId;

/// Everything a verifying client can fail with.
///
/// Text that came from the log (a status message, a transport error's
/// cause) or from a file is shown with its control characters escaped
/// ([`Escaped`]), so a hostile log cannot drive the user's terminal through
/// an error message; the variants keep it as it came, for matching.
///
/// The variants fall in two classes, told apart by
/// [`ClientError::is_verification_failure`]: the log (or a saved file) failed
/// a check — a bad signature, a fork, a rollback, a proof that does not
/// verify, data that does not hash to what was claimed — or the check could
/// not be made at all (no connection, an error status, unreadable input).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The log could not be reached.
    #[error("cannot connect to the log at {endpoint}: {}", Escaped(.reason))]
    Transport { endpoint: String, reason: String },
    /// The log answered with an error status.
    #[error("the log answered {code:?}: {}", Escaped(.message))]
    Status { code: tonic::Code, message: String },
    /// The call failed on this side before the log answered: a refused TLS
    /// handshake, a connection that broke or was refused.
    #[error("the call to the log failed before it answered ({code:?}): {}", Escaped(.message))]
    Connection { code: tonic::Code, message: String },
    /// The log sent a message that cannot be read: a hash of the wrong
    /// length, a missing field.
    #[error("the log sent a malformed response: {field}: {}", Escaped(.reason))]
    Malformed { field: String, reason: String },
    /// The log answered something other than what was asked: another index,
    /// another tree size, another leaf.
    #[error("the log answered with {field} = {got}, but {expected} was asked for")]
    Unexpected {
        field: String,
        expected: String,
        got: String,
    },
    /// A tree head or key belongs to another log than the pinned one.
    #[error("{what} belongs to log {got}, not to the pinned log {expected}: check the server address and the public key")]
    WrongLog {
        what: String,
        expected: LogId,
        got: LogId,
    },
    /// A tree head's signature does not verify with the pinned key.
    #[error("bad signature: the tree head of size {tree_size} (root {root_hash}) is not signed by the pinned key of log {log_id}: {reason}")]
    BadSignature {
        tree_size: u64,
        root_hash: Hash,
        log_id: LogId,
        reason: String,
    },
    /// Two signed heads that cannot both be true: the same size with two
    /// roots, or a larger head whose consistency proof from the trusted one
    /// does not verify. The log shows different views to different clients,
    /// or rewrote its history.
    #[error("fork: the tree head of size {new_size} (root {new_root}) is not consistent with the trusted head of size {trusted_size} (root {trusted_root}): {reason}")]
    Fork {
        trusted_size: u64,
        trusted_root: Hash,
        new_size: u64,
        new_root: Hash,
        reason: String,
    },
    /// The log's latest head is smaller than one it signed before.
    #[error("rollback: the log's latest tree head has size {new_size} (root {new_root}), smaller than the trusted head of size {trusted_size} (root {trusted_root}) it signed before")]
    Rollback {
        trusted_size: u64,
        trusted_root: Hash,
        new_size: u64,
        new_root: Hash,
    },
    /// An inclusion proof does not verify. `proof` is the proof that was
    /// checked, kept as evidence.
    #[error("bad inclusion proof: leaf {leaf_index} (hash {leaf_hash}) in the tree of size {tree_size}: {reason}")]
    InclusionProof {
        leaf_index: u64,
        tree_size: u64,
        leaf_hash: Hash,
        proof: Vec<Hash>,
        reason: Box<merklog_merkle::Error>,
    },
    /// A consistency proof between two given heads does not verify.
    #[error("bad consistency proof from size {first_size} to size {second_size}: {reason}")]
    ConsistencyProof {
        first_size: u64,
        second_size: u64,
        reason: Box<merklog_merkle::Error>,
    },
    /// A proof or entry does not match the tree head it is checked against.
    #[error("{what}: the proof says {claimed} but the tree head says {head}")]
    HeadMismatch {
        what: String,
        claimed: String,
        head: String,
    },
    /// An entry's bytes do not hash to the leaf hash served with it.
    #[error("bad entry: leaf {leaf_index}'s bytes hash to {computed}, but the log says its leaf hash is {claimed}")]
    LeafHash {
        leaf_index: u64,
        claimed: Hash,
        computed: Hash,
    },
    /// The log's entries do not hash to the root its signed head claims.
    #[error("root mismatch: the log's entries [0, {tree_size}) hash to {computed}, but its signed head of that size says {signed}")]
    RootMismatch {
        tree_size: u64,
        computed: Hash,
        signed: Hash,
    },
    /// The log holds fewer entries than its signed head covers.
    #[error("missing entries: the signed head covers {tree_size} entries but the log served only {served}")]
    MissingEntries { tree_size: u64, served: u64 },
    /// The log signed no tree head at a size a check needs.
    #[error(
        "the log has no signed tree head at size {tree_size}; use a size at which it published one"
    )]
    NoSignedHead { tree_size: u64 },
    /// A saved tree head, proof or state could not be read.
    #[error("{what}: {}", Escaped(.reason))]
    Input { what: String, reason: String },
    /// The state file could not be read or written.
    #[error("state file {}: {}", path.display(), Escaped(.reason))]
    State { path: PathBuf, reason: String },
    /// The head saved in the state file fails its check with the pinned key
    /// (`reason` is [`ClientError::BadSignature`] or
    /// [`ClientError::WrongLog`]). The saved state is at fault, not the log:
    /// the key changed, or the file was edited or swapped.
    #[error("state file {}: the saved tree head fails its check, so the saved state (not the log) is at fault: {reason}. The public key may have changed, or the file was edited: check --public-key; keep the file as evidence, and start a new state file only if you trust the new key", path.display())]
    BadState {
        path: PathBuf,
        reason: Box<ClientError>,
    },
    /// The log dated a head further past this machine's clock than the
    /// allowed skew. A log that signs heads in the future can make every
    /// later honest head look as if time went back; a client that trusted
    /// one would raise that alarm on every later check.
    #[error("future head: the log signed the tree head of size {tree_size} at {timestamp_ms} ms since the Unix epoch, {} ms past this machine's clock ({now_ms} ms), more than the allowed skew of {max_skew_ms} ms (--max-clock-skew); a log must not date its heads in the future: check this machine's clock, and keep the signed head as evidence", timestamp_ms.saturating_sub(*now_ms))]
    FutureHead {
        tree_size: u64,
        timestamp_ms: u64,
        now_ms: u64,
        max_skew_ms: u64,
    },
    /// A bearer token was to be sent in clear text (`http://`) to a host
    /// that is not this machine: anyone on the path could read and replay
    /// it. Loopback addresses (127.0.0.0/8, ::1, `localhost`) are allowed.
    #[error("refusing to send the bearer token in clear text to {endpoint}: use an https:// address (with --tls-ca), or pass --allow-insecure-token if every network path to the log is trusted")]
    InsecureToken { endpoint: String },
    /// The log dated the head of a larger tree before the head of a smaller
    /// one: a replayed or back-dated head (RFC 6962, section 3.5, requires
    /// each new head to be more recent).
    #[error("time went back: the log signed the tree of size {large_size} at {large_ms} ms, before the smaller tree of size {small_size} at {small_ms} ms; a log's heads must not go back in time as it grows: keep both signed heads as evidence")]
    TimeWentBack {
        small_size: u64,
        small_ms: u64,
        large_size: u64,
        large_ms: u64,
    },
    /// The log signed a head larger than the trusted one but refused, time
    /// after time, to prove the trusted tree a prefix of it: a log that
    /// cannot prove consistency may have forked.
    #[error("consistency refused: the log signed a tree head of size {second_size} but refused {refusals} times in a row to prove it consistent with the tree of size {first_size} (last answer {code:?}: {}); a log that cannot prove consistency may have forked: keep both signed heads as evidence and ask the log's operator", Escaped(.message))]
    ConsistencyRefused {
        first_size: u64,
        second_size: u64,
        refusals: u32,
        code: tonic::Code,
        message: String,
    },
    /// A leaf the log served as an event is not a canonical event leaf.
    #[error("bad event: leaf {leaf_index} is not a canonical event leaf: {}", Escaped(.reason))]
    BadEvent { leaf_index: u64, reason: String },
    /// The log stored (or says it stored) another event than the one sent.
    #[error("event mismatch at leaf {leaf_index}: {}", Escaped(.reason))]
    EventMismatch { leaf_index: u64, reason: String },
    /// A search answer the query does not allow: a hit that does not match
    /// its filters, window or cursor, hits out of order, a cursor that
    /// skips, more hits than asked.
    #[error("bad search answer{}: {}", .leaf_index.map(|i| format!(" at leaf {i}")).unwrap_or_default(), Escaped(.reason))]
    SearchMismatch {
        leaf_index: Option<u64>,
        reason: String,
    },
    /// An entry a bundle or an entries file must hold is not there.
    #[error("entry {index} missing from {what}")]
    EntryMissing { index: u64, what: String },
    /// An entry stands where another belongs (entries swapped or out of
    /// order).
    #[error("entry {found} is out of place in {what}: entry {expected} belongs there (entries swapped or reordered)")]
    EntryOutOfPlace {
        found: u64,
        expected: u64,
        what: String,
    },
    /// Entries that a signed head must cover come without it: the log (or
    /// whoever made the bundle) withheld the head at `tree_size`.
    #[error(
        "head at size {tree_size} withheld: entries {first}..{tree_size} have no covering head"
    )]
    HeadWithheld { tree_size: u64, first: u64 },
    /// An entry's integration time breaks the time rule against its heads
    /// (`reason` names the bounds).
    #[error("{reason}")]
    EntryTime { index: u64, reason: String },
    /// The entries of an export bundle do not hash to a head's root.
    #[error("root mismatch: entries {first}..{tree_size} (on the bundle's left border) give root {computed}, but the signed head of size {tree_size} says {signed}: an entry in that range was changed, swapped, added or removed")]
    WindowRoot {
        first: u64,
        tree_size: u64,
        computed: Hash,
        signed: Hash,
    },
    /// An export bundle of the wrong shape, or whose heads do not fix the
    /// window's ends.
    #[error("export bundle: {}", Escaped(.reason))]
    Bundle { reason: String },
}

impl ClientError {
    /// Returns true when the log or a saved document failed a check (exit
    /// code 1 in the CLI); false when the check could not be made (exit 2).
    pub fn is_verification_failure(&self) -> bool {
        match self {
            ClientError::Transport { .. }
            | ClientError::Status { .. }
            | ClientError::Connection { .. }
            | ClientError::NoSignedHead { .. }
            | ClientError::Input { .. }
            | ClientError::InsecureToken { .. }
            | ClientError::State { .. } => false,
            ClientError::Malformed { .. }
            | ClientError::Unexpected { .. }
            | ClientError::WrongLog { .. }
            | ClientError::BadSignature { .. }
            | ClientError::Fork { .. }
            | ClientError::Rollback { .. }
            | ClientError::InclusionProof { .. }
            | ClientError::ConsistencyProof { .. }
            | ClientError::HeadMismatch { .. }
            | ClientError::LeafHash { .. }
            | ClientError::RootMismatch { .. }
            | ClientError::MissingEntries { .. }
            | ClientError::BadState { .. }
            | ClientError::TimeWentBack { .. }
            | ClientError::FutureHead { .. }
            | ClientError::ConsistencyRefused { .. }
            | ClientError::BadEvent { .. }
            | ClientError::EventMismatch { .. }
            | ClientError::SearchMismatch { .. } => true,
            ClientError::EntryMissing { .. }
            | ClientError::EntryOutOfPlace { .. }
            | ClientError::HeadWithheld { .. }
            | ClientError::EntryTime { .. }
            | ClientError::WindowRoot { .. }
            | ClientError::Bundle { .. } => true,
        }
    }

    /// Returns a short, stable name of the variant, for JSON output and
    /// scripts: `fork`, `rollback`, `bad_signature`, ….
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Transport { .. } => "transport",
            ClientError::Status { .. } => "status",
            ClientError::Connection { .. } => "connection",
            ClientError::Malformed { .. } => "malformed",
            ClientError::Unexpected { .. } => "unexpected",
            ClientError::WrongLog { .. } => "wrong_log",
            ClientError::BadSignature { .. } => "bad_signature",
            ClientError::Fork { .. } => "fork",
            ClientError::Rollback { .. } => "rollback",
            ClientError::InclusionProof { .. } => "bad_inclusion_proof",
            ClientError::ConsistencyProof { .. } => "bad_consistency_proof",
            ClientError::HeadMismatch { .. } => "head_mismatch",
            ClientError::LeafHash { .. } => "bad_entry",
            ClientError::RootMismatch { .. } => "root_mismatch",
            ClientError::MissingEntries { .. } => "missing_entries",
            ClientError::NoSignedHead { .. } => "no_signed_head",
            ClientError::Input { .. } => "input",
            ClientError::State { .. } => "state",
            ClientError::BadState { .. } => "bad_state",
            ClientError::TimeWentBack { .. } => "time_went_back",
            ClientError::FutureHead { .. } => "future_head",
            ClientError::InsecureToken { .. } => "insecure_token",
            ClientError::ConsistencyRefused { .. } => "consistency_refused",
            ClientError::BadEvent { .. } => "bad_event",
            ClientError::EventMismatch { .. } => "event_mismatch",
            ClientError::SearchMismatch { .. } => "bad_search_answer",
            ClientError::EntryMissing { .. } => "entry_missing",
            ClientError::EntryOutOfPlace { .. } => "entry_out_of_place",
            ClientError::HeadWithheld { .. } => "head_withheld",
            ClientError::EntryTime { .. } => "entry_time",
            ClientError::WindowRoot { .. } => "window_root",
            ClientError::Bundle { .. } => "bad_bundle",
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        // A status made on this side from a transport failure says only
        // "transport error"; the cause (a refused TLS handshake, say) is in
        // its sources, and the user needs it. A status that came over the
        // wire has no source.
        let local = std::error::Error::source(&status).is_some();
        if local {
            let mut message = status.message().to_owned();
            append_causes(&mut message, std::error::Error::source(&status));
            ClientError::Connection {
                code: status.code(),
                message: with_hint(message),
            }
        } else {
            ClientError::Status {
                code: status.code(),
                message: status.message().to_owned(),
            }
        }
    }
}

/// Appends to `text` the chain of causes from `source`, each once: the
/// wrappers of hyper, h2 and tonic often repeat their cause's text (or
/// wrap an error whose text is their own), and one cause per message is
/// what a user can act on.
pub(crate) fn append_causes(
    text: &mut String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) {
    while let Some(s) = source {
        let part = s.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
}

/// Adds what to do to a connection failure that shows a TLS/plain-text
/// mismatch: a TLS record read as HTTP/2, or HTTP/2 read as TLS.
pub(crate) fn with_hint(mut text: String) -> String {
    let hint = if text.contains("frame with invalid size") {
        Some("the server may speak TLS: use an https:// address with --tls-ca")
    } else if text.contains("InvalidContentType") {
        Some("the server does not seem to speak TLS: use an http:// address, or check the port")
    } else {
        None
    };
    if let Some(hint) = hint {
        text.push_str(" (");
        text.push_str(hint);
        text.push(')');
    }
    text
}

impl From<merklog_proto::ConversionError> for ClientError {
    fn from(e: merklog_proto::ConversionError) -> Self {
        match e {
            merklog_proto::ConversionError::HashLength { field, got } => ClientError::Malformed {
                field,
                reason: format!("a hash must be 32 bytes, got {got}"),
            },
            merklog_proto::ConversionError::Missing { field } => ClientError::Malformed {
                field,
                reason: "missing".to_owned(),
            },
            merklog_proto::ConversionError::Invalid { field, reason } => {
                ClientError::Malformed { field, reason }
            }
        }
    }
}

/// Shows text from outside (a log's status message, a file's contents)
/// with its control characters escaped, so that printing it cannot move the
/// cursor, clear the screen, set the window title or fake a line of output:
/// C0 controls, DEL and C1 controls. Newline, carriage return and tab become
/// `\n`, `\r` and `\t`; other C0 controls and DEL `\x1b`-style; C1
/// controls `\u{9b}`-style. Everything else, backslashes included, is shown
/// as it is.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut start = 0;
        for (at, c) in self.0.char_indices().filter(|(_, c)| c.is_control()) {
            f.write_str(&self.0[start..at])?;
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if u32::from(c) < 0x80 => write!(f, "\\x{:02x}", u32::from(c))?,
                c => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            }
            start = at + c.len_utf8();
        }
        f.write_str(&self.0[start..])
    }
}

/// The result of every client operation.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_the_log_are_escaped() {
        assert_eq!(
            Escaped("a\u{1b}[2J\nb\rc\td\u{7f}e\u{9b}f\u{0}g é \\n").to_string(),
            "a\\x1b[2J\\nb\\rc\\td\\x7fe\\u{9b}f\\x00g é \\n"
        );
        // A status message that would clear the screen and fake a line.
        let hostile = "denied\u{1b}[2J\nmerklog: OK: verified";
        let e = ClientError::from(tonic::Status::permission_denied(hostile));
        let text = e.to_string();
        assert!(!text.contains(|c: char| c.is_control()), "{text:?}");
        assert!(
            text.ends_with("denied\\x1b[2J\\nmerklog: OK: verified"),
            "{text}"
        );
        // The variant keeps the text as it came, for matching.
        assert!(matches!(e, ClientError::Status { message, .. } if message == hostile));
        for e in [
            ClientError::Transport {
                endpoint: "x".into(),
                reason: hostile.into(),
            },
            ClientError::Input {
                what: "tree head".into(),
                reason: hostile.into(),
            },
            ClientError::ConsistencyRefused {
                first_size: 1,
                second_size: 2,
                refusals: 3,
                code: tonic::Code::Internal,
                message: hostile.into(),
            },
        ] {
            let text = e.to_string();
            assert!(!text.contains(|c: char| c.is_control()), "{text:?}");
        }
    }

    /// An error whose text is `text`, caused by `source`.
    #[derive(Debug)]
    struct Chain(&'static str, Option<Box<Chain>>);

    impl fmt::Display for Chain {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Chain {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|c| c as _)
        }
    }

    #[test]
    fn each_cause_is_said_once_with_a_hint_for_a_tls_mismatch() {
        // hyper-util wraps its io::Error in an error of the same text.
        let refused = Chain(
            "transport error",
            Some(Box::new(Chain(
                "tcp connect error",
                Some(Box::new(Chain(
                    "tcp connect error",
                    Some(Box::new(Chain("Connection refused (os error 111)", None))),
                ))),
            ))),
        );
        let mut text = refused.to_string();
        append_causes(&mut text, std::error::Error::source(&refused));
        assert_eq!(
            text,
            "transport error: tcp connect error: Connection refused (os error 111)"
        );
        assert_eq!(with_hint(text.clone()), text);
        assert!(with_hint("h2: frame with invalid size".into())
            .ends_with("(the server may speak TLS: use an https:// address with --tls-ca)"));
        assert!(
            with_hint("received corrupt message of type InvalidContentType".into())
                .ends_with("use an http:// address, or check the port)")
        );
    }

    #[test]
    fn statuses_made_here_are_connection_failures_not_answers() {
        // What tonic makes of a failure on this side: the cause is a source.
        let broken: Box<dyn std::error::Error + Send + Sync> =
            Box::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        let local = tonic::Status::from_error(broken);
        let e = ClientError::from(local);
        assert!(matches!(e, ClientError::Connection { .. }), "{e:?}");
        assert_eq!(e.kind(), "connection");
        assert!(!e.is_verification_failure());
        assert!(e.to_string().contains("failed before it answered"), "{e}");

        let answered = ClientError::from(tonic::Status::not_found("no such leaf"));
        assert!(
            matches!(&answered, ClientError::Status { code: tonic::Code::NotFound, message } if message == "no such leaf"),
            "{answered:?}"
        );
    }
}
