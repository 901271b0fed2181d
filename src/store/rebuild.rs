//! Recounting the rollups, the same way on every backend: one day at a time,
//! each day in its own transaction, from the oldest stored row to the newest,
//! skipping empty stretches. A day's recount replaces that day's counts in one
//! transaction, so writes that land meanwhile are counted exactly once: before
//! the recount (and in it) or after (by their own write).

use async_trait::async_trait;

use super::{Progress, StatsKind, StoreError};

/// One day, the unit of a rebuild's transactions.
const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// What a backend supplies for a rebuild; times are µs since the epoch.
#[async_trait]
pub(crate) trait Recount: Sync {
    /// How many rows of `kind` there are (for the progress bar).
    async fn count(&self, kind: StatsKind) -> Result<u64, StoreError>;
    /// The time of the oldest row of `kind` (at or after `from`, if given).
    async fn first_at_or_after(&self, kind: StatsKind, from: Option<i64>) -> Result<Option<i64>, StoreError>;
    /// Replaces the counts of `kind` for buckets in `[from, to)` by a recount;
    /// returns how many rows it counted.
    async fn recount(&self, kind: StatsKind, from: i64, to: i64) -> Result<u64, StoreError>;
}

/// Rebuilds every rollup of `store`; returns the rows recounted.
pub(crate) async fn rebuild(store: &dyn Recount, progress: Progress<'_>) -> Result<u64, StoreError> {
    let total = store.count(StatsKind::Events).await? + store.count(StatsKind::Errors).await?;
    let mut done = 0;
    progress(done, total);
    for kind in [StatsKind::Events, StatsKind::Errors] {
        let mut next = store.first_at_or_after(kind, None).await?;
        while let Some(at) = next {
            let day = at.div_euclid(DAY_MICROS) * DAY_MICROS;
            done += recount_day(store, kind, day).await?;
            progress(done, total.max(done));
            next = store.first_at_or_after(kind, Some(day + DAY_MICROS)).await?;
        }
    }
    Ok(done)
}

/// Recounts one day; a transient failure (PostgreSQL's serialization
/// failure when a merge committed under the day's snapshot, say) is retried
/// a few times, since the day's transaction changed nothing.
async fn recount_day(store: &dyn Recount, kind: StatsKind, day: i64) -> Result<u64, StoreError> {
    let mut tries = 0;
    loop {
        match store.recount(kind, day, day + DAY_MICROS).await {
            Err(StoreError::Unavailable(e)) if tries < 3 => {
                tries += 1;
                tracing::warn!(error = %e, "recounting a day failed; trying it again");
                tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
            }
            done => return done,
        }
    }
}
