//! Categories and their declared event types, with JSON Schemas compiled once.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Reason;

/// A category as stored.
#[derive(Clone, Debug)]
pub struct CategoryDef {
    /// Unique name events refer to, e.g. `page interaction`.
    pub name: String,
    /// Inactive categories refuse new events.
    pub active: bool,
    /// Strict categories accept only declared event types.
    pub strict: bool,
}

/// An event type as stored.
#[derive(Clone, Debug)]
pub struct EventTypeDef {
    /// The category's name.
    pub category: String,
    /// The event name, e.g. `pageview`.
    pub name: String,
    /// JSON Schema that `data` must satisfy, if any.
    pub schema: Option<Value>,
}

struct CategoryRules {
    active: bool,
    strict: bool,
    types: HashMap<String, Option<Arc<jsonschema::Validator>>>,
}

/// What the worker validates against: every category and event type, schemas compiled.
#[derive(Default)]
pub struct Catalog {
    categories: HashMap<String, CategoryRules>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("categories", &self.categories.len()).finish()
    }
}

/// A stored schema that is not a valid JSON Schema.
#[derive(Debug, thiserror::Error)]
#[error("event type {category}/{name}: invalid JSON Schema: {message}")]
pub struct InvalidSchema {
    /// Category of the offending event type.
    pub category: String,
    /// Name of the offending event type.
    pub name: String,
    /// What the schema compiler said.
    pub message: String,
}

/// Compiles a JSON Schema, or says why it is not one.
pub fn compile_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::validator_for(schema).map_err(|e| e.to_string())
}

impl Catalog {
    /// Builds the catalog; a broken stored schema is an error, never silently ignored.
    pub fn new(categories: Vec<CategoryDef>, types: Vec<EventTypeDef>) -> Result<Self, InvalidSchema> {
        let mut map: HashMap<String, CategoryRules> = categories
            .into_iter()
            .map(|c| (c.name, CategoryRules { active: c.active, strict: c.strict, types: HashMap::new() }))
            .collect();
        for t in types {
            let validator = match &t.schema {
                None => None,
                Some(schema) => Some(Arc::new(compile_schema(schema).map_err(|message| InvalidSchema {
                    category: t.category.clone(),
                    name: t.name.clone(),
                    message,
                })?)),
            };
            if let Some(category) = map.get_mut(&t.category) {
                category.types.insert(t.name, validator);
            }
        }
        Ok(Self { categories: map })
    }

    /// Checks category, name and `data` together; returns every reason that applies.
    pub(crate) fn check(&self, category: &str, name: Option<&str>, data: Option<&Value>) -> Vec<Reason> {
        let Some(rules) = self.categories.get(category) else {
            return vec![Reason::new("category", "unknown_category", format!("no category named {category:?}"))];
        };
        if !rules.active {
            return vec![Reason::new("category", "inactive_category", format!("category {category:?} is not active"))];
        }
        let Some(name) = name else { return Vec::new() };
        match rules.types.get(name) {
            None if rules.strict => vec![Reason::new(
                "name",
                "undeclared_name",
                format!("{name:?} is not an event type of the strict category {category:?}"),
            )],
            Some(Some(validator)) => data.map(|d| schema_reasons(validator, d)).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn schema_reasons(validator: &jsonschema::Validator, data: &Value) -> Vec<Reason> {
    validator
        .iter_errors(data)
        .map(|err| {
            let pointer = err.instance_path().to_string();
            Reason::new(format!("data{pointer}"), "schema", err.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::new(
            vec![
                CategoryDef { name: "strict".into(), active: true, strict: true },
                CategoryDef { name: "open".into(), active: true, strict: false },
                CategoryDef { name: "off".into(), active: false, strict: false },
            ],
            vec![EventTypeDef {
                category: "strict".into(),
                name: "typed".into(),
                schema: Some(json!({"type": "object", "required": ["host"], "properties": {"n": {"type": "integer"}}})),
            }],
        )
        .unwrap()
    }

    fn codes(reasons: &[Reason]) -> Vec<(&str, &str)> {
        reasons.iter().map(|r| (r.field.as_str(), r.code.as_str())).collect()
    }

    #[test]
    fn unknown_category_is_refused() {
        assert_eq!(codes(&catalog().check("nope", Some("x"), None)), [("category", "unknown_category")]);
    }

    #[test]
    fn inactive_category_is_refused() {
        assert_eq!(codes(&catalog().check("off", Some("x"), None)), [("category", "inactive_category")]);
    }

    #[test]
    fn strict_category_refuses_undeclared_name() {
        assert_eq!(codes(&catalog().check("strict", Some("other"), None)), [("name", "undeclared_name")]);
    }

    #[test]
    fn open_category_accepts_any_name() {
        assert!(catalog().check("open", Some("anything"), Some(&json!({}))).is_empty());
    }

    #[test]
    fn schema_violations_name_the_data_field() {
        let reasons = catalog().check("strict", Some("typed"), Some(&json!({"n": "x"})));
        let mut got = codes(&reasons);
        got.sort();
        assert_eq!(got, [("data", "schema"), ("data/n", "schema")]);
        assert!(catalog().check("strict", Some("typed"), Some(&json!({"host": "h", "n": 1}))).is_empty());
    }

    #[test]
    fn an_invalid_stored_schema_is_an_error() {
        let err = Catalog::new(
            vec![CategoryDef { name: "c".into(), active: true, strict: false }],
            vec![EventTypeDef { category: "c".into(), name: "t".into(), schema: Some(json!({"type": 12})) }],
        )
        .unwrap_err();
        assert_eq!(err.name, "t");
    }
}
