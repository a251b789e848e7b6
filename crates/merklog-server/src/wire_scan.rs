//! A streaming look at gRPC request bodies before they are decoded: the
//! length each message declares, and how many top-level protobuf fields it
//! carries.
//!
//! Why: prost decodes a `repeated bytes` field into one `Vec` per element,
//! 24 bytes for 2 wire bytes of an empty entry, so a message within the
//! byte limit could still take ten times its size once decoded. Counting the
//! fields as the bytes arrive bounds the decoded size before any decoding:
//! a message with more fields than a valid request needs is refused.
//!
//! It does not check the message further; the decoder and the service do.

/// What is wrong with a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// A message declares more than the limit (in bytes, without the
    /// 5-byte prefix).
    TooLarge { declared: usize },
    /// A message carries more top-level fields than the limit.
    TooManyFields,
    /// The bytes are not a protobuf message (a field of wire type 6 or 7,
    /// a varint of more than 10 bytes, or a field running past the end of
    /// its message).
    Malformed,
}

/// Where the scan is within a body: a sequence of gRPC messages, each a
/// 5-byte prefix and a protobuf message.
#[derive(Debug, Clone, Copy)]
enum State {
    /// `got` bytes of the prefix read so far.
    Prefix { got: u8, prefix: [u8; 5] },
    /// Reading a field's key (tag and wire type).
    Key { value: u64, shift: u32 },
    /// Skipping a varint value.
    Varint { len: u32 },
    /// Reading the length of a length-delimited field.
    Len { value: u64, shift: u32 },
    /// Skipping this many bytes of a value, or of a whole message that is
    /// not scanned (a compressed one, which the server refuses anyway).
    Skip(u64),
}

/// Scans the bytes of one request body as they arrive.
#[derive(Debug, Clone)]
pub(crate) struct FieldScan {
    max_message: usize,
    max_fields: usize,
    state: State,
    /// Bytes of the current message not yet read.
    remaining: u64,
    /// Top-level fields of the current message so far.
    fields: usize,
    /// Top-level fields of all messages so far.
    total_fields: usize,
}

const NEW_PREFIX: State = State::Prefix {
    got: 0,
    prefix: [0; 5],
};

impl FieldScan {
    /// Returns a scan that refuses messages of more than `max_message`
    /// bytes (without the prefix) or `max_fields` top-level fields.
    pub(crate) fn new(max_message: usize, max_fields: usize) -> Self {
        FieldScan {
            max_message,
            max_fields,
            state: NEW_PREFIX,
            remaining: 0,
            fields: 0,
            total_fields: 0,
        }
    }

    /// Returns how many top-level fields all messages so far carried.
    pub(crate) fn total_fields(&self) -> usize {
        self.total_fields
    }

    /// Reads the next `bytes` of the body.
    ///
    /// # Errors
    /// [`ScanError`] at the first byte that breaks a limit; the scan must
    /// not be fed again after an error.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        let mut rest = bytes;
        while !rest.is_empty() {
            // Whole stretches are skipped at once: entries are mostly data.
            if let State::Skip(n) = self.state {
                let take = n.min(rest.len() as u64);
                rest = &rest[take as usize..];
                self.consumed(take)?;
                self.state = if n == take {
                    self.after_field()
                } else {
                    State::Skip(n - take)
                };
                continue;
            }
            let byte = rest[0];
            rest = &rest[1..];
            self.step(byte)?;
        }
        Ok(())
    }

    /// Counts `n` bytes of the current message as read.
    fn consumed(&mut self, n: u64) -> Result<(), ScanError> {
        self.remaining = self.remaining.checked_sub(n).ok_or(ScanError::Malformed)?;
        Ok(())
    }

    /// The state once a field (or an unscanned message) ends: the next
    /// field, or the next message's prefix.
    fn after_field(&self) -> State {
        if self.remaining == 0 {
            NEW_PREFIX
        } else {
            State::Key { value: 0, shift: 0 }
        }
    }

    fn step(&mut self, byte: u8) -> Result<(), ScanError> {
        if !matches!(self.state, State::Prefix { .. }) {
            self.consumed(1)?;
        }
        self.state = match self.state {
            State::Prefix { got, mut prefix } => {
                prefix[usize::from(got)] = byte;
                if got < 4 {
                    State::Prefix {
                        got: got + 1,
                        prefix,
                    }
                } else {
                    self.start_message(prefix)?
                }
            }
            State::Key { value, shift } => {
                let value = varint_step(value, shift, byte)?;
                if byte & 0x80 != 0 {
                    State::Key {
                        value,
                        shift: shift + 7,
                    }
                } else {
                    self.fields += 1;
                    self.total_fields += 1;
                    if self.fields > self.max_fields {
                        return Err(ScanError::TooManyFields);
                    }
                    match value & 7 {
                        0 => State::Varint { len: 0 },
                        1 => State::Skip(8),
                        2 => State::Len { value: 0, shift: 0 },
                        // Group markers carry no value of their own.
                        3 | 4 => self.after_field(),
                        5 => State::Skip(4),
                        _ => return Err(ScanError::Malformed),
                    }
                }
            }
            State::Varint { len } => {
                // `len` bytes read before this one; a varint has at most 10.
                if len >= 9 && byte & 0x80 != 0 {
                    return Err(ScanError::Malformed);
                }
                if byte & 0x80 != 0 {
                    State::Varint { len: len + 1 }
                } else {
                    self.after_field()
                }
            }
            State::Len { value, shift } => {
                let value = varint_step(value, shift, byte)?;
                if byte & 0x80 != 0 {
                    State::Len {
                        value,
                        shift: shift + 7,
                    }
                } else if value > self.remaining {
                    return Err(ScanError::Malformed);
                } else if value == 0 {
                    self.after_field()
                } else {
                    State::Skip(value)
                }
            }
            State::Skip(_) => unreachable!("skipped in feed"),
        };
        Ok(())
    }

    fn start_message(&mut self, prefix: [u8; 5]) -> Result<State, ScanError> {
        let declared = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
        let declared = declared as usize;
        if declared > self.max_message {
            return Err(ScanError::TooLarge { declared });
        }
        self.remaining = declared as u64;
        self.fields = 0;
        Ok(match (declared, prefix[0]) {
            (0, _) => NEW_PREFIX,
            // Compressed: the transport refuses it before decoding, as no
            // compression is enabled; its bytes are not protobuf.
            (_, flag) if flag != 0 => State::Skip(declared as u64),
            _ => State::Key { value: 0, shift: 0 },
        })
    }
}

/// Adds one byte to a varint of at most 10 bytes.
fn varint_step(value: u64, shift: u32, byte: u8) -> Result<u64, ScanError> {
    if shift > 63 {
        return Err(ScanError::Malformed);
    }
    Ok(value | (u64::from(byte & 0x7f) << shift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use merklog_proto::v1;
    use prost::Message;

    fn framed(message: &impl Message) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn append(entries: Vec<Vec<u8>>) -> Vec<u8> {
        framed(&v1::AppendRequest { entries })
    }

    /// Feeds `bytes` in pieces of `piece` bytes.
    fn scan(bytes: &[u8], piece: usize, max_fields: usize) -> Result<(), ScanError> {
        let mut s = FieldScan::new(1 << 20, max_fields);
        bytes.chunks(piece).try_for_each(|c| s.feed(c))
    }

    #[test]
    fn valid_requests_pass_in_any_pieces() {
        let body = append((0..10u8).map(|i| vec![i; 300]).collect());
        let request = framed(&v1::GetInclusionProofsRequest {
            leaves: (0..5)
                .map(|i| v1::LeafRef {
                    leaf: Some(v1::leaf_ref::Leaf::LeafIndex(i * 1000)),
                })
                .collect(),
            tree_size: 1 << 40,
        });
        let two = [body.clone(), request.clone()].concat();
        for piece in [1, 2, 3, 7, 64, 5000] {
            assert_eq!(scan(&body, piece, 10), Ok(()));
            assert_eq!(scan(&request, piece, 6), Ok(()));
            assert_eq!(scan(&two, piece, 10), Ok(()));
        }
    }

    #[test]
    fn ten_byte_varints_pass() {
        let request = framed(&v1::GetEntriesRequest {
            start: u64::MAX,
            end: u64::MAX,
        });
        for piece in [1, 3, 100] {
            assert_eq!(scan(&request, piece, 2), Ok(()));
        }
    }

    #[test]
    fn many_empty_entries_are_refused_before_decoding() {
        // 2 wire bytes per entry: what made decoding cost 24 bytes for 2.
        let body = append(vec![Vec::new(); 1001]);
        for piece in [1, 100, 16384] {
            assert_eq!(scan(&body, piece, 1000), Err(ScanError::TooManyFields));
        }
        let mut s = FieldScan::new(1 << 20, 1000);
        s.feed(&append(vec![vec![1]; 7])).unwrap();
        assert_eq!(s.total_fields(), 7);
        assert_eq!(scan(&append(vec![Vec::new(); 1000]), 7, 1000), Ok(()));
    }

    #[test]
    fn the_declared_length_is_checked_from_the_prefix() {
        let mut s = FieldScan::new(100, 10);
        assert_eq!(
            s.feed(&[0, 0, 0, 0, 101]),
            Err(ScanError::TooLarge { declared: 101 })
        );
        let mut s = FieldScan::new(100, 10);
        assert_eq!(s.feed(&[0, 0, 0, 0, 100]), Ok(()));
    }

    #[test]
    fn malformed_messages_are_refused() {
        // Wire type 7; a length past the message; an 11-byte varint.
        for body in [
            vec![0, 0, 0, 0, 1, 0x0f],
            vec![0, 0, 0, 0, 2, 0x0a, 0x05],
            [vec![0, 0, 0, 0, 12, 0x08], vec![0xff; 11]].concat(),
        ] {
            assert_eq!(scan(&body, 1, 10), Err(ScanError::Malformed), "{body:?}");
        }
    }

    #[test]
    fn compressed_messages_are_skipped() {
        let body = [vec![1, 0, 0, 0, 4], vec![0x0f; 4]].concat();
        assert_eq!(scan(&body, 2, 1), Ok(()));
    }
}
