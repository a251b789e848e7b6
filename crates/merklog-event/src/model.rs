use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::limits::{
    MAX_ACTION_BYTES, MAX_ATTRIBUTES_BYTES, MAX_ATTRIBUTE_DEPTH, MAX_EVENT_ID_BYTES,
    MAX_SAFE_INTEGER, MAX_TEXT_BYTES,
};
use crate::{jcs, EventError, OccurredAt};

/// How the action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
    Unknown,
}

impl Outcome {
    /// Returns the wire name: "success", "failure", "denied" or "unknown".
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = EventError;

    /// Reads a wire name; only the four lower-case names are accepted.
    fn from_str(s: &str) -> Result<Self, EventError> {
        match s {
            "success" => Ok(Outcome::Success),
            "failure" => Ok(Outcome::Failure),
            "denied" => Ok(Outcome::Denied),
            "unknown" => Ok(Outcome::Unknown),
            _ => Err(EventError::invalid(
                "outcome",
                "must be one of success, failure, denied, unknown",
            )),
        }
    }
}

/// Who acted: an identifier and what kind of principal it names
/// (e.g. `user`, `service`, `api_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub kind: String,
}

/// What was acted on: its kind (e.g. `table`, `bucket`) and identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: String,
    pub id: String,
}

/// Where the event came from; every part is optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub service: Option<String>,
    pub host: Option<String>,
    pub source_ip: Option<IpAddr>,
}

impl Origin {
    fn is_empty(&self) -> bool {
        self.service.is_none() && self.host.is_none() && self.source_ip.is_none()
    }
}

/// `actor` as a caller sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ActorInput {
    pub id: String,
    pub kind: String,
}

/// `resource` as a caller sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceInput {
    pub kind: String,
    pub id: String,
}

/// `origin` as a caller sends it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

/// What a caller sends (JSON with these keys; unknown keys refused).
/// Everything the server sets (`submitted_by`, the salt, a missing
/// `event_id`) is absent.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub occurred_at: String,
    pub actor: ActorInput,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInput>,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<OriginInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Any JSON object; a repeated name at any depth is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_names"
    )]
    pub attributes: Option<Value>,
}

impl EventInput {
    /// Reads one event as JSON. This checks the shape only (names, types,
    /// no repeated names in `attributes`); [`Event::from_input`] checks
    /// the values.
    ///
    /// # Errors
    /// [`EventError::Invalid`] for field `event` with serde's message.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        serde_json::from_slice(bytes).map_err(|e| EventError::invalid("event", e.to_string()))
    }
}

/// A validated event, as it appears in its leaf.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event_id: String,
    pub occurred_at: OccurredAt,
    pub actor: Actor,
    pub action: String,
    pub resource: Option<Resource>,
    pub outcome: Outcome,
    pub origin: Origin,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    /// Empty when the caller sent none; omitted from the leaf then.
    pub attributes: Map<String, Value>,
    /// Set by the server from the authenticated principal.
    pub submitted_by: String,
}

impl Event {
    /// Validates every field against the limits; `new_event_id` is called
    /// only when the input has none.
    ///
    /// # Errors
    /// [`EventError::Invalid`] naming the first field that breaks a rule
    /// and the bound.
    pub fn from_input(
        input: EventInput,
        submitted_by: &str,
        new_event_id: impl FnOnce() -> String,
    ) -> Result<Event, EventError> {
        let event_id = input.event_id.unwrap_or_else(new_event_id);
        check_event_id("event_id", &event_id)?;
        let occurred_at = OccurredAt::parse(&input.occurred_at)?;
        check_text("actor.id", &input.actor.id)?;
        check_text("actor.kind", &input.actor.kind)?;
        check_action("action", &input.action)?;
        let resource = match input.resource {
            Some(r) => {
                check_text("resource.kind", &r.kind)?;
                check_text("resource.id", &r.id)?;
                Some(Resource {
                    kind: r.kind,
                    id: r.id,
                })
            }
            None => None,
        };
        let outcome = input.outcome.parse()?;
        let origin = match input.origin {
            Some(o) => {
                check_opt_text("origin.service", o.service.as_deref())?;
                check_opt_text("origin.host", o.host.as_deref())?;
                let source_ip = o
                    .source_ip
                    .as_deref()
                    .map(|ip| {
                        ip.parse::<IpAddr>().map_err(|_| {
                            EventError::invalid(
                                "origin.source_ip",
                                "must be an IPv4 or IPv6 address without port or zone, like 192.0.2.7 or 2001:db8::7",
                            )
                        })
                    })
                    .transpose()?;
                Origin {
                    service: o.service,
                    host: o.host,
                    source_ip,
                }
            }
            None => Origin::default(),
        };
        check_opt_text("request_id", input.request_id.as_deref())?;
        check_opt_text("trace_id", input.trace_id.as_deref())?;
        let attributes = match input.attributes {
            None => Map::new(),
            Some(Value::Object(mut map)) => {
                check_attributes("attributes", &map)?;
                map.values_mut().for_each(integral_numbers_as_integers);
                map
            }
            Some(_) => return Err(EventError::invalid("attributes", "must be a JSON object")),
        };
        check_text("submitted_by", submitted_by)?;
        Ok(Event {
            event_id,
            occurred_at,
            actor: Actor {
                id: input.actor.id,
                kind: input.actor.kind,
            },
            action: input.action,
            resource,
            outcome,
            origin,
            request_id: input.request_id,
            trace_id: input.trace_id,
            attributes,
            submitted_by: submitted_by.to_owned(),
        })
    }

    /// Returns the event object as it appears in the leaf: absent optional
    /// fields are omitted (never `null`), as are an origin with no parts and
    /// empty attributes.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("event_id".into(), self.event_id.clone().into());
        m.insert("occurred_at".into(), self.occurred_at.text().into());
        let mut actor = Map::new();
        actor.insert("id".into(), self.actor.id.clone().into());
        actor.insert("kind".into(), self.actor.kind.clone().into());
        m.insert("actor".into(), actor.into());
        m.insert("action".into(), self.action.clone().into());
        if let Some(r) = &self.resource {
            let mut resource = Map::new();
            resource.insert("kind".into(), r.kind.clone().into());
            resource.insert("id".into(), r.id.clone().into());
            m.insert("resource".into(), resource.into());
        }
        m.insert("outcome".into(), self.outcome.as_str().into());
        if !self.origin.is_empty() {
            let mut origin = Map::new();
            if let Some(s) = &self.origin.service {
                origin.insert("service".into(), s.clone().into());
            }
            if let Some(h) = &self.origin.host {
                origin.insert("host".into(), h.clone().into());
            }
            if let Some(ip) = &self.origin.source_ip {
                origin.insert("source_ip".into(), ip.to_string().into());
            }
            m.insert("origin".into(), origin.into());
        }
        if let Some(r) = &self.request_id {
            m.insert("request_id".into(), r.clone().into());
        }
        if let Some(t) = &self.trace_id {
            m.insert("trace_id".into(), t.clone().into());
        }
        if !self.attributes.is_empty() {
            m.insert("attributes".into(), self.attributes.clone().into());
        }
        m.insert("submitted_by".into(), self.submitted_by.clone().into());
        Value::Object(m)
    }

    /// Returns the input that [`Event::from_input`] turns back into this
    /// event (with its `event_id`), e.g. to re-validate a stored event.
    pub fn to_input(&self) -> EventInput {
        EventInput {
            event_id: Some(self.event_id.clone()),
            occurred_at: self.occurred_at.text().to_owned(),
            actor: ActorInput {
                id: self.actor.id.clone(),
                kind: self.actor.kind.clone(),
            },
            action: self.action.clone(),
            resource: self.resource.as_ref().map(|r| ResourceInput {
                kind: r.kind.clone(),
                id: r.id.clone(),
            }),
            outcome: self.outcome.as_str().to_owned(),
            origin: (!self.origin.is_empty()).then(|| OriginInput {
                service: self.origin.service.clone(),
                host: self.origin.host.clone(),
                source_ip: self.origin.source_ip.map(|ip| ip.to_string()),
            }),
            request_id: self.request_id.clone(),
            trace_id: self.trace_id.clone(),
            attributes: (!self.attributes.is_empty())
                .then(|| Value::Object(self.attributes.clone())),
        }
    }
}

/// Checks a short text field: 1 to [`MAX_TEXT_BYTES`] bytes, no control
/// characters (they would hide or forge lines when an operator reads the
/// log on a terminal).
pub(crate) fn check_text(field: &str, value: &str) -> Result<(), EventError> {
    check_len(field, value, MAX_TEXT_BYTES)?;
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(EventError::invalid(
            field,
            format!("contains the control character U+{:04X}", u32::from(c)),
        ));
    }
    Ok(())
}

fn check_opt_text(field: &str, value: Option<&str>) -> Result<(), EventError> {
    value.map_or(Ok(()), |v| check_text(field, v))
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(EventError::invalid(
            field,
            "must not be empty (leave an optional field out instead)",
        ));
    }
    if value.len() > max {
        return Err(EventError::invalid(
            field,
            format!("{} bytes, at most {max}", value.len()),
        ));
    }
    Ok(())
}

/// Checks an event id: 1 to [`MAX_EVENT_ID_BYTES`] bytes of printable
/// ASCII without spaces, so it can be quoted, logged and used as a key
/// anywhere.
pub(crate) fn check_event_id(field: &str, value: &str) -> Result<(), EventError> {
    check_len(field, value, MAX_EVENT_ID_BYTES)?;
    if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(EventError::invalid(
            field,
            "must be printable ASCII without spaces (0x21 to 0x7E)",
        ));
    }
    Ok(())
}

/// Checks an action: 1 to [`MAX_ACTION_BYTES`] bytes of dot-separated
/// non-empty segments of `[a-z0-9_-]`, e.g. `auth.login`.
pub(crate) fn check_action(field: &str, value: &str) -> Result<(), EventError> {
    check_len(field, value, MAX_ACTION_BYTES)?;
    let ok = value.split('.').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    });
    if !ok {
        return Err(EventError::invalid(
            field,
            format!("{value:?} must be dot-separated lower-case segments of a-z, 0-9, _ and -, like auth.login"),
        ));
    }
    Ok(())
}

/// Checks an attributes object: depth, numbers, canonical size.
pub(crate) fn check_attributes(field: &str, map: &Map<String, Value>) -> Result<(), EventError> {
    let mut path = field.to_owned();
    for (k, v) in map {
        check_attribute_value(v, &mut path, &format!(".{k}"), 2)?;
    }
    let value = Value::Object(map.clone());
    let size = jcs::to_canonical(&value)?.len();
    if size > MAX_ATTRIBUTES_BYTES {
        return Err(EventError::invalid(
            field,
            format!("{size} bytes in canonical form, at most {MAX_ATTRIBUTES_BYTES}"),
        ));
    }
    Ok(())
}

/// `depth` is the nesting depth `v` would have if it is an object or array;
/// the attributes object itself is depth 1.
fn check_attribute_value(
    v: &Value,
    path: &mut String,
    step: &str,
    depth: usize,
) -> Result<(), EventError> {
    let len = path.len();
    path.push_str(step);
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::INFINITY);
            #[expect(clippy::cast_precision_loss, reason = "2^53 - 1 is exactly a double")]
            let max = MAX_SAFE_INTEGER as f64;
            let fits = match (n.as_i64(), n.as_u64()) {
                (Some(i), _) => i.unsigned_abs() <= MAX_SAFE_INTEGER.unsigned_abs(),
                (None, Some(u)) => u <= MAX_SAFE_INTEGER.unsigned_abs(),
                (None, None) => f.abs() <= max,
            };
            if !fits {
                return Err(EventError::invalid(
                    path.clone(),
                    format!("number {n} is outside ±(2^53−1), which RFC 8785's IEEE double form does not keep exactly; send it as a string"),
                ));
            }
        }
        Value::Array(_) | Value::Object(_) if depth > MAX_ATTRIBUTE_DEPTH => {
            return Err(EventError::invalid(
                path.clone(),
                format!("nested {depth} levels deep, at most {MAX_ATTRIBUTE_DEPTH}"),
            ));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_attribute_value(item, path, &format!("[{i}]"), depth + 1)?;
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                check_attribute_value(item, path, &format!(".{k}"), depth + 1)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
    path.truncate(len);
    Ok(())
}

/// Turns every double that is a whole number into an integer (`1.0` into
/// `1`, `-0.0` into `0`): that is what reading the canonical text back
/// gives, so an event and the event parsed from its leaf are equal.
/// Callers have checked that magnitudes are within 2^53 − 1.
fn integral_numbers_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 {
                    #[expect(
                        clippy::cast_possible_truncation,
                        reason = "whole and within ±(2^53 − 1)"
                    )]
                    let i = f as i64;
                    *v = Value::from(i);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// Deserializes an optional JSON value, refusing an object that repeats a
/// name at any depth: serde_json would keep the last one silently, and
/// RFC 8785 requires I-JSON (RFC 7493), which forbids repeats.
fn unique_names<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Ok(Option::<UniqueValue>::deserialize(d)?.map(|u| u.0))
}

/// A JSON value whose objects have no repeated names.
pub(crate) struct UniqueValue(pub(crate) Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = UniqueValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::Null))
    }

    fn visit_none<E>(self) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::Null))
    }

    fn visit_bool<E>(self, v: bool) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<UniqueValue, E> {
        serde_json::Number::from_f64(v)
            .map(|n| UniqueValue(Value::Number(n)))
            .ok_or_else(|| E::custom("a number must be finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<UniqueValue, E> {
        Ok(UniqueValue(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueValue, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(UniqueValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueValue, A::Error> {
        let mut map = Map::new();
        while let Some(k) = access.next_key::<String>()? {
            let UniqueValue(v) = access.next_value()?;
            if map.contains_key(&k) {
                return Err(de::Error::custom(format!(
                    "repeated name {k:?} in an object"
                )));
            }
            map.insert(k, v);
        }
        Ok(UniqueValue(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "event_id": "evt-1",
            "occurred_at": "2026-12-03T13:45:00.123Z",
            "actor": {"id": "alice@example.com", "kind": "user"},
            "action": "auth.login",
            "outcome": "success"
        })
    }

    fn with(path: &[&str], value: Value) -> Value {
        let mut v = base();
        let mut cur = &mut v;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cur[*key] = value.clone();
            } else {
                if cur.get(*key).is_none() {
                    cur[*key] = json!({});
                }
                cur = &mut cur[*key];
            }
        }
        v
    }

    fn build(v: &Value) -> Result<Event, EventError> {
        let input = EventInput::from_json(v.to_string().as_bytes())?;
        Event::from_input(input, "svc:ingest", || "generated".to_owned())
    }

    fn problem(v: &Value) -> String {
        build(v).unwrap_err().to_string()
    }

    #[test]
    fn accepts_a_minimal_event_and_omits_absent_fields() {
        let e = build(&base()).unwrap();
        assert_eq!(
            e.to_json(),
            json!({
                "event_id": "evt-1",
                "occurred_at": "2026-12-03T13:45:00.123Z",
                "actor": {"id": "alice@example.com", "kind": "user"},
                "action": "auth.login",
                "outcome": "success",
                "submitted_by": "svc:ingest"
            })
        );
        assert_eq!(e.occurred_at.unix_nanos(), 1_796_305_500_123_000_000);
    }

    #[test]
    fn calls_the_id_generator_only_without_an_event_id() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("event_id");
        assert_eq!(build(&v).unwrap().event_id, "generated");
        let e = Event::from_input(
            EventInput::from_json(base().to_string().as_bytes()).unwrap(),
            "svc:ingest",
            || panic!("must not be called"),
        )
        .unwrap();
        assert_eq!(e.event_id, "evt-1");
    }

    #[test]
    fn names_the_field_and_the_bound() {
        let long = "x".repeat(300);
        assert_eq!(
            problem(&with(&["actor", "id"], json!(long))),
            "actor.id: 300 bytes, at most 256"
        );
        assert_eq!(
            problem(&with(&["resource"], json!({"kind": "table", "id": ""}))),
            "resource.id: must not be empty (leave an optional field out instead)"
        );
        assert_eq!(
            problem(&with(&["origin", "host"], json!("web\n01"))),
            "origin.host: contains the control character U+000A"
        );
        assert_eq!(
            problem(&with(&["request_id"], json!("a\u{85}b"))),
            "request_id: contains the control character U+0085"
        );
        assert_eq!(
            problem(&with(&["event_id"], json!("has space"))),
            "event_id: must be printable ASCII without spaces (0x21 to 0x7E)"
        );
        assert_eq!(
            problem(&with(&["event_id"], json!("é"))),
            "event_id: must be printable ASCII without spaces (0x21 to 0x7E)"
        );
        assert_eq!(
            problem(&with(&["event_id"], json!("e".repeat(129)))),
            "event_id: 129 bytes, at most 128"
        );
        assert_eq!(
            problem(&with(&["outcome"], json!("SUCCESS"))),
            "outcome: must be one of success, failure, denied, unknown"
        );
        assert_eq!(
            problem(&with(&["origin", "source_ip"], json!("192.0.2.7:443"))),
            "origin.source_ip: must be an IPv4 or IPv6 address without port or zone, like 192.0.2.7 or 2001:db8::7"
        );
        assert!(problem(&with(&["occurred_at"], json!("yesterday")))
            .starts_with("occurred_at: must be an RFC 3339"));
        assert_eq!(
            problem(&with(&["trace_id"], json!("t".repeat(257)))),
            "trace_id: 257 bytes, at most 256"
        );
        assert_eq!(
            Event::from_input(
                EventInput::from_json(base().to_string().as_bytes()).unwrap(),
                "",
                String::new
            )
            .unwrap_err()
            .to_string(),
            "submitted_by: must not be empty (leave an optional field out instead)"
        );
    }

    #[test]
    fn checks_action_names() {
        for ok in ["auth.login", "login", "db.query.row_level-1", "a.b.c.d"] {
            assert!(build(&with(&["action"], json!(ok))).is_ok(), "{ok}");
        }
        for bad in [
            "Auth.login",
            "auth..login",
            ".auth",
            "auth.",
            "auth login",
            "auth/login",
            "",
        ] {
            let p = problem(&with(&["action"], json!(bad)));
            assert!(p.starts_with("action: "), "{bad}: {p}");
        }
        assert_eq!(
            problem(&with(&["action"], json!("a".repeat(129)))),
            "action: 129 bytes, at most 128"
        );
    }

    #[test]
    fn refuses_unknown_keys_wrong_types_and_repeated_names() {
        let mut v = base();
        v["submitted_by"] = json!("mallory");
        assert!(problem(&v).starts_with("event: unknown field `submitted_by`"));
        assert!(problem(&with(&["actor", "role"], json!("x")))
            .starts_with("event: unknown field `role`"));
        assert!(problem(&with(&["outcome"], json!(1))).starts_with("event: invalid type"));
        let text = br#"{"occurred_at":"2026-12-03T13:45:00Z","actor":{"id":"a","kind":"user"},
            "action":"a.b","outcome":"success","attributes":{"k":1,"n":{"x":1,"x":2}}}"#;
        let err = EventInput::from_json(text).unwrap_err().to_string();
        assert!(
            err.starts_with("event: repeated name \"x\" in an object"),
            "{err}"
        );
        // serde_json refuses lone surrogate escapes: strings are always
        // valid Unicode scalar values.
        let lone = br#"{"occurred_at":"2026-12-03T13:45:00Z","actor":{"id":"\ud800","kind":"user"},
            "action":"a.b","outcome":"success"}"#;
        let err = EventInput::from_json(lone).unwrap_err().to_string();
        assert!(
            err.starts_with("event: unexpected end of hex escape"),
            "{err}"
        );
        let lone_low = br#"{"occurred_at":"2026-12-03T13:45:00Z","actor":{"id":"a","kind":"user"},
            "action":"a.b","outcome":"success","attributes":{"k":"\udc00"}}"#;
        let err = EventInput::from_json(lone_low).unwrap_err().to_string();
        assert!(err.contains("surrogate"), "{err}");
    }

    #[test]
    fn checks_attributes() {
        assert_eq!(
            problem(&with(&["attributes"], json!([1, 2]))),
            "attributes: must be a JSON object"
        );
        assert_eq!(
            problem(&with(&["attributes"], json!("x"))),
            "attributes: must be a JSON object"
        );
        assert_eq!(
            problem(&with(&["attributes"], json!({"a": {"b": [1, 9_007_199_254_740_992_u64]}}))),
            "attributes.a.b[1]: number 9007199254740992 is outside ±(2^53−1), which RFC 8785's IEEE double form does not keep exactly; send it as a string"
        );
        assert!(problem(&with(&["attributes"], json!({"f": -1.0e16})))
            .starts_with("attributes.f: number"));
        assert!(build(&with(
            &["attributes"],
            json!({"a": 9_007_199_254_740_991_u64, "b": -9_007_199_254_740_991_i64, "c": 0.1})
        ))
        .is_ok());

        // Depth: the attributes object is level 1; 16 levels pass, 17 do not.
        let mut deep = json!("leaf");
        for _ in 0..16 {
            deep = json!({ "d": deep });
        }
        assert!(build(&with(&["attributes"], deep.clone())).is_ok());
        let p = problem(&with(&["attributes"], json!({ "d": deep })));
        assert_eq!(
            p,
            format!(
                "attributes{}: nested 17 levels deep, at most 16",
                ".d".repeat(16)
            )
        );

        let big = "y".repeat(MAX_ATTRIBUTES_BYTES);
        assert_eq!(
            problem(&with(&["attributes"], json!({ "k": big }))),
            format!(
                "attributes: {} bytes in canonical form, at most 16384",
                MAX_ATTRIBUTES_BYTES + 8
            )
        );
        // Control characters are allowed inside attribute strings (they are
        // escaped), unlike the short text fields.
        assert!(build(&with(&["attributes"], json!({ "sql": "select 1;\n" }))).is_ok());
    }

    #[test]
    fn normalises_ip_text_and_whole_doubles() {
        let mut v = with(&["origin"], json!({"source_ip": "2001:DB8:0:0::7"}));
        v["attributes"] = json!({"n": 2.0, "z": -0.0, "f": 2.5});
        let e = build(&v).unwrap();
        assert_eq!(e.to_json()["origin"], json!({"source_ip": "2001:db8::7"}));
        assert_eq!(e.attributes["n"], json!(2));
        assert_eq!(e.attributes["z"], json!(0));
        assert_eq!(e.attributes["f"], json!(2.5));
        // An origin with no parts and empty attributes are left out.
        let e = build(&with(&["origin"], json!({}))).unwrap();
        assert!(e.to_json().get("origin").is_none());
        let e = build(&with(&["attributes"], json!({}))).unwrap();
        assert!(e.to_json().get("attributes").is_none());
    }

    #[test]
    fn to_input_rebuilds_the_same_event() {
        let mut v = base();
        v["resource"] = json!({"kind": "table", "id": "users"});
        v["origin"] = json!({"service": "api", "host": "web-1", "source_ip": "192.0.2.7"});
        v["request_id"] = json!("req-9");
        v["trace_id"] = json!("4bf92f3577b34da6a3ce929d0e0e4736");
        v["attributes"] = json!({"rows": 3});
        let e = build(&v).unwrap();
        let again = Event::from_input(e.to_input(), &e.submitted_by, String::new).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn outcome_round_trips() {
        for o in [
            Outcome::Success,
            Outcome::Failure,
            Outcome::Denied,
            Outcome::Unknown,
        ] {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), o);
            assert_eq!(o.to_string(), o.as_str());
        }
    }
}
