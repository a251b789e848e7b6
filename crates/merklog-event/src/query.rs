//! The search model: what a query asks and the naive reference of what
//! matches it. Stores implement the same rules in SQL; clients re-check
//! every hit a server returns with [`EventQuery::matches`].

use std::net::IpAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::limits::{MAX_ACTION_BYTES, MAX_EVENT_ID_BYTES, MAX_PAGE_SIZE, MAX_TEXT_BYTES};
use crate::model::check_attributes;
use crate::{Event, EventError, Outcome};

/// Which time a search window and its order use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// The event's `occurred_at`, as given by the caller.
    OccurredAt,
    /// When the log integrated the leaf: `integrated_ms * 1_000_000` ns.
    IntegratedAt,
}

/// How `action` is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionMatch {
    /// The whole action, byte for byte.
    Exact(String),
    /// A raw string prefix, not a segment prefix: `db.` matches `db.query`,
    /// and `db` matches `db.query` and also `dbx.read`. Callers wanting
    /// whole segments end the prefix with a dot.
    Prefix(String),
}

/// Keyset position: the (time in ns, leaf index) of the last hit of the
/// previous page; newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time_nanos: i64,
    pub index: u64,
}

/// First byte of an encoded cursor, so a later layout can be told apart.
const CURSOR_VERSION: u8 = 1;
const CURSOR_LEN: usize = 1 + 8 + 8;

impl Cursor {
    /// Returns the cursor as opaque base64url text (no padding).
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(CURSOR_LEN);
        b.push(CURSOR_VERSION);
        b.extend_from_slice(&self.time_nanos.to_be_bytes());
        b.extend_from_slice(&self.index.to_be_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    /// Reads a cursor that [`Cursor::encode`] made.
    ///
    /// # Errors
    /// [`EventError::Invalid`] for field `cursor` when the text is not one.
    pub fn decode(text: &str) -> Result<Cursor, EventError> {
        let bad = || {
            EventError::invalid(
                "cursor",
                "not a cursor from a previous page (pass next_cursor back unchanged)",
            )
        };
        let b = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        if b.len() != CURSOR_LEN || b[0] != CURSOR_VERSION {
            return Err(bad());
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&b[1..9]);
        let mut index = [0u8; 8];
        index.copy_from_slice(&b[9..17]);
        Ok(Cursor {
            time_nanos: i64::from_be_bytes(time),
            index: u64::from_be_bytes(index),
        })
    }
}

/// A search: a time window, filters, a page size and where the page starts.
///
/// Hits are ordered newest first by (time DESC, index DESC) under
/// `time_field`; every filter that is set must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct EventQuery {
    pub time_field: TimeField,
    /// Inclusive.
    pub since_nanos: i64,
    /// Exclusive.
    pub until_nanos: i64,
    pub actor_id: Option<String>,
    pub actor_kind: Option<String>,
    pub action: Option<ActionMatch>,
    pub resource_kind: Option<String>,
    pub resource_id: Option<String>,
    pub outcome: Option<Outcome>,
    pub origin_service: Option<String>,
    pub origin_host: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub event_id: Option<String>,
    /// JSON containment like PostgreSQL `jsonb @>`: every name of the filter
    /// is present with a contained value; an array contains another when
    /// each of the other's elements is contained in one of its elements (a
    /// subset, order and repeats ignored); scalars are equal (numbers by
    /// value, so `1` equals `1.0`); a scalar never contains an array or
    /// object, nor the other way round.
    pub attributes_contain: Option<Map<String, Value>>,
    pub page_size: u32,
    /// Hits strictly older than the cursor in (time DESC, index DESC).
    pub cursor: Option<Cursor>,
}

impl EventQuery {
    /// Refuses since >= until, a window longer than `max_window_nanos`,
    /// page_size 0 or > [`MAX_PAGE_SIZE`], empty or over-long filter
    /// strings and an attribute filter beyond the attribute limits.
    ///
    /// # Errors
    /// [`EventError::Invalid`] naming the field and the bound.
    pub fn validate(&self, max_window_nanos: i64) -> Result<(), EventError> {
        if self.since_nanos >= self.until_nanos {
            return Err(EventError::invalid(
                "since",
                format!(
                    "{} ns is not before until ({} ns)",
                    self.since_nanos, self.until_nanos
                ),
            ));
        }
        let window = i128::from(self.until_nanos) - i128::from(self.since_nanos);
        if window > i128::from(max_window_nanos) {
            return Err(EventError::invalid(
                "until",
                format!(
                    "window until − since is {window} ns ({}), at most {max_window_nanos} ns ({})",
                    human(window),
                    human(i128::from(max_window_nanos))
                ),
            ));
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(EventError::invalid(
                "page_size",
                format!("{}, must be 1 to {MAX_PAGE_SIZE}", self.page_size),
            ));
        }
        let texts = [
            ("actor_id", &self.actor_id, MAX_TEXT_BYTES),
            ("actor_kind", &self.actor_kind, MAX_TEXT_BYTES),
            ("resource_kind", &self.resource_kind, MAX_TEXT_BYTES),
            ("resource_id", &self.resource_id, MAX_TEXT_BYTES),
            ("origin_service", &self.origin_service, MAX_TEXT_BYTES),
            ("origin_host", &self.origin_host, MAX_TEXT_BYTES),
            ("request_id", &self.request_id, MAX_TEXT_BYTES),
            ("trace_id", &self.trace_id, MAX_TEXT_BYTES),
            ("event_id", &self.event_id, MAX_EVENT_ID_BYTES),
        ];
        for (field, value, max) in texts {
            if let Some(v) = value {
                check_filter_len(field, v, max)?;
            }
        }
        if let Some(ActionMatch::Exact(a) | ActionMatch::Prefix(a)) = &self.action {
            check_filter_len("action", a, MAX_ACTION_BYTES)?;
        }
        if let Some(filter) = &self.attributes_contain {
            check_attributes("attributes_contain", filter)?;
        }
        Ok(())
    }

    /// Tells whether a stored event (leaf `index`, integrated at
    /// `integrated_ms`) matches, cursor included. This is the reference the
    /// stores' SQL must agree with.
    pub fn matches(&self, event: &Event, index: u64, integrated_ms: u64) -> bool {
        let key = self.sort_key(event, index, integrated_ms);
        if key.time_nanos < self.since_nanos || key.time_nanos >= self.until_nanos {
            return false;
        }
        if let Some(c) = &self.cursor {
            if (key.time_nanos, key.index) >= (c.time_nanos, c.index) {
                return false;
            }
        }
        let eq = |filter: &Option<String>, value: Option<&String>| match filter {
            None => true,
            Some(f) => value == Some(f),
        };
        let resource = event.resource.as_ref();
        eq(&self.actor_id, Some(&event.actor.id))
            && eq(&self.actor_kind, Some(&event.actor.kind))
            && match &self.action {
                None => true,
                Some(ActionMatch::Exact(a)) => event.action == *a,
                Some(ActionMatch::Prefix(p)) => event.action.starts_with(p.as_str()),
            }
            && eq(&self.resource_kind, resource.map(|r| &r.kind))
            && eq(&self.resource_id, resource.map(|r| &r.id))
            && self.outcome.is_none_or(|o| o == event.outcome)
            && eq(&self.origin_service, event.origin.service.as_ref())
            && eq(&self.origin_host, event.origin.host.as_ref())
            && self
                .source_ip
                .is_none_or(|ip| event.origin.source_ip == Some(ip))
            && eq(&self.request_id, event.request_id.as_ref())
            && eq(&self.trace_id, event.trace_id.as_ref())
            && eq(&self.event_id, Some(&event.event_id))
            && self
                .attributes_contain
                .as_ref()
                .is_none_or(|f| object_contains(&event.attributes, f))
    }

    /// Returns the hit's sort key under this query's time field:
    /// (time_nanos, index). Integration times past the `i64` nanosecond
    /// range (year 2262) saturate.
    pub fn sort_key(&self, event: &Event, index: u64, integrated_ms: u64) -> Cursor {
        let time_nanos = match self.time_field {
            TimeField::OccurredAt => event.occurred_at.unix_nanos(),
            TimeField::IntegratedAt => i64::try_from(integrated_ms)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000),
        };
        Cursor { time_nanos, index }
    }
}

fn check_filter_len(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(EventError::invalid(
            field,
            "must not be empty (leave the filter unset instead)",
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

fn human(nanos: i128) -> String {
    let secs = nanos / 1_000_000_000;
    if secs >= 86_400 && secs % 86_400 == 0 {
        format!("{} days", secs / 86_400)
    } else if secs >= 3600 && secs % 3600 == 0 {
        format!("{} hours", secs / 3600)
    } else {
        format!("{secs} s")
    }
}

/// PostgreSQL `jsonb @>` between two objects.
fn object_contains(target: &Map<String, Value>, filter: &Map<String, Value>) -> bool {
    filter
        .iter()
        .all(|(k, f)| target.get(k).is_some_and(|t| contains(t, f)))
}

/// PostgreSQL `jsonb @>` below the top level.
pub(crate) fn contains(target: &Value, filter: &Value) -> bool {
    match (target, filter) {
        (Value::Object(t), Value::Object(f)) => object_contains(t, f),
        (Value::Array(t), Value::Array(f)) => {
            f.iter().all(|fe| t.iter().any(|te| contains(te, fe)))
        }
        (Value::Number(t), Value::Number(f)) => t == f || t.as_f64() == f.as_f64(),
        (Value::String(t), Value::String(f)) => t == f,
        (Value::Bool(t), Value::Bool(f)) => t == f,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventInput;
    use serde_json::json;

    const HOUR: i64 = 3_600_000_000_000;

    type SetFilter = Box<dyn Fn(&mut EventQuery)>;

    fn event(attrs: Value) -> Event {
        let input = EventInput::from_json(
            json!({
                "event_id": "evt-1",
                "occurred_at": "2026-12-03T13:45:00Z",
                "actor": {"id": "alice", "kind": "user"},
                "action": "db.query",
                "resource": {"kind": "table", "id": "users"},
                "outcome": "denied",
                "origin": {"service": "api", "host": "web-1", "source_ip": "192.0.2.7"},
                "request_id": "req-9",
                "trace_id": "trace-1",
                "attributes": attrs
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        Event::from_input(input, "svc:ingest", String::new).unwrap()
    }

    const T: i64 = 1_796_305_500_000_000_000;

    fn query() -> EventQuery {
        EventQuery {
            time_field: TimeField::OccurredAt,
            since_nanos: T - HOUR,
            until_nanos: T + HOUR,
            actor_id: None,
            actor_kind: None,
            action: None,
            resource_kind: None,
            resource_id: None,
            outcome: None,
            origin_service: None,
            origin_host: None,
            source_ip: None,
            request_id: None,
            trace_id: None,
            event_id: None,
            attributes_contain: None,
            page_size: 100,
            cursor: None,
        }
    }

    #[test]
    fn every_set_filter_must_hold() {
        let e = event(json!({"k": 1}));
        assert!(query().matches(&e, 5, 0));
        let yes: Vec<SetFilter> = vec![
            Box::new(|q| q.actor_id = Some("alice".into())),
            Box::new(|q| q.actor_kind = Some("user".into())),
            Box::new(|q| q.action = Some(ActionMatch::Exact("db.query".into()))),
            Box::new(|q| q.action = Some(ActionMatch::Prefix("db.".into()))),
            Box::new(|q| q.action = Some(ActionMatch::Prefix("db".into()))),
            Box::new(|q| q.action = Some(ActionMatch::Prefix("db.query".into()))),
            Box::new(|q| q.resource_kind = Some("table".into())),
            Box::new(|q| q.resource_id = Some("users".into())),
            Box::new(|q| q.outcome = Some(Outcome::Denied)),
            Box::new(|q| q.origin_service = Some("api".into())),
            Box::new(|q| q.origin_host = Some("web-1".into())),
            Box::new(|q| q.source_ip = Some("192.0.2.7".parse().unwrap())),
            Box::new(|q| q.request_id = Some("req-9".into())),
            Box::new(|q| q.trace_id = Some("trace-1".into())),
            Box::new(|q| q.event_id = Some("evt-1".into())),
        ];
        let no: Vec<SetFilter> = vec![
            Box::new(|q| q.actor_id = Some("alicE".into())),
            Box::new(|q| q.actor_kind = Some("service".into())),
            Box::new(|q| q.action = Some(ActionMatch::Exact("db".into()))),
            Box::new(|q| q.action = Some(ActionMatch::Prefix("db.query.".into()))),
            Box::new(|q| q.action = Some(ActionMatch::Prefix("auth.".into()))),
            Box::new(|q| q.resource_kind = Some("bucket".into())),
            Box::new(|q| q.resource_id = Some("user".into())),
            Box::new(|q| q.outcome = Some(Outcome::Success)),
            Box::new(|q| q.origin_service = Some("apis".into())),
            Box::new(|q| q.origin_host = Some("web-2".into())),
            Box::new(|q| q.source_ip = Some("::ffff:192.0.2.7".parse().unwrap())),
            Box::new(|q| q.request_id = Some("req-1".into())),
            Box::new(|q| q.trace_id = Some("trace-2".into())),
            Box::new(|q| q.event_id = Some("evt-2".into())),
        ];
        for (i, set) in yes.iter().enumerate() {
            let mut q = query();
            set(&mut q);
            assert!(q.matches(&e, 5, 0), "yes #{i}");
        }
        for (i, set) in no.iter().enumerate() {
            let mut q = query();
            set(&mut q);
            assert!(!q.matches(&e, 5, 0), "no #{i}");
        }
    }

    #[test]
    fn time_window_is_half_open_and_follows_the_time_field() {
        let e = event(json!({}));
        let mut q = query();
        q.since_nanos = T;
        assert!(q.matches(&e, 1, 0));
        q.since_nanos = T - HOUR;
        q.until_nanos = T;
        assert!(!q.matches(&e, 1, 0));

        let mut q = query();
        q.time_field = TimeField::IntegratedAt;
        q.since_nanos = 1_000_000_000;
        q.until_nanos = 2_000_000_000;
        assert!(q.matches(&e, 1, 1_000));
        assert!(q.matches(&e, 1, 1_999));
        assert!(!q.matches(&e, 1, 2_000));
        assert!(!q.matches(&e, 1, 999));
        assert_eq!(
            q.sort_key(&e, 4, 1_500),
            Cursor {
                time_nanos: 1_500_000_000,
                index: 4
            }
        );
        assert_eq!(q.sort_key(&e, 4, u64::MAX).time_nanos, i64::MAX);
        q.time_field = TimeField::OccurredAt;
        assert_eq!(
            q.sort_key(&e, 4, 1_500),
            Cursor {
                time_nanos: T,
                index: 4
            }
        );
    }

    #[test]
    fn cursor_keeps_only_strictly_older_hits() {
        let e = event(json!({}));
        let mut q = query();
        q.cursor = Some(Cursor {
            time_nanos: T,
            index: 10,
        });
        assert!(q.matches(&e, 9, 0));
        assert!(!q.matches(&e, 10, 0));
        assert!(!q.matches(&e, 11, 0));
        q.cursor = Some(Cursor {
            time_nanos: T + 1,
            index: 0,
        });
        assert!(q.matches(&e, 11, 0));
        q.cursor = Some(Cursor {
            time_nanos: T - 1,
            index: u64::MAX,
        });
        assert!(!q.matches(&e, 0, 0));
    }

    #[test]
    fn attributes_contain_like_postgresql() {
        let e = event(json!({
            "user": {"name": "alice", "groups": ["admin", "dev"], "age": 30},
            "tags": [1, [2, 3], {"a": 1, "b": 2}],
            "flag": true,
            "none": null
        }));
        let check = |filter: Value| {
            let mut q = query();
            q.attributes_contain = Some(filter.as_object().unwrap().clone());
            q.matches(&e, 1, 0)
        };
        assert!(check(json!({})));
        assert!(check(json!({"user": {}})));
        assert!(check(json!({"user": {"name": "alice"}})));
        assert!(check(json!({"user": {"groups": ["dev"]}})));
        assert!(check(json!({"user": {"groups": ["dev", "admin", "dev"]}})));
        assert!(check(json!({"user": {"groups": []}})));
        assert!(check(json!({"user": {"age": 30.0}})));
        assert!(check(json!({"tags": [[3]]})));
        assert!(check(json!({"tags": [{"a": 1}]})));
        assert!(check(json!({"flag": true, "none": null})));
        assert!(!check(json!({"user": {"name": "bob"}})));
        assert!(!check(json!({"user": {"groups": "dev"}})));
        assert!(!check(json!({"user": {"groups": ["ops"]}})));
        assert!(!check(json!({"tags": [3]})));
        assert!(!check(json!({"tags": [{"a": 2}]})));
        assert!(!check(json!({"name": "alice"})));
        assert!(!check(json!({"flag": "true"})));
        assert!(!check(json!({"missing": null})));
        assert!(!check(json!({"user": "alice"})));
    }

    #[test]
    fn validate_names_the_field_and_the_bound() {
        let day = 24 * HOUR;
        assert!(query().validate(day).is_ok());
        let err = |q: EventQuery| q.validate(day).unwrap_err().to_string();
        let mut q = query();
        q.until_nanos = q.since_nanos;
        assert!(err(q).starts_with("since: "));
        let mut q = query();
        q.since_nanos = i64::MIN;
        q.until_nanos = i64::MAX;
        assert_eq!(
            err(q),
            "until: window until − since is 18446744073709551615 ns (18446744073 s), at most 86400000000000 ns (1 days)"
        );
        for size in [0, 1001] {
            let mut q = query();
            q.page_size = size;
            assert_eq!(err(q), format!("page_size: {size}, must be 1 to 1000"));
        }
        let mut q = query();
        q.page_size = 1000;
        assert!(q.validate(day).is_ok());
        let mut q = query();
        q.actor_id = Some("a".repeat(257));
        assert_eq!(err(q), "actor_id: 257 bytes, at most 256");
        let mut q = query();
        q.event_id = Some("e".repeat(129));
        assert_eq!(err(q), "event_id: 129 bytes, at most 128");
        let mut q = query();
        q.action = Some(ActionMatch::Prefix(String::new()));
        assert_eq!(
            err(q),
            "action: must not be empty (leave the filter unset instead)"
        );
        let mut q = query();
        q.attributes_contain = Some(
            json!({"n": 9_007_199_254_740_992_u64})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert!(err(q).starts_with("attributes_contain.n: number"));
    }

    #[test]
    fn cursor_text_round_trips_and_refuses_garbage() {
        for c in [
            Cursor {
                time_nanos: 0,
                index: 0,
            },
            Cursor {
                time_nanos: i64::MIN,
                index: u64::MAX,
            },
            Cursor {
                time_nanos: T,
                index: 42,
            },
        ] {
            let text = c.encode();
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(Cursor::decode(&text).unwrap(), c);
        }
        for bad in ["", "!!", "AQ", &"A".repeat(23), "AgAAAAAAAAAAAAAAAAAAAAA"] {
            match Cursor::decode(bad) {
                Err(EventError::Invalid { field, .. }) => assert_eq!(field, "cursor"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
