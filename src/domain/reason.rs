//! Why an event was refused: one [`Reason`] per failed rule.

use serde::{Deserialize, Serialize};

/// One failed rule: the field it concerns, a stable machine code and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    /// Field path, e.g. `timestamp` or `data/form/email`; `body` for the request as a whole.
    pub field: String,
    /// Stable identifier such as `required` or `unknown_category`, safe to match on.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl Reason {
    /// Builds a reason from its three parts.
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), code: code.into(), message: message.into() }
    }
}
