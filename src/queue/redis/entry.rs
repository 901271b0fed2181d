//! How envelopes are written into stream entries and read back.
//!
//! An entry packs the envelopes of one `enqueue` (one request), so a request
//! of 100 events costs Redis one `XADD`, not 100. Its fields:
//!
//! - `n`: how many records it holds (first, so a script can count cheaply);
//! - `a`: failed attempts so far (absent when none);
//! - `e`: the records, a JSON array. A record is `[id, received µs,
//!   application or null, body]` where `body` is the event's JSON as it came,
//!   unescaped, or `[id, µs, application, raw, reason]` for a refused body
//!   (`raw` a JSON string, `reason` its `Reason`, or null for an event whose
//!   text is not JSON, which ingest never sends but the queue still keeps).
//!
//! Entries written before packing (`i`, `t`, `b`, `r`, `a`, `p`: one event
//! each) are read as entries of one record, so a queue survives the upgrade.
//!
//! A [`DeliveryTag`] is the entry's stream id and the record's index in it:
//! `ms << 64 | seq << INDEX_BITS | index`.

use chrono::DateTime;
use redis::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::super::{Body, DeliveryTag, Envelope, QueueError};
use super::unavailable;
use crate::domain::Reason;

/// Bits of a tag that index a record within its entry.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u128 = (1 << INDEX_BITS) - 1;
/// Most records one entry holds; a larger `enqueue` writes several entries.
pub const MAX_RECORDS: usize = 10_000;

/// One stream entry, read back.
#[derive(Debug)]
pub struct Entry {
    /// The tag of its first record; `tag | index` tags each record.
    pub base: u128,
    /// Failed attempts of every record in it.
    pub attempts: u32,
    pub records: Vec<Envelope>,
    /// Indexes of records already settled (by a consumer that held it before).
    pub settled: Vec<usize>,
}

/// The entry and the index in it that a tag names.
pub fn split(tag: DeliveryTag) -> (u128, usize) {
    (tag.0 & !INDEX_MASK, (tag.0 & INDEX_MASK) as usize)
}

pub fn tag(base: u128, index: usize) -> DeliveryTag {
    DeliveryTag(base | index as u128)
}

/// The tag base of stream id `ms-seq`.
pub fn base_of(id: &str) -> Result<u128, QueueError> {
    let (ms, seq) = id.split_once('-').ok_or_else(|| unavailable(format!("bad stream id {id}")))?;
    let ms: u64 = ms.parse().map_err(unavailable)?;
    let seq: u64 = seq.parse().map_err(unavailable)?;
    if seq >> (64 - INDEX_BITS) != 0 {
        return Err(unavailable(format!("stream id {id} has a sequence too large to tag")));
    }
    Ok((u128::from(ms) << 64) | (u128::from(seq) << INDEX_BITS))
}

/// How the stream notes a settled record of an entry not yet removed: a
/// member of a sorted set whose members sort by entry, so that one range
/// finds or removes an entry's notes.
pub fn note_of(tag: DeliveryTag) -> String {
    let (base, index) = split(tag);
    format!("{}:{index}", id_of(base))
}

/// The stream id of an entry's tag base.
pub fn id_of(base: u128) -> String {
    format!("{}-{}", (base >> 64) as u64, (base as u64) >> INDEX_BITS)
}

/// A string in a reply, borrowed: an entry's records are read in place, not copied first.
pub fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn json_string(out: &mut String, s: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Whether `json` can go into a record as it is: one JSON value, nothing around it.
fn is_bare_json(json: &str) -> bool {
    let trimmed = json.trim_matches(|c: char| c.is_ascii_whitespace());
    trimmed.len() == json.len() && serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok()
}

/// The value of an entry's `e` field: its records.
pub fn pack(records: &[&Envelope]) -> String {
    let size: usize = records
        .iter()
        .map(|e| match &e.body {
            Body::Event(json) => json.len(),
            Body::Rejected { raw, .. } => raw.len() + 128,
        })
        .sum();
    let mut out = String::with_capacity(size + records.len() * 80 + 2);
    out.push('[');
    for (i, e) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("[\"");
        out.push_str(e.event_id.simple().encode_lower(&mut Uuid::encode_buffer()));
        out.push_str("\",");
        out.push_str(&e.received_at.timestamp_micros().to_string());
        out.push(',');
        match &e.application {
            Some(app) => json_string(&mut out, app),
            None => out.push_str("null"),
        }
        out.push(',');
        match &e.body {
            Body::Event(json) if is_bare_json(json) => out.push_str(json),
            Body::Event(text) => {
                json_string(&mut out, text);
                out.push_str(",null");
            }
            Body::Rejected { raw, reason } => {
                json_string(&mut out, raw);
                out.push(',');
                out.push_str(&serde_json::to_string(reason).unwrap_or_else(|_| "null".into()));
            }
        }
        out.push(']');
    }
    out.push(']');
    out
}

fn decode_records(json: &str) -> Result<Vec<Envelope>, QueueError> {
    let bad = |what: &str| unavailable(format!("unexpected stream record: {what}"));
    let rows: Vec<Vec<&RawValue>> = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    rows.into_iter()
        .map(|row| {
            let field = |i: usize| row.get(i).copied().ok_or_else(|| bad("too few fields"));
            let id: &str = serde_json::from_str(field(0)?.get()).map_err(|_| bad("id"))?;
            let event_id = Uuid::parse_str(id).map_err(|_| bad("id"))?;
            let micros: i64 = serde_json::from_str(field(1)?.get()).map_err(|_| bad("time"))?;
            let received_at = DateTime::from_timestamp_micros(micros).ok_or_else(|| bad("time"))?;
            let application: Option<String> = serde_json::from_str(field(2)?.get()).map_err(|_| bad("application"))?;
            let body = match row.get(4) {
                None => Body::Event(field(3)?.get().to_owned()),
                Some(reason) => {
                    let raw: String = serde_json::from_str(field(3)?.get()).map_err(|_| bad("raw body"))?;
                    match serde_json::from_str::<Option<Reason>>(reason.get()).map_err(|_| bad("reason"))? {
                        None => Body::Event(raw),
                        Some(reason) => Body::Rejected { raw, reason },
                    }
                }
            };
            Ok(Envelope { event_id, received_at, application, body })
        })
        .collect()
}

/// Decodes one stream entry `[id, [field, value, …]]`, packed or from before
/// packing. An entry whose fields cannot be read (written by something else,
/// or damaged) is not an error that would block the queue: it becomes one
/// refused body, so that it ends as an event error with its text to look at.
pub fn decode(entry: &Value) -> Result<Entry, QueueError> {
    let bad = || unavailable("unexpected stream entry shape");
    let Value::Array(parts) = entry else { return Err(bad()) };
    let id = parts.first().and_then(text).ok_or_else(bad)?;
    let base = base_of(id)?;
    let fields = match parts.get(1) {
        Some(Value::Array(fields)) => fields.as_slice(),
        _ => &[],
    };
    let (records, attempts) = read_fields(fields).unwrap_or_else(|why| (vec![damaged(base, fields, &why)], 0));
    Ok(Entry { base, attempts, records, settled: Vec::new() })
}

fn read_fields(fields: &[Value]) -> Result<(Vec<Envelope>, u32), String> {
    let (mut records, mut attempts) = (None, 0u32);
    // Fields of an entry from before packing.
    let (mut event_id, mut received, mut reason, mut body, mut application) = (None, None, None, None, None);
    for pair in fields.chunks(2) {
        let (Some(k), Some(v)) = (pair.first().and_then(text), pair.get(1).and_then(text)) else { continue };
        match k {
            "e" => records = Some(decode_records(v).map_err(|e| e.to_string())?),
            "a" => attempts = v.parse().unwrap_or(0),
            "i" => event_id = Uuid::parse_str(v).ok(),
            "t" => received = v.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros),
            "r" => reason = Some(serde_json::from_str::<Reason>(v).map_err(|e| format!("reason: {e}"))?),
            "b" => body = Some(v.to_owned()),
            "p" => application = Some(v.to_owned()),
            _ => {}
        }
    }
    let records = match records {
        Some(records) => records,
        None => {
            let (Some(event_id), Some(received_at), Some(body)) = (event_id, received, body) else {
                return Err("neither records nor an event id, time and body".into());
            };
            let body = match reason {
                None => Body::Event(body),
                Some(reason) => Body::Rejected { raw: body, reason },
            };
            vec![Envelope { event_id, received_at, application, body }]
        }
    };
    if records.is_empty() || records.len() > MAX_RECORDS {
        return Err(format!("{} records", records.len()));
    }
    Ok((records, attempts))
}

/// Longest text of an unreadable entry kept in its event error.
const DAMAGED_TEXT_BYTES: usize = 64 * 1024;

/// The event error that stands for an entry nobody can read. Its id comes
/// from the stream id, so reading the entry twice stores it once.
fn damaged(base: u128, fields: &[Value], why: &str) -> Envelope {
    let mut raw = String::new();
    for pair in fields.chunks(2) {
        let k = pair.first().and_then(text).unwrap_or_default();
        let v = pair.get(1).and_then(text).unwrap_or_default();
        raw.push_str(&format!("{k}={v}\n"));
    }
    if raw.len() > DAMAGED_TEXT_BYTES {
        let mut cut = DAMAGED_TEXT_BYTES;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw.truncate(cut);
    }
    let ms = (base >> 64) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6..14].copy_from_slice(&((base as u64) >> INDEX_BITS).to_be_bytes());
    Envelope {
        event_id: Uuid::new_v8(bytes),
        received_at: DateTime::from_timestamp_millis(ms as i64).unwrap_or_default(),
        application: None,
        body: Body::Rejected {
            raw,
            reason: Reason::new("queue", "unreadable_entry", format!("the queue entry could not be read: {why}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, String)]) -> Value {
        let flat = fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect();
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    fn at(micros: i64) -> chrono::DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    #[test]
    fn stream_ids_round_trip_through_tags() {
        for id in ["0-0", "1700000000000-0", "1700000000000-42", "18446744073709551615-17592186044415"] {
            let base = base_of(id).unwrap();
            assert_eq!(id_of(base), id);
            assert_eq!(split(tag(base, 7)), (base, 7));
        }
        // Tags order like stream ids, then like records within an entry.
        assert!(tag(base_of("1700000000000-1").unwrap(), 9) < tag(base_of("1700000000001-0").unwrap(), 0));
        assert!(tag(base_of("1700000000000-1").unwrap(), 1) < tag(base_of("1700000000000-1").unwrap(), 2));
        assert!(base_of("nope").is_err());
        assert!(base_of("1-17592186044416").is_err(), "a sequence that would collide with the index is refused");
    }

    #[test]
    fn records_round_trip_unchanged_whatever_the_body() {
        let records = [
            Envelope {
                event_id: Uuid::new_v4(),
                received_at: at(1_700_000_000_123_456),
                application: Some("shop \"eu\"".into()),
                body: Body::Event(r#"{"a":[1,2,{"b":"\n\u0000"}],"c":"é"}"#.into()),
            },
            Envelope {
                event_id: Uuid::new_v4(),
                received_at: at(1),
                application: None,
                body: Body::Rejected { raw: "not json \u{0} \u{202e}]".into(), reason: Reason::new("body", "x", "y") },
            },
            // Text that is not JSON stays as it was, whitespace included.
            Envelope {
                event_id: Uuid::new_v4(),
                received_at: at(2),
                application: None,
                body: Body::Event(" {\"a\":1} ".into()),
            },
            Envelope {
                event_id: Uuid::new_v4(),
                received_at: at(3),
                application: None,
                body: Body::Event("}{".into()),
            },
        ];
        let refs: Vec<&Envelope> = records.iter().collect();
        let packed = entry("5-3", &[("n", "4".into()), ("a", "2".into()), ("e", pack(&refs))]);
        let got = decode(&packed).unwrap();
        assert_eq!(got.records, records);
        assert_eq!(got.attempts, 2);
        assert_eq!(got.base, base_of("5-3").unwrap());
    }

    #[test]
    fn entries_from_before_packing_are_read_as_one_record() {
        let id = Uuid::new_v4();
        let old = entry(
            "7-0",
            &[
                ("i", id.simple().to_string()),
                ("t", "1700000000000001".into()),
                ("b", "{\"x\":1}".into()),
                ("a", "3".into()),
                ("p", "shop".into()),
            ],
        );
        let got = decode(&old).unwrap();
        assert_eq!(got.attempts, 3);
        assert_eq!(
            got.records,
            vec![Envelope {
                event_id: id,
                received_at: at(1_700_000_000_000_001),
                application: Some("shop".into()),
                body: Body::Event("{\"x\":1}".into()),
            }]
        );
    }

    #[test]
    fn a_damaged_entry_becomes_one_refused_body_with_its_text() {
        for e in
            ["", "[", "[[]]", "[[\"nope\",1,null,{}]]", "[[\"00000000000000000000000000000000\",\"x\",null,1]]", "[]"]
        {
            let got = decode(&entry("1-2", &[("n", "1".into()), ("e", e.into())])).unwrap();
            assert_eq!(got.records.len(), 1, "{e:?}");
            let Body::Rejected { raw, reason } = &got.records[0].body else { panic!("{e:?} read as an event") };
            assert_eq!(reason.code, "unreadable_entry");
            assert!(raw.contains(&format!("e={e}")), "{raw:?}");
            // The same entry read again is the same event error.
            assert_eq!(decode(&entry("1-2", &[("e", e.into())])).unwrap().records[0].event_id, got.records[0].event_id);
        }
        assert!(decode(&Value::Nil).is_err(), "without a stream id there is nothing to acknowledge");
    }
}
