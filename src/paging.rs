//! Page parameters shared by the read API and the admin panel: `limit`,
//! time bounds, and the opaque keyset cursors both hand out.
//!
//! A cursor is base64 of a small text: `a:<µs>:<row>` or `d:<µs>:<row>` for
//! events (the order it was made for, so it cannot be replayed with the other
//! order and skip events), `x:<id>` for event errors.

use base64::Engine;

use crate::domain::Timestamp;
use crate::store::{EventCursor, Order};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 1000;

/// A page parameter that is malformed; the text says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadParam(pub String);

/// `from`/`to`: a timestamp in either accepted format, if given.
pub fn time_param(name: &str, value: Option<&str>) -> Result<Option<Timestamp>, BadParam> {
    value.map(|v| Timestamp::parse(v).map_err(|e| BadParam(format!("{name}: {e}")))).transpose()
}

/// `limit`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
pub fn limit_param(value: Option<&str>) -> Result<usize, BadParam> {
    match value {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => Ok(n),
            _ => Err(BadParam(format!("limit must be a whole number from 1 to {MAX_LIMIT}"))),
        },
    }
}

fn encode(text: String) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode(cursor: &str) -> Result<String, BadParam> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| BadParam("cursor is not one this API handed out".into()))
}

/// The opaque cursor that continues after `c` in `order`.
pub fn next_cursor(c: EventCursor, order: Order) -> String {
    let tag = if order == Order::Asc { "a" } else { "d" };
    encode(format!("{tag}:{}:{}", c.timestamp_micros, c.row_id))
}

/// Reads an event cursor made for `order`.
pub fn event_cursor(cursor: &str, order: Order) -> Result<EventCursor, BadParam> {
    let text = decode(cursor)?;
    let bad = || BadParam("cursor is not one this API handed out for this order".into());
    let mut parts = text.split(':');
    let expected = if order == Order::Asc { "a" } else { "d" };
    if parts.next() != Some(expected) {
        return Err(bad());
    }
    let timestamp_micros = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let row_id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    Ok(EventCursor { timestamp_micros, row_id })
}

/// The opaque cursor that continues after event error `id`.
pub fn next_error_cursor(id: i64) -> String {
    encode(format!("x:{id}"))
}

/// Reads an event-error cursor.
pub fn error_cursor(cursor: &str) -> Result<i64, BadParam> {
    let text = decode(cursor)?;
    text.strip_prefix("x:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| BadParam("cursor is not one this API handed out".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_keep_their_order() {
        let c = EventCursor { timestamp_micros: 1_600_000_000_000_000, row_id: 42 };
        let asc = next_cursor(c, Order::Asc);
        assert_eq!(event_cursor(&asc, Order::Asc), Ok(c));
        assert!(event_cursor(&asc, Order::Desc).is_err(), "a cursor is for one order");
        assert_eq!(error_cursor(&next_error_cursor(7)), Ok(7));
        assert!(error_cursor("not base64 !").is_err());
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit_param(None), Ok(DEFAULT_LIMIT));
        assert_eq!(limit_param(Some("1000")), Ok(1000));
        assert!(limit_param(Some("0")).is_err() && limit_param(Some("1001")).is_err());
    }
}
