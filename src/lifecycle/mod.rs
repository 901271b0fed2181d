//! The life of the data after it is stored: exports, retention (the workers'
//! upkeep and `the-eye upkeep`) and erasure. The read API, the admin panel and
//! the CLI all come here, so each does the same thing the same way.

pub mod export;
pub mod import;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::config::Retention;
use crate::store::{
    floor_to, AdminAction, Erased, EventReader, Expired, StatsGroup, StatsKind, StatsQuery, Store, StoreError,
    ROLLUP_SECS,
};

/// Rows one retention step deletes, in one transaction. Measured on SQLite:
/// about 20 ms for 2,000 events, so a worker's write waits at most that long.
pub const EXPIRE_BATCH: usize = 2_000;

/// The shortest pause between retention steps, in which the workers' writes
/// go first. A step that took longer is followed by a pause as long as it
/// took, so retention never has the store more than half of the time.
pub const EXPIRE_PAUSE: Duration = Duration::from_millis(20);

/// What one retention run removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    /// Events older than `retention_days`.
    pub events: u64,
    /// Event errors older than `error_retention_days`.
    pub errors: u64,
    /// Rollup rows older than `rollup_retention_days`.
    pub rollup_rows: u64,
}

/// The cutoff for data kept for `keep`: whole rollup buckets, so that what
/// retention leaves of a bucket is all of it.
fn cutoff(now: DateTime<Utc>, keep: chrono::Duration) -> DateTime<Utc> {
    floor_to(now - keep, ROLLUP_SECS)
}

/// Filters of a [`tally`]: each narrows the rows counted.
#[derive(Clone, Debug, Default)]
pub struct TallyFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Only this event name.
    pub name: Option<String>,
    /// Only this application.
    pub application: Option<String>,
}

/// What the rollups count of `kind` from `from` to `to` (rounded out to whole
/// buckets; unbounded means from year 1 to year 9999), grouped by `group`:
/// one bucket spanning the range, so one row per key.
pub async fn tally(
    reader: &dyn EventReader,
    kind: StatsKind,
    group: StatsGroup,
    (from, to): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    filter: TallyFilter,
) -> Result<Vec<(Vec<String>, i64)>, StoreError> {
    let earliest = DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or_default();
    let latest = DateTime::from_timestamp(253_402_300_799, 0).unwrap_or_default();
    let from = floor_to(from.unwrap_or(earliest), ROLLUP_SECS);
    let to = floor_to(to.unwrap_or(latest), ROLLUP_SECS) + chrono::Duration::seconds(ROLLUP_SECS);
    let query = StatsQuery {
        kind,
        from,
        to,
        bucket_secs: (to - from).num_seconds(),
        group,
        category: filter.category,
        name: filter.name,
        application: filter.application,
    };
    Ok(reader.stats(&query).await?.into_iter().map(|r| (r.key, r.count)).collect())
}

/// How many rows of `kind` the rollups count from `from` to `to`, with these
/// filters (see [`tally`]).
pub async fn counted(
    reader: &dyn EventReader,
    kind: StatsKind,
    range: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    category: Option<String>,
    name: Option<String>,
) -> Result<i64, StoreError> {
    let filter = TallyFilter { category, name, application: None };
    Ok(tally(reader, kind, StatsGroup::None, range, filter).await?.iter().map(|(_, n)| n).sum())
}

/// Applies `retention` now, in steps of [`EXPIRE_BATCH`] rows with at least
/// `pause` between them (none when zero, as `the-eye upkeep` runs), until
/// nothing older is left.
pub async fn expire(
    store: &dyn Store,
    retention: &Retention,
    now: DateTime<Utc>,
    pause: Duration,
) -> Result<Removed, StoreError> {
    let mut removed = Removed::default();
    for (what, keep, out) in [
        (Expired::Events, retention.events, &mut removed.events),
        (Expired::Errors, retention.errors, &mut removed.errors),
        (Expired::Rollups, retention.rollups, &mut removed.rollup_rows),
    ] {
        let Some(keep) = keep else { continue };
        let cutoff = cutoff(now, keep);
        loop {
            let started = std::time::Instant::now();
            let n = store.expire(what, cutoff, EXPIRE_BATCH).await?;
            *out += n;
            if n < EXPIRE_BATCH as u64 {
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause.max(started.elapsed())).await;
            }
        }
    }
    Ok(removed)
}

/// The workers' upkeep: partitions and rollup merging (`maintain`), then
/// retention. Logs what it removed; returns it.
pub async fn upkeep(store: &dyn Store, retention: &Retention, now: DateTime<Utc>) -> Result<Removed, StoreError> {
    store.maintain().await?;
    let started = std::time::Instant::now();
    let removed = expire(store, retention, now, EXPIRE_PAUSE).await?;
    if removed != Removed::default() {
        tracing::info!(
            events = removed.events,
            errors = removed.errors,
            rollup_rows = removed.rollup_rows,
            secs = started.elapsed().as_secs_f64(),
            "retention removed old data"
        );
    }
    Ok(removed)
}

/// How a session appears in the audit log: a digest, never the id itself,
/// so the log keeps no trace of the person. Whoever holds the id can still
/// show that it was erased: `printf %s ID | sha256sum`.
pub fn session_digest(session_id: &str) -> String {
    let digest = Sha256::digest(session_id.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("session sha256:{hex}")
}

/// Erases everything of one session (GDPR art. 17) and records it in the
/// audit log under `actor`, with the counts and without the data.
pub async fn erase_session(store: &dyn Store, session_id: &str, actor: &str) -> Result<Erased, StoreError> {
    let erased = store.erase_session(session_id).await?;
    let action = AdminAction {
        at: Utc::now(),
        username: actor.to_string(),
        action: "erase session".into(),
        object: session_digest(session_id),
        detail: format!("{} events and {} event errors erased", erased.events, erased.errors),
    };
    if let Err(e) = store.log_action(&action).await {
        tracing::error!(error = %e, "a session was erased but the audit log could not record it");
    }
    Ok(erased)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_fall_on_bucket_boundaries() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T10:07:30Z").unwrap().with_timezone(&Utc);
        assert_eq!(cutoff(now, chrono::Duration::days(30)).to_rfc3339(), "2026-10-30T10:05:00+00:00");
    }

    #[test]
    fn the_audit_log_keeps_a_digest_not_the_session() {
        let d = session_digest("visitor-42");
        assert!(d.starts_with("session sha256:") && !d.contains("visitor-42"));
        assert_eq!(d, session_digest("visitor-42"));
        assert_ne!(d, session_digest("visitor-43"));
    }
}
