//! Event timestamps: RFC 3339, or the Django original's `YYYY-MM-DD HH:MM:SS[.ffffff]` read as UTC.

use chrono::{DateTime, NaiveDateTime, Utc};

/// A parsed, valid event timestamp (UTC, microsecond precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

/// The text is neither RFC 3339 nor the legacy format.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected RFC 3339 (2021-01-01T09:15:27Z) or YYYY-MM-DD HH:MM:SS[.ffffff] (UTC)")]
pub struct InvalidTimestamp;

impl Timestamp {
    /// Parses either accepted format; precision beyond microseconds is truncated.
    pub fn parse(text: &str) -> Result<Self, InvalidTimestamp> {
        let text = text.trim();
        let parsed = if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            dt.with_timezone(&Utc)
        } else {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").map_err(|_| InvalidTimestamp)?.and_utc()
        };
        Self::from_micros(parsed.timestamp_micros()).ok_or(InvalidTimestamp)
    }

    /// From microseconds since the Unix epoch, as stored.
    pub fn from_micros(micros: i64) -> Option<Self> {
        DateTime::from_timestamp_micros(micros).map(Self)
    }

    /// Microseconds since the Unix epoch, as stored.
    pub fn micros(self) -> i64 {
        self.0.timestamp_micros()
    }

    /// The instant as a chrono value.
    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(dt: DateTime<Utc>) -> Self {
        // Truncate to the stored precision so a value round-trips unchanged.
        Self(DateTime::from_timestamp_micros(dt.timestamp_micros()).unwrap_or(dt))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_offset_is_converted_to_utc() {
        let ts = Timestamp::parse("2021-01-01T10:15:27.5+01:00").unwrap();
        assert_eq!(ts.to_string(), "2021-01-01T09:15:27.500000Z");
    }

    #[test]
    fn legacy_format_with_fraction_is_utc() {
        let ts = Timestamp::parse("2021-01-01 09:15:27.243860").unwrap();
        assert_eq!(ts.to_string(), "2021-01-01T09:15:27.243860Z");
    }

    #[test]
    fn legacy_format_without_fraction() {
        let ts = Timestamp::parse("2021-01-01 09:15:27").unwrap();
        assert_eq!(ts.micros(), 1_609_492_527_000_000);
    }

    #[test]
    fn nanoseconds_are_truncated_to_micros() {
        let ts = Timestamp::parse("2021-01-01T09:15:27.123456789Z").unwrap();
        assert_eq!(ts.micros() % 1_000_000, 123_456);
    }

    #[test]
    fn garbage_and_partial_dates_are_refused() {
        for bad in ["", "yesterday", "2021-01-01", "2021-13-01 00:00:00", "2021-01-01T09:15:27", "1609492527"] {
            assert_eq!(Timestamp::parse(bad), Err(InvalidTimestamp), "{bad:?}");
        }
    }
}
