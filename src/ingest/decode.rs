//! Turning a request body into queue entries: media type, size limits, gzip,
//! nesting depth, JSON, and one id per event. Pure functions of the request.

use std::io::Read;

use axum::http::{header, HeaderMap};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::IngestError;
use crate::config::IngestSettings;
use crate::domain::event_id;

/// The size and shape limits of a request, from the settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest body on the wire.
    pub max_body_bytes: usize,
    /// Largest body after gzip decoding.
    pub max_decompressed_bytes: usize,
    /// Most events per request.
    pub max_events: usize,
    /// Largest single event.
    pub max_event_bytes: usize,
    /// Deepest nesting, counting the outer array or object.
    pub max_depth: usize,
}

impl From<&IngestSettings> for Limits {
    fn from(s: &IngestSettings) -> Self {
        Self {
            max_body_bytes: s.max_body_bytes,
            max_decompressed_bytes: s.max_decompressed_bytes,
            max_events: s.max_events_per_request,
            max_event_bytes: s.max_event_bytes,
            max_depth: s.max_json_depth,
        }
    }
}

/// A body that is not acceptable JSON. It is answered 400 and kept as an event error.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code, e.g. `invalid_json`.
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// Accepts `application/json` and `text/plain` (what `navigator.sendBeacon` sends
/// for a string, so browsers need no CORS preflight), with any parameters.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), IngestError> {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" | "text/plain" => Ok(()),
        "" => Err(IngestError::MediaType("Content-Type is missing; send application/json or text/plain".into())),
        other => Err(IngestError::MediaType(format!(
            "Content-Type {other} is not accepted; send application/json or text/plain"
        ))),
    }
}

/// Undoes `Content-Encoding` (identity or gzip), never producing more than the cap.
pub fn decode_content(headers: &HeaderMap, body: &[u8], limits: &Limits) -> Result<Vec<u8>, IngestError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" | "" => {
            if body.len() > limits.max_decompressed_bytes {
                return Err(too_large_decoded(limits));
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => {
            let cap = limits.max_decompressed_bytes;
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap));
            // Read one byte past the cap: that is how a bomb is told from a body exactly at it.
            flate2::read::MultiGzDecoder::new(body)
                .take(cap as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| IngestError::BadEncoding(format!("body is not valid gzip: {e}")))?;
            if out.len() > cap {
                return Err(too_large_decoded(limits));
            }
            Ok(out)
        }
        other => Err(IngestError::MediaType(format!(
            "Content-Encoding {other} is not accepted; send the body plain or gzip-compressed"
        ))),
    }
}

fn too_large_decoded(limits: &Limits) -> IngestError {
    IngestError::TooLarge(format!("decoded body exceeds {} bytes", limits.max_decompressed_bytes))
}

/// Splits a decoded body into events, each with its id and its JSON text exactly
/// as received. `Err(Ok(refusal))`: the body is not acceptable JSON (400,
/// recorded); `Err(Err(e))`: a limit was exceeded (413, not recorded).
///
/// Events are split as raw slices, without building a tree; the full parse
/// happens in the worker. A body of event objects within every limit (what
/// trackers send) takes [`split_common`]: each event walked once, depth and
/// `event_id` read on the way. Anything else, and anything that path is
/// unsure of, gets [`split_checked`]'s answer, so the two can never differ
/// in what they accept, refuse or why.
pub fn split_events(body: &[u8], limits: &Limits) -> Result<Vec<(Uuid, String)>, Result<Refusal, IngestError>> {
    match split_common(body, limits) {
        Some(events) => Ok(events),
        None => split_checked(body, limits),
    }
}

/// The common case, or `None`: the body is UTF-8, an event object or an
/// array of them, within the count and size limits, and each event passes one
/// walk that decodes every string and number (as [`Checked`] does), refuses
/// nesting deeper than the limit (as [`exceeds_depth`] does) and reads a
/// top-level `event_id` (as [`IdProbe`] does). [`split_checked`] walks a
/// body four times; see docs/benchmarks.md, "Tenth session".
fn split_common(body: &[u8], limits: &Limits) -> Option<Vec<(Uuid, String)>> {
    // Checked once here, so neither the split nor the walks check strings again.
    let text = std::str::from_utf8(body).ok()?;
    let start = skip_space(body, 0);
    match body.get(start)? {
        b'[' => walk_array(text, start + 1, limits),
        // One event: the body itself, less JSON's whitespace around it, is
        // what a `RawValue` would hold, and the walk checks it is one whole
        // value, so it is not scanned a second time to split it.
        b'{' => {
            let end = body.len() - body.iter().rev().take_while(|b| is_space(**b)).count();
            let json = &text[start..end];
            if json.len() > limits.max_event_bytes || limits.max_events < 1 {
                return None;
            }
            let mut de = serde_json::Deserializer::from_str(json);
            let client_id = EventWalk(Walk { depth: 0, max: limits.max_depth }).deserialize(&mut de).ok()?;
            de.end().ok()?;
            Some(vec![(client_id.unwrap_or_else(|| derived_id(json)), json.to_string())])
        }
        _ => None,
    }
}

/// JSON's whitespace (RFC 8259): not the form feed that `trim_ascii` strips too.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The first index from `at` that is not JSON's whitespace.
fn skip_space(bytes: &[u8], at: usize) -> usize {
    at + bytes[at..].iter().take_while(|b| is_space(**b)).count()
}

/// The elements of an array whose `[` ends just before `at`: event objects,
/// each walked where it lies. Where its walk ends gives its slice, so the
/// array is not scanned a second time to split it (as a `Vec<&RawValue>`
/// would). Anything but objects separated by commas and JSON's whitespace is
/// left to [`split_checked`].
fn walk_array(text: &str, at: usize, limits: &Limits) -> Option<Vec<(Uuid, String)>> {
    let bytes = text.as_bytes();
    if limits.max_depth < 1 {
        return None;
    }
    let mut at = skip_space(bytes, at);
    let mut events = Vec::new();
    if bytes.get(at) == Some(&b']') {
        return (skip_space(bytes, at + 1) == bytes.len()).then_some(events);
    }
    loop {
        if bytes.get(at) != Some(&b'{') || events.len() == limits.max_events {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(&text[at..]);
        let client_id = EventWalk(Walk { depth: 1, max: limits.max_depth }).deserialize(&mut de).ok()?;
        // Where the walk stopped: just past the event's closing brace.
        let len = de.into_iter::<serde::de::IgnoredAny>().byte_offset();
        let json = &text[at..at + len];
        if json.len() > limits.max_event_bytes {
            return None;
        }
        events.push((client_id.unwrap_or_else(|| derived_id(json)), json.to_string()));
        at = skip_space(bytes, at + len);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b']') => return (skip_space(bytes, at + 1) == bytes.len()).then_some(events),
            _ => return None,
        }
    }
}

/// The reference: depth first, then a full walk of the body, then the split,
/// the limits and each event's id, each its own pass. It gives every refusal
/// its code and message.
fn split_checked(body: &[u8], limits: &Limits) -> Result<Vec<(Uuid, String)>, Result<Refusal, IngestError>> {
    if exceeds_depth(body, limits.max_depth) {
        return Err(Ok(Refusal {
            code: "too_deep",
            message: format!("JSON nests deeper than {} levels", limits.max_depth),
        }));
    }
    serde_json::from_slice::<Checked>(body).map_err(|e| Ok(invalid_json(body, e)))?;
    let split = match body.trim_ascii_start().first() {
        Some(b'[') => serde_json::from_slice::<Vec<&RawValue>>(body),
        Some(b'{') => serde_json::from_slice::<&RawValue>(body).map(|one| vec![one]),
        _ => {
            return Err(Ok(Refusal {
                code: "not_an_event",
                message: "body must be an event object or an array of event objects".into(),
            }))
        }
    };
    let items = split.map_err(|e| Ok(invalid_json(body, e)))?;
    if items.len() > limits.max_events {
        return Err(Err(IngestError::TooLarge(format!(
            "{} events in one request; at most {} are allowed",
            items.len(),
            limits.max_events
        ))));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let json = item.get();
            if json.len() > limits.max_event_bytes {
                return Err(Err(IngestError::TooLarge(format!(
                    "event {i} is {} bytes; at most {} are allowed per event",
                    json.len(),
                    limits.max_event_bytes
                ))));
            }
            Ok((id_of(json), json.to_string()))
        })
        .collect()
}

fn invalid_json(body: &[u8], e: serde_json::Error) -> Refusal {
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        "body is empty; send an event object or an array of them".to_string()
    } else {
        format!("body is not valid JSON: {e}")
    };
    Refusal { code: "invalid_json", message }
}

/// A JSON document walked the way a full parse walks it, every string decoded
/// (so a lone surrogate or a bad escape is refused), with nothing built.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Checked)
    }
}

/// Reads only `event_id`, skipping the rest of the object.
#[derive(Deserialize)]
struct IdProbe<'a> {
    #[serde(borrow)]
    event_id: Option<&'a str>,
}

/// The event's id: its own valid `event_id`, else derived from its content.
fn id_of(json: &str) -> Uuid {
    let client_id =
        serde_json::from_str::<IdProbe>(json).ok().and_then(|p| p.event_id.and_then(|s| Uuid::parse_str(s).ok()));
    client_id.unwrap_or_else(|| derived_id(json))
}

/// The id of an event that brought no usable one of its own.
fn derived_id(json: &str) -> Uuid {
    match serde_json::from_str::<Value>(json) {
        Ok(value) => event_id::derive(&value),
        // Unreachable for a slice serde already validated; derive from the text anyway.
        Err(_) => event_id::derive(&Value::String(json.to_string())),
    }
}

/// A value walked as [`Checked`] walks it, refusing arrays and objects that
/// nest deeper than `max`; `depth` is how many enclose the value.
#[derive(Clone, Copy)]
struct Walk {
    depth: usize,
    max: usize,
}

impl Walk {
    /// The walk one level further in, or an error past the limit.
    fn deeper<E: serde::de::Error>(self) -> Result<Walk, E> {
        if self.depth >= self.max {
            return Err(E::custom("nested too deep"));
        }
        Ok(Walk { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An event object walked as [`Walk`] walks it, giving its `event_id` when
/// [`IdProbe`] would: one `event_id` key whose value is a string without
/// escapes that is a UUID.
struct EventWalk(Walk);

impl<'de> DeserializeSeed<'de> for EventWalk {
    type Value = Option<Uuid>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Option<Uuid>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventWalk {
    type Value = Option<Uuid>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Uuid>, A::Error> {
        let inner = self.0.deeper()?;
        let (mut id, mut seen) = (None, 0);
        while let Some(is_id) = map.next_key_seed(IsEventId)? {
            if is_id {
                seen += 1;
                id = map.next_value_seed(IdValue(inner))?;
            } else {
                map.next_value_seed(inner)?;
            }
        }
        // A repeated field makes the derived `IdProbe` fail: the id is derived.
        Ok(if seen == 1 { id } else { None })
    }
}

/// A key, decoded as any string is, and whether it names `event_id`.
struct IsEventId;

impl<'de> DeserializeSeed<'de> for IsEventId {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for IsEventId {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, key: &str) -> Result<bool, E> {
        Ok(key == "event_id")
    }
}

/// The value of `event_id`: a UUID only from a string borrowed whole (one
/// with escapes cannot be, as in [`IdProbe`]); anything else is walked.
struct IdValue(Walk);

impl<'de> DeserializeSeed<'de> for IdValue {
    type Value = Option<Uuid>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Option<Uuid>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IdValue {
    type Value = Option<Uuid>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Option<Uuid>, E> {
        Ok(Uuid::parse_str(s).ok())
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<Uuid>, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<Uuid>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<Uuid>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<Uuid>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<Uuid>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<Uuid>, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<Uuid>, A::Error> {
        self.0.visit_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Uuid>, A::Error> {
        self.0.visit_map(map).map(|()| None)
    }
}

/// True when arrays and objects nest deeper than `max` (brackets inside strings do not count).
fn exceeds_depth(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn limits() -> Limits {
        Limits { max_body_bytes: 1000, max_decompressed_bytes: 1000, max_events: 3, max_event_bytes: 200, max_depth: 4 }
    }

    fn refusal_code(body: &str) -> &'static str {
        match split_events(body.as_bytes(), &limits()) {
            Err(Ok(r)) => r.code,
            other => panic!("expected a refusal for {body:?}, got {other:?}"),
        }
    }

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert!(!exceeds_depth(br#"{"a": "[[[[[[[[[[{{{{{{", "b": "\"[[[["}"#, 2));
        assert!(exceeds_depth(b"[[[]]]", 2));
        assert!(!exceeds_depth(b"[[]]", 2));
    }

    #[test]
    fn malformed_bodies_are_refused_with_their_reason() {
        assert_eq!(refusal_code(r#"{"session_id": "s""#), "invalid_json");
        assert_eq!(refusal_code(r#"{"session_id": "\ud800"}"#), "invalid_json");
        assert_eq!(refusal_code(""), "invalid_json");
        assert_eq!(refusal_code("not json at all"), "invalid_json");
        assert_eq!(refusal_code("[[[[[[1]]]]]]"), "too_deep");
        assert_eq!(refusal_code("42"), "not_an_event");
    }

    #[test]
    fn one_object_or_an_array_gives_events_with_ids() {
        let one = split_events(br#"{"a": 1}"#, &limits()).unwrap();
        assert_eq!(one.len(), 1);
        let many = split_events(br#"[{"a": 1}, {"a": 2}, 3]"#, &limits()).unwrap();
        assert_eq!(many.len(), 3);
        assert_ne!(many[0].0, many[1].0);
        assert_eq!(many[0].0, one[0].0, "same content, same id");
        assert_eq!(many[2].1, "3", "non-objects are kept for the worker to refuse");
        // Kept exactly as received, whitespace and key order included.
        let spaced = split_events(b"[ {\"b\": 1,  \"a\": 2} ]", &limits()).unwrap();
        assert_eq!(spaced[0].1, "{\"b\": 1,  \"a\": 2}");
    }

    #[test]
    fn a_client_event_id_is_used_and_an_invalid_one_replaced_by_the_content_id() {
        let id = "0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11";
        let with = split_events(format!(r#"{{"event_id": "{id}", "a": 1}}"#).as_bytes(), &limits()).unwrap();
        assert_eq!(with[0].0.to_string(), id);
        let bad = split_events(br#"{"event_id": 5, "a": 1}"#, &limits()).unwrap();
        assert_eq!(bad[0].0, event_id::derive(&serde_json::json!({"event_id": 5, "a": 1})));
    }

    /// The bodies a hostile or broken client sends, and the valid shapes around them.
    fn corpus() -> Vec<Vec<u8>> {
        let id = "0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11";
        let event = |extra: &str| {
            format!(
                r#"{{"session_id": "s", "category": "page interaction", "name": "pageview", "data": {{"host": "h", "path": "/"}}, "timestamp": "2021-01-01 09:15:27"{extra}}}"#
            )
        };
        let mut bodies: Vec<String> = vec![
            event(&format!(r#", "event_id": "{id}""#)),
            format!("[{}, {}]", event(&format!(r#", "event_id": "{id}""#)), event("")),
            event(""),
            format!(r#"{{"event_id": "{id}", "event_id": "{id}"}}"#),
            format!(r#"{{"event\u005fid": "{id}"}}"#),
            r#"{"event_id": "0190b6a4\u002d7c2e-7cc0-8a4e-3b1f2a9d0e11"}"#.into(),
            r#"{"event_id": null}"#.into(),
            r#"{"event_id": 5}"#.into(),
            format!(r#"{{"event_id": ["{id}"]}}"#),
            r#"{"event_id": {"a": [[1]]}}"#.into(),
            r#"{"event_id": "not a uuid"}"#.into(),
            format!(r#"["{id}"]"#),
            format!(r#"[["{id}"]]"#),
            r#"[{"a": 1}, 3, "x", null]"#.into(),
            r#"[{"a": [[1]]}]"#.into(),
            r#"[{"a": [[[1]]]}]"#.into(),
            r#"{"a": [[[1]]]}"#.into(),
            r#"{"a": [[[[1]]]]}"#.into(),
            r#"[{"a": "\ud800"}, {"a": [[[[[[1]]]]]]}]"#.into(),
            r#"[{"a": 1e999}]"#.into(),
            r#"[{"a": -0.0, "b": 18446744073709551616, "c": "\ud83d\ude00\u00e9\"\\\/"}]"#.into(),
            "[]".into(),
            " \n\t{} \r\n".into(),
            "\u{c}{}".into(),
            "[{}, {}, {}, {}]".into(),
            format!(r#"[{{"a": "{}"}}]"#, "x".repeat(300)),
            r#"{"a": 1} {"b": 2}"#.into(),
            r#"{"a": 1},"#.into(),
        ];
        let fixture = |text: &str| serde_json::from_str::<Vec<Value>>(text).expect("fixture");
        for body in fixture(include_str!("../../tests/fixtures/malformed-bodies.json")) {
            bodies.push(body.as_str().map_or_else(|| body.to_string(), str::to_string));
        }
        for hostile in fixture(include_str!("../../tests/fixtures/hostile-strings.json")) {
            let quoted = hostile.to_string();
            bodies.push(event(&format!(r#", "data": {{"path": {quoted}}}"#)));
            bodies.push(format!(r#"{{{quoted}: 1, "event_id": {quoted}}}"#));
        }
        let mut bytes: Vec<Vec<u8>> = bodies.into_iter().map(String::into_bytes).collect();
        bytes.push(b"{\"a\": \"\xff\"}".to_vec());
        bytes.push(b"[{\"a\": 1}, {\"b\": \"\xc3\"}]".to_vec());
        bytes
    }

    /// Every body of the corpus, and thousands of mutants of it, under two
    /// sets of limits: wherever the single walk answers, the reference
    /// answers the same.
    #[test]
    fn the_single_walk_never_answers_differently_from_the_reference() {
        let tight = limits();
        let usual = Limits {
            max_body_bytes: 1 << 20,
            max_decompressed_bytes: 1 << 20,
            max_events: 1000,
            max_event_bytes: 100_000,
            max_depth: 32,
        };
        let same = |body: &[u8], limits: &Limits| match split_common(body, limits) {
            Some(fast) => {
                let reference = split_checked(body, limits).ok();
                assert_eq!(reference.as_ref(), Some(&fast), "{:?}", String::from_utf8_lossy(body));
                true
            }
            None => false,
        };
        let corpus = corpus();
        let taken =
            corpus.iter().filter(|b| same(b, &usual)).count() + corpus.iter().filter(|b| same(b, &tight)).count();
        assert!(taken >= 20, "the single walk took only {taken} bodies of the corpus");

        // Mutants: a few bytes replaced, inserted or removed, from a fixed seed.
        let alphabet = b"\"\\ud80e1-+.,:[]{}n \x0c\xff";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut mutants_taken = 0;
        for round in 0..20_000 {
            let mut body = corpus[round % corpus.len()].clone();
            for _ in 0..1 + next(3) {
                let at = next(body.len() + 1);
                let byte = alphabet[next(alphabet.len())];
                match next(3) {
                    0 if at < body.len() => body[at] = byte,
                    1 if at < body.len() => {
                        body.remove(at);
                    }
                    _ => body.insert(at, byte),
                }
            }
            mutants_taken += usize::from(same(&body, &usual)) + usize::from(same(&body, &tight));
        }
        assert!(mutants_taken >= 1000, "the single walk took only {mutants_taken} mutants");
    }

    #[test]
    fn what_trackers_send_takes_the_single_walk() {
        let id = "0190b6a4-7c2e-7cc0-8a4e-3b1f2a9d0e11";
        let one = format!(r#"{{"event_id": "{id}", "data": {{"path": "/caf\u00e9"}}}}"#);
        let many = format!(r#"[{one}, {{"session_id": "s"}}]"#);
        let usual = Limits { max_event_bytes: 1000, ..limits() };
        let events = split_common(many.as_bytes(), &usual).expect("the common path");
        assert_eq!(events[0].0.to_string(), id);
        assert_eq!(events[0].1, one);
        assert_eq!(events[1].0, event_id::derive(&serde_json::json!({"session_id": "s"})));
        assert!(split_common(one.as_bytes(), &usual).is_some());
    }

    #[test]
    fn count_and_size_limits_are_413s() {
        assert!(matches!(split_events(b"[{},{},{},{}]", &limits()), Err(Err(IngestError::TooLarge(_)))));
        let big = format!(r#"[{{"a": "{}"}}]"#, "x".repeat(300));
        assert!(matches!(split_events(big.as_bytes(), &limits()), Err(Err(IngestError::TooLarge(_)))));
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_content_type(&h).is_err());
        for ok in ["application/json", "text/plain;charset=UTF-8", "Application/JSON; charset=utf-8"] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&h).is_ok(), "{ok}");
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert!(matches!(check_content_type(&h), Err(IngestError::MediaType(_))));
    }

    #[test]
    fn gzip_is_decoded_up_to_the_cap() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decode_content(&h, &gzip(b"{\"a\":1}"), &limits()).unwrap(), b"{\"a\":1}");
        assert!(decode_content(&h, &gzip(&[b' '; 1000]), &limits()).is_ok());
        assert!(matches!(decode_content(&h, &gzip(&[b' '; 1001]), &limits()), Err(IngestError::TooLarge(_))));
        assert!(matches!(decode_content(&h, b"not gzip", &limits()), Err(IngestError::BadEncoding(_))));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(decode_content(&h, b"x", &limits()), Err(IngestError::MediaType(_))));
    }
}
