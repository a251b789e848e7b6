use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::{Event, EventError, Outcome};

/// Which time a search window and its order use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// The event's `occurred_at`.
    OccurredAt,
    /// When the log integrated the leaf (milliseconds, compared as `ms * 1_000_000` ns).
    IntegratedAt,
}

/// How `action` is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionMatch {
    Exact(String),
    /// A raw string prefix: `db.` matches `db.query`, `db` matches `dbx.read`.
    Prefix(String),
}

/// Keyset position: the (time in ns, leaf index) of the last hit of the
/// previous page; newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time_nanos: i64,
    pub index: u64,
}

impl Cursor {
    /// Returns the cursor as opaque base64url text.
    pub fn encode(&self) -> String {
        unimplemented!()
    }

    /// Reads a cursor that [`Cursor::encode`] made.
    ///
    /// # Errors
    /// [`EventError::Invalid`] for field `cursor`.
    pub fn decode(text: &str) -> Result<Cursor, EventError> {
        let _ = text;
        unimplemented!()
    }
}

/// A search: a time window, filters, a page size and where the page starts.
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
    /// JSON containment like PostgreSQL `@>`.
    pub attributes_contain: Option<Map<String, Value>>,
    pub page_size: u32,
    /// Hits strictly older than the cursor in (time DESC, index DESC).
    pub cursor: Option<Cursor>,
}

impl EventQuery {
    /// Refuses since >= until, a window longer than `max_window_nanos`,
    /// page_size 0 or > MAX_PAGE_SIZE, over-long filter strings.
    ///
    /// # Errors
    /// [`EventError::Invalid`] naming the field and the bound.
    pub fn validate(&self, max_window_nanos: i64) -> Result<(), EventError> {
        let _ = max_window_nanos;
        unimplemented!()
    }

    /// Tells whether a stored event (leaf `index`, integrated at
    /// `integrated_ms`) matches, cursor included.
    pub fn matches(&self, event: &Event, index: u64, integrated_ms: u64) -> bool {
        let _ = (event, index, integrated_ms);
        unimplemented!()
    }

    /// Returns the hit's sort key under this query's time field.
    pub fn sort_key(&self, event: &Event, index: u64, integrated_ms: u64) -> Cursor {
        let _ = (event, index, integrated_ms);
        unimplemented!()
    }
}
