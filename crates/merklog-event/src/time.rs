use crate::EventError;

/// When an event happened: RFC 3339 text kept exactly as given, and the
/// instant it names as nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurredAt {
    text: String,
    unix_nanos: i64,
}

impl OccurredAt {
    /// Parses RFC 3339 date-time text.
    ///
    /// # Errors
    /// [`EventError::Invalid`] for field `occurred_at`.
    pub fn parse(text: &str) -> Result<Self, EventError> {
        let _ = text;
        unimplemented!()
    }

    /// Returns the text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Returns nanoseconds since the Unix epoch.
    pub fn unix_nanos(&self) -> i64 {
        self.unix_nanos
    }
}
