//! The audit event: its model and limits, its RFC 8785 canonical JSON form,
//! the leaf bytes the log stores for it, and the search model that a store
//! implements and a client re-checks. docs/EVENTS.md describes the format
//! for third parties, with a worked example that a test here pins.
//!
//! - [`EventInput`] is what a caller sends; [`Event::from_input`] checks
//!   every field against [`limits`] and adds what the server sets
//!   (`submitted_by`, a missing `event_id`).
//! - [`SealedEvent`] pairs an event with a 32-byte random salt;
//!   [`SealedEvent::entry`] writes the leaf bytes
//!   `ENTRY_PREFIX || JCS({"event": …, "salt": …})` and
//!   [`SealedEvent::parse`] reads them back, refusing anything that is not
//!   byte for byte the canonical form.
//! - [`EventQuery`] is the search model: [`EventQuery::matches`] is the
//!   naive reference that the stores' SQL must agree with and that clients
//!   run on every hit.
//!
//! This crate is pure: no I/O, no async, no database, no clock and no random
//! number generator (callers hand in the event id generator, the salt and
//! the time for [`uuid_v7`]).
//!
//! # Dependencies
//! RFC 8785 is implemented here, in [`jcs`]: no JCS crate is vendored
//! (`serde_jcs` is neither in the registry cache nor maintained since 2022,
//! and it serializes through serde, which hides key-order and duplicate-name
//! questions). The one hard part, the shortest digits that read back to a
//! double, comes from `ryu` (already in the dependency tree); [`jcs`] lays
//! them out as ECMAScript's Number::toString does, which is what `ryu-js`
//! would do. serde_json is built with `float_roundtrip`, because its default
//! float parser can be one ulp off (it reads `333333333.33333329`, from the
//! RFC authors' own test data, wrongly). RFC 3339 times and UUIDv7 are a few
//! lines each and are written here too, so their exact rules (at most 9
//! fraction digits, no leap second, i64 nanoseconds) are visible in one
//! place.

pub mod jcs;
pub mod limits;

mod error;
mod leaf;
mod model;
mod query;
mod time;
mod uuid;

pub use error::EventError;
pub use leaf::SealedEvent;
pub use model::{
    Actor, ActorInput, Event, EventInput, Origin, OriginInput, Outcome, Resource, ResourceInput,
};
pub use query::{ActionMatch, Cursor, EventQuery, TimeField};
pub use time::{format_rfc3339, OccurredAt};
pub use uuid::uuid_v7;

/// The bytes every event leaf starts with; the opaque append refuses
/// entries that start with them, so only the server's event path can make
/// a leaf that parses as an event.
pub const ENTRY_PREFIX: &[u8] = b"merklog.event.v1\n";

/// The length in bytes of the per-event random salt.
pub const SALT_LEN: usize = 32;

/// Tells whether `entry` starts with [`ENTRY_PREFIX`].
pub fn is_event_entry(entry: &[u8]) -> bool {
    entry.starts_with(ENTRY_PREFIX)
}
