//! Audit events on the wire: `merklog.v1.Event` and the search request
//! become the domain types of `merklog-event` here, and back.
//!
//! Only the shape is checked here (JSON text that does not parse, an unknown
//! enum value, a field only the log may set); the event's own rules and
//! limits are `merklog_event`'s, checked by `Event::from_input` and
//! `EventQuery::validate`.

use std::net::IpAddr;

use merklog_event::{
    ActionMatch, ActorInput, Cursor, Event, EventError, EventInput, EventQuery, OccurredAt,
    OriginInput, Outcome, ResourceInput, TimeField,
};

use crate::{v1, ConversionError};

/// The page size of a search that does not give one.
pub const DEFAULT_SEARCH_PAGE_SIZE: u32 = 100;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConversionError {
    ConversionError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The problem of an [`EventError`], without the field the event crate
/// names (the caller names the wire field).
fn problem(e: EventError) -> String {
    match e {
        EventError::Invalid { problem, .. } => problem,
        EventError::NotAnEventLeaf(reason) => reason,
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Reads an event a caller sent, at `field` (e.g. `events[3]`).
///
/// # Errors
/// [`ConversionError::Invalid`] naming the field: `submitted_by` set (the
/// log sets it), `attributes` that are not JSON; [`ConversionError::Missing`]
/// for an absent `actor`.
pub fn event_input_from_wire(e: &v1::Event, field: &str) -> Result<EventInput, ConversionError> {
    if !e.submitted_by.is_empty() {
        return Err(invalid(
            format!("{field}.submitted_by"),
            "is output only: the log sets it to the name of the authenticated client",
        ));
    }
    let actor = e.actor.as_ref().ok_or_else(|| ConversionError::Missing {
        field: format!("{field}.actor"),
    })?;
    let attributes =
        if e.attributes.is_empty() {
            None
        } else {
            Some(serde_json::from_str(&e.attributes).map_err(|err| {
                invalid(format!("{field}.attributes"), format!("not JSON: {err}"))
            })?)
        };
    Ok(EventInput {
        event_id: non_empty(&e.event_id),
        occurred_at: e.occurred_at.clone(),
        actor: ActorInput {
            id: actor.id.clone(),
            kind: actor.kind.clone(),
        },
        action: e.action.clone(),
        resource: e.resource.as_ref().map(|r| ResourceInput {
            kind: r.kind.clone(),
            id: r.id.clone(),
        }),
        outcome: e.outcome.clone(),
        origin: e.origin.as_ref().map(|o| OriginInput {
            service: o.service.clone(),
            host: o.host.clone(),
            source_ip: o.source_ip.clone(),
        }),
        request_id: e.request_id.clone(),
        trace_id: e.trace_id.clone(),
        attributes,
    })
}

/// Puts an event a caller wants appended on the wire (`submitted_by` left
/// empty: the log sets it).
pub fn event_input_to_wire(e: &EventInput) -> v1::Event {
    v1::Event {
        event_id: e.event_id.clone().unwrap_or_default(),
        occurred_at: e.occurred_at.clone(),
        actor: Some(v1::EventActor {
            id: e.actor.id.clone(),
            kind: e.actor.kind.clone(),
        }),
        action: e.action.clone(),
        resource: e.resource.as_ref().map(|r| v1::EventResource {
            kind: r.kind.clone(),
            id: r.id.clone(),
        }),
        outcome: e.outcome.clone(),
        origin: e.origin.as_ref().map(|o| v1::EventOrigin {
            service: o.service.clone(),
            host: o.host.clone(),
            source_ip: o.source_ip.clone(),
        }),
        request_id: e.request_id.clone(),
        trace_id: e.trace_id.clone(),
        attributes: e
            .attributes
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        submitted_by: String::new(),
    }
}

/// Puts a stored event on the wire, `submitted_by` included.
pub fn event_to_wire(e: &Event) -> v1::Event {
    v1::Event {
        event_id: e.event_id.clone(),
        occurred_at: e.occurred_at.text().to_owned(),
        actor: Some(v1::EventActor {
            id: e.actor.id.clone(),
            kind: e.actor.kind.clone(),
        }),
        action: e.action.clone(),
        resource: e.resource.as_ref().map(|r| v1::EventResource {
            kind: r.kind.clone(),
            id: r.id.clone(),
        }),
        outcome: e.outcome.as_str().to_owned(),
        origin: (e.origin != merklog_event::Origin::default()).then(|| v1::EventOrigin {
            service: e.origin.service.clone(),
            host: e.origin.host.clone(),
            source_ip: e.origin.source_ip.map(|ip| ip.to_string()),
        }),
        request_id: e.request_id.clone(),
        trace_id: e.trace_id.clone(),
        attributes: if e.attributes.is_empty() {
            String::new()
        } else {
            serde_json::Value::Object(e.attributes.clone()).to_string()
        },
        submitted_by: e.submitted_by.clone(),
    }
}

/// Reads a search request as an [`EventQuery`], not yet validated against
/// the log's bounds (`EventQuery::validate` does that). A page size of 0
/// becomes [`DEFAULT_SEARCH_PAGE_SIZE`].
///
/// # Errors
/// [`ConversionError::Invalid`] naming the field: a missing or malformed
/// time, an unknown time field or outcome, both `action` and
/// `action_prefix`, a malformed IP address, `attributes_contain` that is not
/// a JSON object, a malformed cursor.
pub fn event_query_from_wire(r: &v1::SearchEventsRequest) -> Result<EventQuery, ConversionError> {
    let time_field = match v1::EventTimeField::try_from(r.time_field) {
        Ok(v1::EventTimeField::Unspecified | v1::EventTimeField::Integrated) => {
            TimeField::IntegratedAt
        }
        Ok(v1::EventTimeField::Occurred) => TimeField::OccurredAt,
        Err(_) => {
            return Err(invalid(
                "time_field",
                format!(
                "unknown value {}: use EVENT_TIME_FIELD_INTEGRATED or EVENT_TIME_FIELD_OCCURRED",
                r.time_field
            ),
            ))
        }
    };
    let time = |text: &str, field: &str| -> Result<i64, ConversionError> {
        if text.is_empty() {
            return Err(invalid(
                field,
                "required: an RFC 3339 time such as 2026-12-03T10:00:00Z",
            ));
        }
        OccurredAt::parse(text)
            .map(|t| t.unix_nanos())
            .map_err(|e| invalid(field, format!("not an RFC 3339 time: {}", problem(e))))
    };
    let since_nanos = time(&r.since, "since")?;
    let until_nanos = time(&r.until, "until")?;
    let action = match (&r.action, &r.action_prefix) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "action_prefix",
                "give action or action_prefix, not both",
            ))
        }
        (Some(a), None) => Some(ActionMatch::Exact(a.clone())),
        (None, Some(p)) => Some(ActionMatch::Prefix(p.clone())),
        (None, None) => None,
    };
    let outcome = r
        .outcome
        .as_deref()
        .map(|o| {
            o.parse::<Outcome>().map_err(|_| {
                invalid(
                    "outcome",
                    "must be one of success, failure, denied, unknown",
                )
            })
        })
        .transpose()?;
    let source_ip = r
        .source_ip
        .as_deref()
        .map(|ip| {
            ip.parse::<IpAddr>()
                .map_err(|e| invalid("source_ip", format!("not an IP address: {e}")))
        })
        .transpose()?;
    let attributes_contain = if r.attributes_contain.is_empty() {
        None
    } else {
        match serde_json::from_str::<serde_json::Value>(&r.attributes_contain) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            Ok(_) => return Err(invalid("attributes_contain", "must be a JSON object")),
            Err(e) => {
                return Err(invalid(
                    "attributes_contain",
                    format!("not JSON: {e}; give a JSON object"),
                ))
            }
        }
    };
    let cursor = if r.cursor.is_empty() {
        None
    } else {
        Some(Cursor::decode(&r.cursor).map_err(|e| {
            invalid(
                "cursor",
                format!("{}; pass next_cursor as given", problem(e)),
            )
        })?)
    };
    Ok(EventQuery {
        time_field,
        since_nanos,
        until_nanos,
        actor_id: r.actor_id.clone(),
        actor_kind: r.actor_kind.clone(),
        action,
        resource_kind: r.resource_kind.clone(),
        resource_id: r.resource_id.clone(),
        outcome,
        origin_service: r.origin_service.clone(),
        origin_host: r.origin_host.clone(),
        source_ip,
        request_id: r.request_id.clone(),
        trace_id: r.trace_id.clone(),
        event_id: r.event_id.clone(),
        attributes_contain,
        page_size: if r.page_size == 0 {
            DEFAULT_SEARCH_PAGE_SIZE
        } else {
            r.page_size
        },
        cursor,
    })
}

/// Puts a query on the wire; the inverse of [`event_query_from_wire`].
pub fn event_query_to_wire(q: &EventQuery) -> v1::SearchEventsRequest {
    let (action, action_prefix) = match &q.action {
        Some(ActionMatch::Exact(a)) => (Some(a.clone()), None),
        Some(ActionMatch::Prefix(p)) => (None, Some(p.clone())),
        None => (None, None),
    };
    v1::SearchEventsRequest {
        time_field: match q.time_field {
            TimeField::IntegratedAt => v1::EventTimeField::Integrated,
            TimeField::OccurredAt => v1::EventTimeField::Occurred,
        } as i32,
        since: rfc3339_from_nanos(q.since_nanos),
        until: rfc3339_from_nanos(q.until_nanos),
        actor_id: q.actor_id.clone(),
        actor_kind: q.actor_kind.clone(),
        action,
        action_prefix,
        resource_kind: q.resource_kind.clone(),
        resource_id: q.resource_id.clone(),
        outcome: q.outcome.map(|o| o.as_str().to_owned()),
        origin_service: q.origin_service.clone(),
        origin_host: q.origin_host.clone(),
        source_ip: q.source_ip.map(|ip| ip.to_string()),
        request_id: q.request_id.clone(),
        trace_id: q.trace_id.clone(),
        event_id: q.event_id.clone(),
        attributes_contain: q
            .attributes_contain
            .as_ref()
            .map(|m| serde_json::Value::Object(m.clone()).to_string())
            .unwrap_or_default(),
        page_size: q.page_size,
        cursor: q.cursor.map(|c| c.encode()).unwrap_or_default(),
    }
}

/// Formats nanoseconds since the Unix epoch as RFC 3339 in UTC with nine
/// fraction digits, e.g. `2026-12-03T10:00:00.000000000Z`.
pub fn rfc3339_from_nanos(nanos: i64) -> String {
    merklog_event::format_rfc3339(nanos, 9)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change to a request, for the table of bad inputs.
    type Change<T> = Box<dyn Fn(&mut T)>;

    fn wire_event() -> v1::Event {
        v1::Event {
            occurred_at: "2026-12-03T10:00:00Z".into(),
            actor: Some(v1::EventActor {
                id: "alice".into(),
                kind: "user".into(),
            }),
            action: "user.login".into(),
            outcome: "success".into(),
            attributes: r#"{"mfa":true}"#.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_caller_cannot_set_submitted_by() {
        let mut e = wire_event();
        e.submitted_by = "root".into();
        let err = event_input_from_wire(&e, "events[2]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("events[2].submitted_by: is output only"),
            "{err}"
        );
    }

    #[test]
    fn event_inputs_round_trip() {
        let input = event_input_from_wire(&wire_event(), "events[0]").unwrap();
        assert_eq!(input.attributes, Some(serde_json::json!({"mfa": true})));
        assert_eq!(input.event_id, None);
        assert_eq!(event_input_to_wire(&input), wire_event());
        let mut bad = wire_event();
        bad.attributes = "{".into();
        let err = event_input_from_wire(&bad, "events[0]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("events[0].attributes: not JSON"),
            "{err}"
        );
        bad.actor = None;
        assert_eq!(
            event_input_from_wire(&bad, "events[1]")
                .unwrap_err()
                .to_string(),
            "events[1].actor: missing"
        );
    }

    #[test]
    fn times_format_as_rfc3339_utc() {
        assert_eq!(rfc3339_from_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_from_nanos(1_780_000_000_123_456_789),
            "2026-05-28T20:26:40.123456789Z"
        );
        assert_eq!(rfc3339_from_nanos(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339_from_nanos(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    fn request() -> v1::SearchEventsRequest {
        v1::SearchEventsRequest {
            since: "2026-12-03T00:00:00Z".into(),
            until: "2026-12-04T00:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn search_requests_name_the_bad_field() {
        let cases: Vec<(Change<v1::SearchEventsRequest>, &str)> = vec![
            (Box::new(|r| r.since.clear()), "since: required"),
            (
                Box::new(|r| r.until = "yesterday".into()),
                "until: not an RFC 3339 time",
            ),
            (
                Box::new(|r| r.time_field = 7),
                "time_field: unknown value 7",
            ),
            (
                Box::new(|r| r.outcome = Some("maybe".into())),
                "outcome: must be one of",
            ),
            (
                Box::new(|r| r.source_ip = Some("1.2.3".into())),
                "source_ip: not an IP address",
            ),
            (
                Box::new(|r| r.attributes_contain = "[1]".into()),
                "attributes_contain: must be a JSON object",
            ),
            (
                Box::new(|r| r.attributes_contain = "{".into()),
                "attributes_contain: not JSON",
            ),
            (
                Box::new(|r| {
                    r.action = Some("a".into());
                    r.action_prefix = Some("b".into());
                }),
                "action_prefix: give action or action_prefix, not both",
            ),
        ];
        for (change, expected) in cases {
            let mut r = request();
            change(&mut r);
            let err = event_query_from_wire(&r).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err} (expected {expected})");
        }
    }

    #[test]
    fn queries_round_trip() {
        let mut r = request();
        r.time_field = v1::EventTimeField::Occurred as i32;
        r.action_prefix = Some("user.".into());
        r.outcome = Some("denied".into());
        r.source_ip = Some("10.0.0.1".into());
        r.attributes_contain = r#"{"a":{"b":1}}"#.into();
        r.page_size = 7;
        let q = event_query_from_wire(&r).unwrap();
        assert_eq!(q.time_field, TimeField::OccurredAt);
        assert_eq!(q.action, Some(ActionMatch::Prefix("user.".into())));
        assert_eq!(event_query_from_wire(&event_query_to_wire(&q)).unwrap(), q);
        assert_eq!(
            event_query_from_wire(&request()).unwrap().page_size,
            DEFAULT_SEARCH_PAGE_SIZE
        );
    }
}
