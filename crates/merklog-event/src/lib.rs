//! The audit event: its model and limits, its RFC 8785 canonical JSON form,
//! the leaf bytes the log stores for it, and the search model that a store
//! implements and a client re-checks.
//!
//! This crate is pure: no I/O, no async, no database, no clock and no random
//! number generator (callers hand in the event id generator and the salt).

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
pub use time::OccurredAt;
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
