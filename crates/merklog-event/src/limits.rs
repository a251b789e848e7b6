//! The bounds every event and query is checked against.

/// Longest `event_id`, in bytes.
pub const MAX_EVENT_ID_BYTES: usize = 128;
/// Longest short text field (actor, resource, origin, request and trace ids,
/// `submitted_by`), in bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Longest `action`, in bytes.
pub const MAX_ACTION_BYTES: usize = 128;
/// Largest `attributes` object in its canonical (RFC 8785) form, in bytes.
pub const MAX_ATTRIBUTES_BYTES: usize = 16 * 1024;
/// Deepest nesting of `attributes`: the object itself is depth 1.
pub const MAX_ATTRIBUTE_DEPTH: usize = 16;
/// Most hits in one search page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Most events in one append call.
pub const MAX_EVENTS_PER_APPEND: usize = 1000;
/// Largest integer magnitude an attribute number may have: 2^53 − 1, the
/// largest that survives RFC 8785's IEEE double form exactly.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;
