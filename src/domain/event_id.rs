//! Event ids: the client's UUID when it sends one, otherwise derived from content.
//!
//! A derived id is a UUIDv8 laid out like a UUIDv7: the event's own timestamp
//! (milliseconds) in the top 48 bits, then 74 bits of a SHA-256 of the event's
//! canonical JSON. The same event sent twice therefore gets the same id (so a legacy
//! client's retry is deduplicated), any change to any field gives another id, and
//! ids of events close in time sit close together in the unique index.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Timestamp;

/// Derives the content id of an event (see the module docs).
pub fn derive(event: &Value) -> Uuid {
    let mut canonical = Vec::with_capacity(256);
    write_canonical(event, &mut canonical);
    let hash = Sha256::digest(&canonical);

    let millis = event
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| Timestamp::parse(t).ok())
        .map(|t| t.micros().div_euclid(1000).clamp(0, (1 << 48) - 1) as u64)
        .unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&hash[..10]);
    // new_v8 overwrites the version and variant bits; the rest stays as laid out.
    Uuid::new_v8(bytes)
}

/// JSON with object keys sorted and no whitespace, so key order and formatting
/// of the client's serializer do not change the id.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(key.clone()), out);
                out.push(b':');
                write_canonical(&map[key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut Vec<u8>) {
    // Serializing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "session_id": "s1",
            "category": "page interaction",
            "name": "pageview",
            "data": {"host": "h", "path": "/", "nested": {"b": 1, "a": [1, 2]}},
            "timestamp": "2021-01-01 09:15:27.243860"
        })
    }

    #[test]
    fn same_content_gives_the_same_id_whatever_the_key_order() {
        let reordered: Value = serde_json::from_str(
            r#"{"timestamp":"2021-01-01 09:15:27.243860","data":{"nested":{"a":[1,2],"b":1},"path":"/","host":"h"},
                "name":"pageview","category":"page interaction","session_id":"s1"}"#,
        )
        .unwrap();
        assert_eq!(derive(&event()), derive(&reordered));
    }

    #[test]
    fn any_changed_field_gives_another_id() {
        let base = derive(&event());
        let changes = [
            ("session_id", json!("s2")),
            ("category", json!("form interaction")),
            ("name", json!("submit")),
            ("data", json!({"host": "h", "path": "/x"})),
            ("timestamp", json!("2021-01-01 09:15:27.243861")),
        ];
        for (field, value) in changes {
            let mut changed = event();
            changed[field] = value;
            assert_ne!(derive(&changed), base, "changing {field} must change the id");
        }
    }

    #[test]
    fn derived_ids_are_time_ordered_by_the_event_timestamp() {
        let mut later = event();
        later["timestamp"] = json!("2021-01-01 09:15:28");
        assert!(derive(&event()) < derive(&later));
        let id = derive(&event());
        assert_eq!(id.get_version_num(), 8);
        let millis = u64::from_be_bytes([
            0,
            0,
            id.as_bytes()[0],
            id.as_bytes()[1],
            id.as_bytes()[2],
            id.as_bytes()[3],
            id.as_bytes()[4],
            id.as_bytes()[5],
        ]);
        assert_eq!(millis, 1_609_492_527_243);
    }
}
