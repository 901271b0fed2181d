//! Exports: every event or event error a filter selects, as NDJSON or CSV,
//! produced page by page (keyset pages of [`PAGE`] rows), so memory stays the
//! same whatever the size. The read API streams the chunks as its response;
//! `the-eye export` writes them to a file.
//!
//! An export is not one snapshot: rows stored while it runs may or may not be
//! in it (it reads in time order, so late arrivals with old timestamps may be
//! missed). Each row appears at most once.

use std::sync::Arc;

use futures_util::Stream;
use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::domain::{Reason, Timestamp};
use crate::store::{ErrorQuery, EventQuery, EventReader, Order, StatsKind, StoreError, StoredError, StoredEvent};

/// Rows read per page.
pub const PAGE: usize = 1_000;

/// An event as the read API and exports show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventOut {
    event_id: Uuid,
    session_id: String,
    category: String,
    name: String,
    /// The event's `data` object, as sent.
    #[schema(value_type = Object)]
    data: Box<RawValue>,
    /// When it happened (RFC 3339, UTC).
    timestamp: String,
    /// When The Eye received it (RFC 3339, UTC).
    received_at: String,
    /// The application that sent it.
    application: Option<String>,
}

impl From<StoredEvent> for EventOut {
    fn from(e: StoredEvent) -> Self {
        Self {
            event_id: e.event_id,
            session_id: e.session_id,
            category: e.category,
            name: e.name,
            data: e.data,
            timestamp: e.timestamp.to_string(),
            received_at: Timestamp::from(e.received_at).to_string(),
            application: e.application,
        }
    }
}

/// An event error as the read API and exports show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorOut {
    /// Its row id.
    id: i64,
    event_id: Uuid,
    /// The payload as received, as text (it may not be JSON).
    raw: String,
    /// Every rule it broke.
    reasons: Vec<Reason>,
    /// When The Eye received it (RFC 3339, UTC).
    received_at: String,
    /// The application that sent it.
    application: Option<String>,
}

impl From<StoredError> for ErrorOut {
    fn from(e: StoredError) -> Self {
        Self {
            id: e.id,
            event_id: e.event_id,
            raw: e.raw,
            reasons: e.reasons,
            received_at: Timestamp::from(e.received_at).to_string(),
            application: e.application,
        }
    }
}

/// The file format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line, in the read API's shape.
    Ndjson,
    /// Comma-separated, with a header row; formulas neutralised.
    Csv,
}

impl Format {
    /// `ndjson` or `csv`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "ndjson" => Ok(Self::Ndjson),
            "csv" => Ok(Self::Csv),
            other => Err(format!("format must be ndjson or csv, not {other:?}")),
        }
    }

    /// The media type of the response.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Csv => "csv",
        }
    }
}

/// What to export: events or event errors, and which (the limit, order and
/// cursor of the query are the export's own).
#[derive(Clone, Debug)]
pub enum Selection {
    /// Events, oldest first.
    Events(EventQuery),
    /// Event errors, oldest first.
    Errors(ErrorQuery),
}

/// The filters of an export, the same from the read API (query parameters)
/// and from `the-eye export` (flags).
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams, clap::Args)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportFilters {
    /// `ndjson` (the default) or `csv`.
    #[arg(long, default_value = "ndjson")]
    #[param(value_type = Option<String>, pattern = "^(ndjson|csv)$", example = "csv")]
    pub format: Option<String>,
    /// `events` (the default) or `errors`.
    #[arg(long, default_value = "events")]
    #[param(value_type = Option<String>, pattern = "^(events|errors)$", example = "events")]
    pub kind: Option<String>,
    /// Only this session.
    #[arg(long)]
    #[param(example = "e2085be5-9137-4e4e-80b5-f1ffddc25421")]
    pub session_id: Option<String>,
    /// Only this category.
    #[arg(long)]
    #[param(example = "page interaction")]
    pub category: Option<String>,
    /// Only this event name (events only).
    #[arg(long)]
    #[param(example = "pageview")]
    pub name: Option<String>,
    /// Only errors with a reason of this code (errors only).
    #[arg(long)]
    pub reason: Option<String>,
    /// From this time on (RFC 3339, or `YYYY-MM-DD HH:MM:SS` as UTC): event time, or time received for errors.
    #[arg(long)]
    #[param(format = DateTime, example = "2026-01-01T00:00:00Z")]
    pub from: Option<String>,
    /// Before this time.
    #[arg(long)]
    #[param(format = DateTime, example = "2026-01-02T00:00:00Z")]
    pub to: Option<String>,
}

impl ExportFilters {
    /// The format and the selection these filters ask for; a message naming the bad one otherwise.
    pub fn parse(&self) -> Result<(Format, Selection), String> {
        let format = Format::parse(self.format.as_deref().unwrap_or("ndjson"))?;
        let time = |name, v: &Option<String>| crate::paging::time_param(name, v.as_deref()).map_err(|e| e.0);
        let (from, to) = (time("from", &self.from)?, time("to", &self.to)?);
        let selection = match self.kind.as_deref().unwrap_or("events") {
            "events" => {
                if self.reason.is_some() {
                    return Err("reason filters event errors: add kind=errors".into());
                }
                Selection::Events(EventQuery {
                    session_id: self.session_id.clone(),
                    category: self.category.clone(),
                    name: self.name.clone(),
                    from,
                    to,
                    ..Default::default()
                })
            }
            "errors" => {
                if self.name.is_some() {
                    return Err("event errors have no name to filter by".into());
                }
                Selection::Errors(ErrorQuery {
                    session_id: self.session_id.clone(),
                    category: self.category.clone(),
                    reason: self.reason.clone(),
                    from,
                    to,
                    ..Default::default()
                })
            }
            other => return Err(format!("kind must be events or errors, not {other:?}")),
        };
        Ok((format, selection))
    }
}

/// Cells a spreadsheet would take for a formula get a leading `'` (OWASP,
/// "CSV Injection"): those beginning with `=`, `+`, `-`, `@`, a tab or a
/// carriage return.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

const EVENT_HEADER: [&str; 8] =
    ["event_id", "timestamp", "received_at", "session_id", "category", "name", "application", "data"];
const ERROR_HEADER: [&str; 7] = ["id", "event_id", "received_at", "application", "category", "reasons", "raw"];

fn csv_rows<const N: usize>(header: Option<[&str; N]>, rows: impl Iterator<Item = [String; N]>) -> Vec<u8> {
    let mut out = csv::Writer::from_writer(Vec::with_capacity(PAGE * 200));
    // Writing to a Vec cannot fail.
    if let Some(h) = header {
        let _ = out.write_record(h);
    }
    for row in rows {
        let _ = out.write_record(row.iter().map(|c| neutralise(c).into_owned()));
    }
    out.into_inner().unwrap_or_default()
}

fn ndjson<T: Serialize>(rows: impl Iterator<Item = T>) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE * 300);
    for row in rows {
        // Serializing these types cannot fail.
        let _ = serde_json::to_writer(&mut out, &row);
        out.push(b'\n');
    }
    out
}

fn event_cells(e: StoredEvent) -> [String; 8] {
    let application = e.application.unwrap_or_default();
    [
        e.event_id.to_string(),
        e.timestamp.to_string(),
        Timestamp::from(e.received_at).to_string(),
        e.session_id,
        e.category,
        e.name,
        application,
        e.data.get().to_string(),
    ]
}

fn error_cells(e: StoredError) -> [String; 7] {
    [
        e.id.to_string(),
        e.event_id.to_string(),
        Timestamp::from(e.received_at).to_string(),
        e.application.unwrap_or_default(),
        e.category.unwrap_or_default(),
        serde_json::to_string(&e.reasons).unwrap_or_default(),
        e.raw,
    ]
}

/// One page of `selection` serialized, and the selection moved past it
/// (`None` after the last page).
async fn page(
    reader: &dyn EventReader,
    selection: Selection,
    format: Format,
    first: bool,
) -> Result<(Vec<u8>, Option<Selection>), StoreError> {
    match selection {
        Selection::Events(mut q) => {
            q.limit = PAGE;
            q.order = Order::Asc;
            let page = reader.events(&q).await?;
            let rows = page.items.into_iter();
            let bytes = match format {
                Format::Ndjson => ndjson(rows.map(EventOut::from)),
                Format::Csv => csv_rows(first.then_some(EVENT_HEADER), rows.map(event_cells)),
            };
            q.after = page.next;
            Ok((bytes, page.next.map(|_| Selection::Events(q))))
        }
        Selection::Errors(mut q) => {
            q.limit = PAGE;
            q.order = Order::Asc;
            let page = reader.errors(&q).await?;
            let rows = page.items.into_iter();
            let bytes = match format {
                Format::Ndjson => ndjson(rows.map(ErrorOut::from)),
                Format::Csv => csv_rows(first.then_some(ERROR_HEADER), rows.map(error_cells)),
            };
            q.after = page.next;
            Ok((bytes, page.next.map(|_| Selection::Errors(q))))
        }
    }
}

/// The export as a stream of chunks, one per page; an error ends it.
pub fn chunks(
    reader: Arc<dyn EventReader>,
    selection: Selection,
    format: Format,
) -> impl Stream<Item = Result<Vec<u8>, StoreError>> + Send + 'static {
    futures_util::stream::try_unfold((reader, Some(selection), true), move |(reader, next, first)| async move {
        let Some(selection) = next else { return Ok(None) };
        let (bytes, next) = page(reader.as_ref(), selection, format, first).await?;
        Ok(Some((bytes, (reader, next, false))))
    })
}

/// About how many rows `selection` holds, from the rollups, when its filters
/// are ones they count by (for a progress bar); `None` otherwise.
pub async fn estimate(reader: &dyn EventReader, selection: &Selection) -> Option<u64> {
    let (kind, category, name, from, to) = match selection {
        Selection::Events(q) if q.session_id.is_none() && q.search.is_none() => {
            (StatsKind::Events, q.category.clone(), q.name.clone(), q.from, q.to)
        }
        Selection::Errors(q) if q.session_id.is_none() && q.reason.is_none() && q.ids.is_empty() => {
            (StatsKind::Errors, q.category.clone(), None, q.from, q.to)
        }
        _ => return None,
    };
    let range = (from.map(Timestamp::as_datetime), to.map(Timestamp::as_datetime));
    let n = super::counted(reader, kind, range, category, name).await.ok()?;
    Some(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_others_are_not() {
        for cell in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(cell), format!("'{cell}"));
        }
        for cell in ["", "1", "page interaction", "{\"a\":\"=1\"}", "'quoted"] {
            assert_eq!(neutralise(cell), cell);
        }
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let bytes = csv_rows(Some(["a", "b"]), [["x,y".to_string(), "=cmd|' /C calc'!A0".to_string()]].into_iter());
        assert_eq!(String::from_utf8(bytes).unwrap(), "a,b\n\"x,y\",'=cmd|' /C calc'!A0\n");
    }
}
