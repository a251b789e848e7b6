use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{EventError, OccurredAt};

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

impl FromStr for Outcome {
    type Err = EventError;

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

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    pub kind: String,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: String,
    pub id: String,
}

/// Where the event came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub service: Option<String>,
    pub host: Option<String>,
    pub source_ip: Option<IpAddr>,
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
/// Everything the server sets is absent.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
}

impl EventInput {
    /// Reads one event as JSON.
    ///
    /// # Errors
    /// [`EventError::Invalid`] when the bytes are not JSON of this shape.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let _ = bytes;
        unimplemented!()
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
    pub attributes: Map<String, Value>,
    /// Set by the server from the authenticated principal.
    pub submitted_by: String,
}

impl Event {
    /// Validates every field against the limits; `new_event_id` is called
    /// only when the input has none.
    ///
    /// # Errors
    /// [`EventError::Invalid`] naming the first field that breaks a rule.
    pub fn from_input(
        input: EventInput,
        submitted_by: &str,
        new_event_id: impl FnOnce() -> String,
    ) -> Result<Event, EventError> {
        let _ = (input, submitted_by, new_event_id);
        unimplemented!()
    }

    /// Returns the event object as it appears in the leaf.
    pub fn to_json(&self) -> Value {
        unimplemented!()
    }
}
