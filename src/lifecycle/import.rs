//! `the-eye import django`: brings over the data of the Django original this
//! service replaces, from its PostgreSQL database:
//!
//! - `collector_category(id, name)` → categories, created where missing
//!   (active, not strict, so nothing sent later is refused for want of a type);
//! - `collector_event(id, session_id, category_id, name, data, timestamp,
//!   created_at)` → events, with ids derived from their content the way ingest
//!   derives them, so a second run adds nothing;
//! - `collector_eventerror(id, message, data, created_at)` → event errors whose
//!   one reason (code `django_error`) carries the message.
//!
//! Events are imported as they were stored, never refused: those that today's
//! rules would refuse (a schema, a length) are stored with the application
//! [`NONCONFORMING`], the others with [`IMPORTED`], so either can be found.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgPoolOptions;
use sqlx::Row;
use uuid::Uuid;

use crate::domain::{self, Catalog, Reason, Rules, Timestamp, ValidEvent};
use crate::store::{Category, NewEvent, NewEventError, StatsKind, Store, WriteBatch};

/// The application of imported events that pass today's rules.
pub const IMPORTED: &str = "django";
/// The application of imported events that today's rules would refuse.
pub const NONCONFORMING: &str = "django-nonconforming";
/// The reason code of imported event errors.
pub const ERROR_CODE: &str = "django_error";

/// Rows read and written per step.
const PAGE: i64 = 5_000;

/// What an import read and added.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// Categories created (the others existed).
    pub categories_created: u64,
    /// Events read from the source.
    pub events_read: u64,
    /// Of those, how many today's rules would refuse.
    pub events_nonconforming: u64,
    /// Events the store did not have yet.
    pub events_added: u64,
    /// Event errors read from the source.
    pub errors_read: u64,
    /// Event errors the store did not have yet.
    pub errors_added: u64,
}

/// Why an import stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source cannot be read, or is not the Django original's database.
    #[error("{0}")]
    Source(String),
    /// The Eye's store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn source(e: sqlx::Error) -> ImportError {
    ImportError::Source(format!("reading the Django database: {e}"))
}

/// How many events and errors the store holds (from the rollups).
async fn stored(store: &dyn Store, kind: StatsKind) -> Result<i64, ImportError> {
    Ok(super::counted(store, kind, (None, None), None, None).await?)
}

/// An event error's id: its time, then a digest of the source row.
fn error_id(id: i64, data: &str, created_at: DateTime<Utc>) -> Uuid {
    let hash = Sha256::digest(format!("django collector_eventerror {id} {data}").as_bytes());
    let millis = created_at.timestamp_millis().clamp(0, (1 << 48) - 1) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&hash[..10]);
    Uuid::new_v8(bytes)
}

/// Imports from the Django database at `url` into `store`; `progress` hears
/// (rows done, rows in all) after every step.
pub async fn import_django(
    url: &str,
    store: &dyn Store,
    rules: &Rules,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<ImportReport, ImportError> {
    let db = PgPoolOptions::new().max_connections(1).connect(url).await.map_err(source)?;
    for table in ["collector_category", "collector_event", "collector_eventerror"] {
        let found: Option<String> =
            sqlx::query_scalar("SELECT to_regclass($1)::text").bind(table).fetch_one(&db).await.map_err(source)?;
        if found.is_none() {
            return Err(ImportError::Source(format!(
                "the database has no table {table}: is it the Django original's (its `collector` app)?"
            )));
        }
    }
    let mut report = ImportReport::default();

    // Categories, by id.
    let rows = sqlx::query("SELECT id::bigint AS id, name::text AS name FROM collector_category")
        .fetch_all(&db)
        .await
        .map_err(source)?;
    let categories: std::collections::HashMap<i64, String> =
        rows.iter().map(|r| (r.get::<i64, _>("id"), r.get::<String, _>("name"))).collect();
    let existing: Vec<String> = store.categories().await?.into_iter().map(|c| c.name).collect();
    for name in categories.values().filter(|n| !existing.contains(n)) {
        let category = Category {
            name: name.clone(),
            description: "Imported from the Django original".into(),
            active: true,
            strict: false,
            ..Default::default()
        };
        store.save_category(&category).await?;
        report.categories_created += 1;
    }
    let (defs, types) = store.catalog().await?;
    let catalog = Catalog::new(defs, types).map_err(|e| ImportError::Source(format!("the catalog: {e:?}")))?;

    let total: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM collector_event) + (SELECT COUNT(*) FROM collector_eventerror)",
    )
    .fetch_one(&db)
    .await
    .map_err(source)?;
    let total = total as u64;
    let (events_before, errors_before) =
        (stored(store, StatsKind::Events).await?, stored(store, StatsKind::Errors).await?);
    progress(0, total);

    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(
            "SELECT id::bigint AS id, session_id::text AS session_id, category_id::bigint AS category_id,
                    name::text AS name, data::text AS data, timestamp, created_at
             FROM collector_event WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(&db)
        .await
        .map_err(source)?;
        let Some(last) = rows.last() else { break };
        after = last.get("id");
        let mut batch = WriteBatch::default();
        for r in &rows {
            let (conforming, event) = event_of(r, &categories, &catalog, rules)?;
            report.events_nonconforming += u64::from(!conforming);
            batch.events.push(event);
        }
        report.events_read += rows.len() as u64;
        store.write(&batch).await?;
        progress(report.events_read, total);
    }

    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(
            "SELECT id::bigint AS id, message::text AS message, data::text AS data, created_at
             FROM collector_eventerror WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(&db)
        .await
        .map_err(source)?;
        let Some(last) = rows.last() else { break };
        after = last.get("id");
        let errors: Vec<NewEventError> = rows
            .iter()
            .map(|r| {
                let (id, created_at): (i64, DateTime<Utc>) = (r.get("id"), r.get("created_at"));
                let raw: Option<String> = r.get("data");
                let raw = raw.unwrap_or_else(|| "null".into());
                NewEventError {
                    event_id: error_id(id, &raw, created_at),
                    reasons: vec![Reason::new(
                        "",
                        ERROR_CODE,
                        r.get::<Option<String>, _>("message").unwrap_or_default(),
                    )],
                    raw,
                    received_at: created_at,
                    application: Some(IMPORTED.into()),
                }
            })
            .collect();
        report.errors_read += errors.len() as u64;
        store.write(&WriteBatch { events: vec![], errors }).await?;
        progress(report.events_read + report.errors_read, total);
    }
    store.maintain().await?;
    report.events_added = (stored(store, StatsKind::Events).await? - events_before).max(0) as u64;
    report.errors_added = (stored(store, StatsKind::Errors).await? - errors_before).max(0) as u64;
    db.close().await;
    Ok(report)
}

/// One `collector_event` row as an event, and whether today's rules accept it.
fn event_of(
    r: &sqlx::postgres::PgRow,
    categories: &std::collections::HashMap<i64, String>,
    catalog: &Catalog,
    rules: &Rules,
) -> Result<(bool, NewEvent), ImportError> {
    let id: i64 = r.get("id");
    let category_id: Option<i64> = r.get("category_id");
    let category = category_id.and_then(|c| categories.get(&c).cloned()).unwrap_or_default();
    let session_id: String = r.get::<Option<String>, _>("session_id").unwrap_or_default();
    let name: String = r.get::<Option<String>, _>("name").unwrap_or_default();
    let data_text: Option<String> = r.get("data");
    let data: Value = data_text.as_deref().map(serde_json::from_str).transpose().ok().flatten().unwrap_or(Value::Null);
    let timestamp: DateTime<Utc> = r.get("timestamp");
    let created_at: DateTime<Utc> = r.get("created_at");
    let timestamp = Timestamp::from(timestamp);
    // The payload as the original's API took it; its content gives the id.
    let payload = json!({
        "session_id": session_id, "category": category, "name": name, "data": data,
        "timestamp": timestamp.to_string(),
    });
    let event_id = domain::event_id::derive(&payload);
    let (conforming, event) = match domain::validate(payload, event_id, created_at, catalog, rules) {
        Ok(valid) => (true, valid),
        Err(_) => {
            let data = match data {
                Value::Object(map) => map,
                other => Map::from_iter([("value".to_string(), other)]),
            };
            (false, ValidEvent { event_id, session_id, category, name, data, timestamp })
        }
    };
    if event.category.is_empty() {
        return Err(ImportError::Source(format!("collector_event {id} has no category")));
    }
    let application = if conforming { IMPORTED } else { NONCONFORMING };
    Ok((conforming, NewEvent { event, received_at: created_at, application: Some(application.into()) }))
}
