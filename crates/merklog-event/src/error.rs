/// Everything that can be wrong with an event, a leaf or a query.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A field breaks a rule; `field` is the JSON path (e.g. "actor.id",
    /// "attributes.a.b"), `problem` says the bound.
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// Leaf bytes are not an event leaf or not in canonical form.
    #[error("not an event leaf: {0}")]
    NotAnEventLeaf(String),
}

impl EventError {
    pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        EventError::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
