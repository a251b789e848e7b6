use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use merklog_merkle::Hash;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::model::UniqueValue;
use crate::{
    jcs, ActorInput, Event, EventError, EventInput, OriginInput, ResourceInput, ENTRY_PREFIX,
    SALT_LEN,
};

/// An event with its per-event random salt: the leaf form.
///
/// The salt makes the leaf hash say nothing about the event on its own: once
/// an event's content is erased from the store, the kept leaf hash cannot be
/// used to confirm a guess of that content, since the guesser would also
/// need 256 random bits.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedEvent {
    pub salt: [u8; SALT_LEN],
    pub event: Event,
}

impl SealedEvent {
    /// Returns the leaf bytes:
    /// `ENTRY_PREFIX || JCS({"event": <event json>, "salt": "<base64url, no padding>"})`.
    pub fn entry(&self) -> Vec<u8> {
        let mut leaf = Map::new();
        leaf.insert("event".into(), self.event.to_json());
        leaf.insert("salt".into(), URL_SAFE_NO_PAD.encode(self.salt).into());
        let mut out = ENTRY_PREFIX.to_vec();
        // Validated events hold only numbers that doubles keep exactly; for
        // a hand-built one with a bigger integer this writes the nearest
        // double, as RFC 8785 does, and `parse` then refuses the leaf.
        jcs::write_value(&Value::Object(leaf), &mut out);
        out
    }

    /// Returns `SHA-256(0x00 || entry)` (RFC 9162 §2.1.1).
    pub fn leaf_hash(&self) -> Hash {
        merklog_merkle::leaf_hash(&self.entry())
    }

    /// Parses leaf bytes, re-validating the event against the limits.
    ///
    /// # Errors
    /// [`EventError::NotAnEventLeaf`] when the bytes do not start with
    /// [`ENTRY_PREFIX`], are not the leaf JSON, hold an event that breaks a
    /// rule, or differ by even one byte from the canonical form that
    /// [`SealedEvent::entry`] writes.
    pub fn parse(entry: &[u8]) -> Result<SealedEvent, EventError> {
        let body = entry.strip_prefix(ENTRY_PREFIX).ok_or_else(|| {
            EventError::NotAnEventLeaf("does not start with \"merklog.event.v1\\n\"".into())
        })?;
        let leaf: LeafJson = serde_json::from_slice(body)
            .map_err(|e| EventError::NotAnEventLeaf(format!("leaf JSON: {e}")))?;
        let salt_bytes = URL_SAFE_NO_PAD.decode(&leaf.salt).map_err(|_| {
            EventError::NotAnEventLeaf("salt: not base64url without padding".into())
        })?;
        let salt = <[u8; SALT_LEN]>::try_from(salt_bytes.as_slice()).map_err(|_| {
            EventError::NotAnEventLeaf(format!(
                "salt: {} bytes, must be {SALT_LEN}",
                salt_bytes.len()
            ))
        })?;
        let e = leaf.event;
        let input = EventInput {
            event_id: Some(e.event_id),
            occurred_at: e.occurred_at,
            actor: e.actor,
            action: e.action,
            resource: e.resource,
            outcome: e.outcome,
            origin: e.origin,
            request_id: e.request_id,
            trace_id: e.trace_id,
            attributes: e.attributes.map(|u| u.0),
        };
        let event = Event::from_input(input, &e.submitted_by, String::new)
            .map_err(|err| EventError::NotAnEventLeaf(format!("event.{err}")))?;
        let sealed = SealedEvent { salt, event };
        if sealed.entry() != entry {
            return Err(EventError::NotAnEventLeaf(
                "not in canonical form (RFC 8785 JSON as merklog.event.v1 writes it)".into(),
            ));
        }
        Ok(sealed)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafJson {
    event: LeafEvent,
    salt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafEvent {
    event_id: String,
    occurred_at: String,
    actor: ActorInput,
    action: String,
    #[serde(default)]
    resource: Option<ResourceInput>,
    outcome: String,
    #[serde(default)]
    origin: Option<OriginInput>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    attributes: Option<UniqueValue>,
    submitted_by: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sealed() -> SealedEvent {
        let input = EventInput::from_json(
            json!({
                "event_id": "evt-1",
                "occurred_at": "2026-12-03T13:45:00Z",
                "actor": {"id": "alice", "kind": "user"},
                "action": "auth.login",
                "outcome": "failure",
                "attributes": {"b": 1.5, "a": "x"}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        SealedEvent {
            salt: [7; SALT_LEN],
            event: Event::from_input(input, "svc:ingest", String::new).unwrap(),
        }
    }

    fn body(sealed: &SealedEvent) -> String {
        String::from_utf8(sealed.entry()[ENTRY_PREFIX.len()..].to_vec()).unwrap()
    }

    #[test]
    fn writes_prefix_then_canonical_json() {
        let s = sealed();
        assert!(s.entry().starts_with(b"merklog.event.v1\n"));
        assert_eq!(
            body(&s),
            r#"{"event":{"action":"auth.login","actor":{"id":"alice","kind":"user"},"attributes":{"a":"x","b":1.5},"event_id":"evt-1","occurred_at":"2026-12-03T13:45:00Z","outcome":"failure","submitted_by":"svc:ingest"},"salt":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc"}"#
        );
        assert_eq!(s.leaf_hash(), merklog_merkle::leaf_hash(&s.entry()));
        assert_eq!(SealedEvent::parse(&s.entry()).unwrap(), s);
    }

    #[test]
    fn a_different_salt_gives_a_different_leaf_hash() {
        let a = sealed();
        let mut b = a.clone();
        b.salt[31] ^= 1;
        assert_ne!(a.leaf_hash(), b.leaf_hash());
    }

    fn parse_err(body: &str) -> String {
        let mut entry = ENTRY_PREFIX.to_vec();
        entry.extend_from_slice(body.as_bytes());
        SealedEvent::parse(&entry).unwrap_err().to_string()
    }

    #[test]
    fn refuses_anything_but_the_canonical_form() {
        let canonical = body(&sealed());
        assert_eq!(
            SealedEvent::parse(canonical.as_bytes())
                .unwrap_err()
                .to_string(),
            "not an event leaf: does not start with \"merklog.event.v1\\n\""
        );
        let non_canonical = [
            canonical.replacen(':', ": ", 1),
            format!("{canonical}\n"),
            canonical.replace(
                r#""attributes":{"a":"x","b":1.5}"#,
                r#""attributes":{"b":1.5,"a":"x"}"#,
            ),
            canonical.replace("1.5", "1.50"),
            canonical.replace(r#""a":"x""#, r#""a":"\u0078""#),
            canonical.replace(r#""outcome""#, r#""origin":{},"outcome""#),
            canonical.replace(r#""outcome""#, r#""request_id":null,"outcome""#),
        ];
        for text in non_canonical {
            let err = parse_err(&text);
            assert!(
                err.starts_with("not an event leaf: not in canonical form"),
                "{text}: {err}"
            );
        }
        assert!(parse_err(
            &canonical.replace("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc", "BwcH")
        )
        .starts_with("not an event leaf: salt: 3 bytes, must be 32"));
        assert!(parse_err(&canonical.replace(
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc",
            "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="
        ))
        .starts_with("not an event leaf: salt: not base64url"));
        assert_eq!(
            parse_err(&canonical.replace(r#""action":"auth.login""#, r#""action":"Auth""#)),
            "not an event leaf: event.action: \"Auth\" must be dot-separated lower-case segments of a-z, 0-9, _ and -, like auth.login"
        );
        assert!(
            parse_err(&canonical.replace(r#""submitted_by""#, r#""extra":1,"submitted_by""#))
                .starts_with("not an event leaf: leaf JSON: unknown field `extra`")
        );
        assert!(parse_err("{}").starts_with("not an event leaf: leaf JSON: missing field"));
    }

    #[test]
    fn refuses_a_leaf_with_a_repeated_name() {
        let canonical = body(&sealed());
        let text = canonical.replace(r#""a":"x","b":1.5"#, r#""a":"x","a":"x","b":1.5"#);
        assert!(parse_err(&text).contains("repeated name \"a\""));
    }
}
