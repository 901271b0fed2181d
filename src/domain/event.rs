//! The five event fields and the rules each must satisfy.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Catalog, Reason, Timestamp};

/// Limits the validation applies (from the settings).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// Longest `session_id`, `category` and `name`, in characters.
    pub max_text_chars: usize,
    /// How far in the future a timestamp may lie (client clocks drift).
    pub max_clock_skew: Duration,
}

/// An event that passed every rule, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidEvent {
    /// Unique id (client's or derived).
    pub event_id: Uuid,
    /// The visitor's session.
    pub session_id: String,
    /// Category name.
    pub category: String,
    /// Event name within the category.
    pub name: String,
    /// Free-form data, a JSON object.
    pub data: Map<String, Value>,
    /// When the event happened, per the client.
    pub timestamp: Timestamp,
}

/// Validates one event payload; on failure returns every reason, not just the first.
///
/// The payload is taken by value: a valid event's strings and data move into
/// the [`ValidEvent`] instead of being copied.
pub fn validate(
    payload: Value,
    event_id: Uuid,
    now: DateTime<Utc>,
    catalog: &Catalog,
    rules: &Rules,
) -> Result<ValidEvent, Vec<Reason>> {
    let Value::Object(mut obj) = payload else {
        return Err(vec![Reason::new("body", "not_an_object", "an event must be a JSON object")]);
    };
    let mut reasons = Vec::new();
    let timestamp = {
        let session_id = keep(&mut reasons, text(&obj, "session_id", rules, true));
        let category = keep(&mut reasons, text(&obj, "category", rules, false));
        let name = keep(&mut reasons, text(&obj, "name", rules, false));
        let data = keep(&mut reasons, data(&obj));
        let timestamp = keep(&mut reasons, timestamp(&obj, now, rules));
        keep(&mut reasons, client_event_id(&obj));
        if let Some(category) = category {
            reasons.extend(catalog.check(category, name, data.and(obj.get("data"))));
        }
        timestamp.filter(|_| session_id.is_some() && category.is_some() && name.is_some() && data.is_some())
    };
    match timestamp {
        Some(timestamp) if reasons.is_empty() => Ok(ValidEvent {
            event_id,
            session_id: take_string(&mut obj, "session_id"),
            category: take_string(&mut obj, "category"),
            name: take_string(&mut obj, "name"),
            data: match obj.remove("data") {
                Some(Value::Object(data)) => data,
                _ => Map::new(),
            },
            timestamp,
        }),
        _ => Err(reasons),
    }
}

/// A string field already validated as one, moved out of the payload.
fn take_string(obj: &mut Map<String, Value>, field: &str) -> String {
    match obj.remove(field) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Validates one payload given as JSON text, the way every event is: the
/// workers use it, and so does replaying event errors from the admin panel.
///
/// Time rules (the clock skew) are judged as of `received_at`, never as of
/// processing: an event waiting in a backlog, or replayed a week later, gets
/// the verdict it would have had the moment it arrived.
pub fn validate_json(
    json: &str,
    event_id: Uuid,
    received_at: DateTime<Utc>,
    catalog: &Catalog,
    rules: &Rules,
) -> Result<ValidEvent, Vec<Reason>> {
    let value = serde_json::from_str(json).map_err(|e| vec![Reason::new("body", "invalid_json", e.to_string())])?;
    validate(value, event_id, received_at, catalog, rules)
}

/// Collects a failed rule and lets validation go on to the next field.
fn keep<T>(reasons: &mut Vec<Reason>, result: Result<T, Reason>) -> Option<T> {
    result.map_err(|r| reasons.push(r)).ok()
}

fn required<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a Value, Reason> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(Reason::new(field, "required", format!("{field} is required"))),
        Some(v) => Ok(v),
    }
}

/// A required, non-blank string of bounded length. Identifiers (`session_id`)
/// additionally refuse control characters, which have no business in an id and
/// would forge lines in logs and terminals.
fn text<'a>(obj: &'a Map<String, Value>, field: &str, rules: &Rules, identifier: bool) -> Result<&'a str, Reason> {
    let Value::String(s) = required(obj, field)? else {
        return Err(Reason::new(field, "wrong_type", format!("{field} must be a string")));
    };
    if s.trim().is_empty() {
        return Err(Reason::new(field, "blank", format!("{field} must not be blank")));
    }
    let chars = s.chars().count();
    if chars > rules.max_text_chars {
        return Err(Reason::new(
            field,
            "too_long",
            format!("{field} has {chars} characters; at most {} are allowed", rules.max_text_chars),
        ));
    }
    if s.chars().any(char::is_control) && (identifier || s.contains('\0')) {
        return Err(Reason::new(field, "control_characters", format!("{field} must not contain control characters")));
    }
    Ok(s)
}

fn data(obj: &Map<String, Value>) -> Result<&Map<String, Value>, Reason> {
    let data = required(obj, "data")?;
    let map = data.as_object().ok_or_else(|| Reason::new("data", "wrong_type", "data must be a JSON object"))?;
    if let Some(below) = nul_path(data) {
        // PostgreSQL cannot store U+0000 in text or jsonb; refusing it everywhere
        // keeps every backend's behaviour the same.
        return Err(Reason::new(
            format!("data{below}"),
            "nul_character",
            "strings must not contain the NUL character (U+0000)",
        ));
    }
    Ok(map)
}

/// Where below `value` the first key or string that contains U+0000 is
/// (`""` for `value` itself, else `/key/index/…`), if anywhere. The path is
/// built on the way back from a find, so clean data costs no allocation.
fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(String::new()),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| nul_path(v).map(|below| format!("/{i}{below}")))
        }
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(String::new())
            } else {
                nul_path(v).map(|below| format!("/{k}{below}"))
            }
        }),
        _ => None,
    }
}

fn timestamp(obj: &Map<String, Value>, now: DateTime<Utc>, rules: &Rules) -> Result<Timestamp, Reason> {
    let Value::String(s) = required(obj, "timestamp")? else {
        return Err(Reason::new("timestamp", "wrong_type", "timestamp must be a string"));
    };
    let ts = Timestamp::parse(s).map_err(|e| Reason::new("timestamp", "invalid_format", e.to_string()))?;
    if ts.as_datetime() > now + rules.max_clock_skew {
        return Err(Reason::new(
            "timestamp",
            "in_future",
            format!("timestamp {ts} is more than {}s ahead of the server clock", rules.max_clock_skew.num_seconds()),
        ));
    }
    Ok(ts)
}

fn client_event_id(obj: &Map<String, Value>) -> Result<(), Reason> {
    match obj.get("event_id") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if Uuid::parse_str(s).is_ok() => Ok(()),
        Some(_) => Err(Reason::new("event_id", "invalid_uuid", "event_id must be a UUID string when present")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CategoryDef, EventTypeDef};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Timestamp::parse("2026-01-01T12:00:00Z").unwrap().as_datetime()
    }

    fn rules() -> Rules {
        Rules { max_text_chars: 16, max_clock_skew: Duration::minutes(5) }
    }

    fn catalog() -> Catalog {
        Catalog::new(
            vec![CategoryDef { name: "page interaction".into(), active: true, strict: true }],
            vec![EventTypeDef {
                category: "page interaction".into(),
                name: "pageview".into(),
                schema: Some(json!({"type": "object", "required": ["host", "path"]})),
            }],
        )
        .unwrap()
    }

    fn event() -> Value {
        json!({
            "session_id": "s1", "category": "page interaction", "name": "pageview",
            "data": {"host": "h", "path": "/"}, "timestamp": "2026-01-01 11:59:00"
        })
    }

    fn reasons_for(payload: Value) -> Vec<(String, String)> {
        let mut got: Vec<_> = validate(payload, Uuid::nil(), now(), &catalog(), &rules())
            .expect_err("must be invalid")
            .into_iter()
            .map(|r| (r.field, r.code))
            .collect();
        got.sort();
        got
    }

    fn with(field: &str, value: Value) -> Value {
        let mut e = event();
        e[field] = value;
        e
    }

    fn pair(field: &str, code: &str) -> Vec<(String, String)> {
        vec![(field.to_string(), code.to_string())]
    }

    #[test]
    fn a_valid_event_passes() {
        let valid = validate(event(), Uuid::nil(), now(), &catalog(), &rules()).unwrap();
        assert_eq!(valid.session_id, "s1");
        assert_eq!(valid.timestamp.to_string(), "2026-01-01T11:59:00.000000Z");
    }

    #[test]
    fn each_missing_field_is_named() {
        for field in ["session_id", "category", "name", "data", "timestamp"] {
            let mut e = event();
            e.as_object_mut().unwrap().remove(field);
            assert!(reasons_for(e).contains(&(field.to_string(), "required".to_string())), "{field}");
        }
        assert_eq!(reasons_for(with("session_id", Value::Null)), pair("session_id", "required"));
    }

    #[test]
    fn wrong_json_types_are_refused_all_at_once() {
        let got =
            reasons_for(json!({"session_id": 12, "category": ["x"], "name": null, "data": "str", "timestamp": 5}));
        assert_eq!(
            got,
            vec![
                ("category".to_string(), "wrong_type".to_string()),
                ("data".to_string(), "wrong_type".to_string()),
                ("name".to_string(), "required".to_string()),
                ("session_id".to_string(), "wrong_type".to_string()),
                ("timestamp".to_string(), "wrong_type".to_string()),
            ]
        );
    }

    #[test]
    fn a_non_object_is_refused() {
        assert_eq!(reasons_for(json!([1, 2])), pair("body", "not_an_object"));
    }

    #[test]
    fn blank_and_too_long_text_are_refused() {
        assert_eq!(reasons_for(with("session_id", json!("  "))), pair("session_id", "blank"));
        assert_eq!(reasons_for(with("session_id", json!("x".repeat(17)))), pair("session_id", "too_long"));
        // The limit counts characters, not bytes.
        assert!(validate(with("session_id", json!("眼".repeat(16))), Uuid::nil(), now(), &catalog(), &rules()).is_ok());
    }

    #[test]
    fn control_characters_are_refused_in_session_ids() {
        assert_eq!(reasons_for(with("session_id", json!("a\nb"))), pair("session_id", "control_characters"));
        assert_eq!(reasons_for(with("session_id", json!("a\u{1b}[31m"))), pair("session_id", "control_characters"));
    }

    #[test]
    fn unparseable_and_future_timestamps_are_refused() {
        assert_eq!(reasons_for(with("timestamp", json!("yesterday"))), pair("timestamp", "invalid_format"));
        assert_eq!(reasons_for(with("timestamp", json!("2026-01-01T12:05:01Z"))), pair("timestamp", "in_future"));
        // Within the skew is fine.
        let e = with("timestamp", json!("2026-01-01T12:04:59Z"));
        assert!(validate(e, Uuid::nil(), now(), &catalog(), &rules()).is_ok());
    }

    #[test]
    fn data_must_be_an_object_matching_the_schema() {
        assert_eq!(reasons_for(with("data", json!([1]))), pair("data", "wrong_type"));
        assert_eq!(reasons_for(with("data", json!({"host": "h"}))), pair("data", "schema"));
    }

    #[test]
    fn nul_characters_in_data_are_refused_with_their_path() {
        assert_eq!(
            reasons_for(with("data", json!({"host": "h", "path": "/", "x": ["ok", "a\u{0}b"]}))),
            pair("data/x/1", "nul_character")
        );
        assert_eq!(
            reasons_for(with("data", json!({"host": "h", "path": "/", "k\u{0}": 1}))),
            pair("data", "nul_character")
        );
    }

    #[test]
    fn category_and_name_rules_apply() {
        assert_eq!(reasons_for(with("category", json!("nope"))), pair("category", "unknown_category"));
        assert_eq!(reasons_for(with("name", json!("click"))), pair("name", "undeclared_name"));
    }

    #[test]
    fn a_malformed_client_event_id_is_refused() {
        assert_eq!(reasons_for(with("event_id", json!("nope"))), pair("event_id", "invalid_uuid"));
        assert_eq!(reasons_for(with("event_id", json!(7))), pair("event_id", "invalid_uuid"));
    }
}
