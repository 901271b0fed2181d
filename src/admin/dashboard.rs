//! The dashboard: events and errors over the last hour, day or week as
//! stacked bar charts by category (SVG drawn on the server, no script), totals,
//! the error rate, the queue's depth and the newest events. The counts come
//! from the rollups, so a week costs as little as an hour.

use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::events::event_row;
use super::kit::{Admin, AdminResult};
use crate::app::AppState;
use crate::store::{EventQuery, Order, StatsGroup, StatsKind, StatsQuery};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/admin/", get(dashboard))
}

/// A chart's time range: its name, bucket width in seconds and bucket count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Range {
    name: &'static str,
    bucket_secs: i64,
    buckets: i64,
}

const RANGES: [Range; 3] = [
    Range { name: "hour", bucket_secs: 300, buckets: 12 },
    Range { name: "day", bucket_secs: 3600, buckets: 24 },
    Range { name: "week", bucket_secs: 6 * 3600, buckets: 28 },
];

/// Colours of the chart's series; the last one is "other".
const PALETTE: [&str; 6] = ["#3454d1", "#12b76a", "#f79009", "#7a5af8", "#ee46bc", "#98a2b3"];

/// Chart size in SVG user units.
const W: f64 = 720.0;
const H: f64 = 180.0;

#[derive(Debug, Deserialize)]
struct RangeParam {
    range: Option<String>,
}

/// The first bucket's start: buckets end at the next boundary after `now`.
fn start_of(range: Range, now: DateTime<Utc>) -> DateTime<Utc> {
    let width = range.bucket_secs;
    let end = (now.timestamp().div_euclid(width) + 1) * width;
    DateTime::from_timestamp(end - width * range.buckets, 0).unwrap_or(now)
}

/// A stacked bar chart of `counts` (bucket, category, count) as shapes for the template.
fn chart(range: Range, since: DateTime<Utc>, counts: &[(i64, String, i64)]) -> minijinja::Value {
    let n = range.buckets as usize;
    // Series: the five busiest categories, then everything else as "other".
    let mut totals: Vec<(String, i64)> = Vec::new();
    for (_, category, count) in counts {
        match totals.iter_mut().find(|(c, _)| c == category) {
            Some((_, t)) => *t += count,
            None => totals.push((category.clone(), *count)),
        }
    }
    totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let top = PALETTE.len() - 1;
    let series_of = |category: &str| totals.iter().position(|(c, _)| c == category).map(|i| i.min(top)).unwrap_or(top);
    let mut grid = vec![[0i64; PALETTE.len()]; n];
    for (bucket, category, count) in counts {
        if let Some(row) = usize::try_from(*bucket).ok().and_then(|b| grid.get_mut(b)) {
            row[series_of(category)] += count;
        }
    }
    let max = grid.iter().map(|r| r.iter().sum::<i64>()).max().unwrap_or(0).max(1);
    let slot = W / n as f64;
    let time_of = |b: usize| since + Duration::seconds(range.bucket_secs * b as i64);
    let label = |t: DateTime<Utc>| match range.name {
        "week" => t.format("%a %d %H:%M").to_string(),
        _ => t.format("%H:%M").to_string(),
    };
    let mut bars = Vec::new();
    for (b, row) in grid.iter().enumerate() {
        let mut y = H;
        for (s, &count) in row.iter().enumerate().filter(|(_, c)| **c > 0) {
            let h = count as f64 / max as f64 * H;
            y -= h;
            let name = legend_name(&totals, s, top);
            bars.push(minijinja::context! {
                x => format!("{:.1}", b as f64 * slot + 1.0),
                y => format!("{y:.1}"),
                w => format!("{:.1}", (slot - 2.0).max(1.0)),
                h => format!("{h:.1}"),
                color => PALETTE[s],
                title => format!("{} UTC · {name}: {count}", label(time_of(b))),
            });
        }
    }
    let legend: Vec<_> = (0..PALETTE.len())
        .filter_map(|s| {
            let total: i64 = grid.iter().map(|r| r[s]).sum();
            (total > 0)
                .then(|| minijinja::context! { name => legend_name(&totals, s, top), color => PALETTE[s], total })
        })
        .collect();
    let total: i64 = grid.iter().flatten().sum();
    minijinja::context! {
        bars, legend, total, max, mid => if max % 2 == 0 { (max / 2).to_string() } else { format!("{:.1}", max as f64 / 2.0) },
        first => label(since), middle => label(time_of(n / 2)), last => label(time_of(n)),
        width => W, height => H,
    }
}

fn legend_name(totals: &[(String, i64)], series: usize, top: usize) -> String {
    match totals.get(series) {
        _ if series == top && totals.len() > top + 1 => "other".into(),
        Some((c, _)) if c.is_empty() => "(no category)".into(),
        Some((c, _)) => c.clone(),
        None => "other".into(),
    }
}

/// Counts by bucket index and category over the range, from the rollups.
async fn counts(
    state: &AppState,
    kind: StatsKind,
    range: Range,
    since: DateTime<Utc>,
) -> Result<Vec<(i64, String, i64)>, crate::store::StoreError> {
    let query = StatsQuery {
        kind,
        from: since,
        to: since + Duration::seconds(range.bucket_secs * range.buckets),
        bucket_secs: range.bucket_secs,
        group: StatsGroup::Category,
        category: None,
        name: None,
        application: None,
    };
    let rows = state.store.stats(&query).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let bucket = (r.bucket - since).num_seconds() / range.bucket_secs;
            (bucket, r.key.into_iter().next().unwrap_or_default(), r.count)
        })
        .collect())
}

async fn dashboard(admin: Admin, Query(q): Query<RangeParam>) -> AdminResult {
    let state = &admin.state;
    let range = RANGES.iter().copied().find(|r| Some(r.name) == q.range.as_deref()).unwrap_or(RANGES[0]);
    let now = state.clock.now();
    let since = start_of(range, now);
    let events = counts(state, StatsKind::Events, range, since).await?;
    let errors = counts(state, StatsKind::Errors, range, since).await?;
    let events_total: i64 = events.iter().map(|(_, _, n)| n).sum();
    let errors_total: i64 = errors.iter().map(|(_, _, n)| n).sum();
    let newest_page = state.store.events(&EventQuery { limit: 10, order: Order::Desc, ..Default::default() }).await?;
    let newest: Vec<_> = newest_page.items.iter().map(event_row).collect();
    let all = events_total + errors_total;
    let error_rate =
        if all == 0 { "—".to_string() } else { format!("{:.1} %", errors_total as f64 * 100.0 / all as f64) };
    let queue_depth = state.queue.depth().await.map(|d| d.to_string()).unwrap_or_else(|_| "unknown".into());
    Ok(admin.page(
        "admin/dashboard.html",
        minijinja::context! {
            range => range.name,
            ranges => RANGES.iter().map(|r| r.name).collect::<Vec<_>>(),
            events_chart => chart(range, since, &events),
            errors_chart => chart(range, since, &errors),
            events_total, errors_total, error_rate, queue_depth, newest,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_end_after_now() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T10:07:30Z").unwrap().with_timezone(&Utc);
        let since = start_of(RANGES[0], now);
        assert_eq!(since.to_rfc3339(), "2026-11-27T09:10:00+00:00");
    }

    #[test]
    fn small_categories_are_folded_into_other() {
        let since = DateTime::from_timestamp(0, 0).unwrap();
        let counts: Vec<(i64, String, i64)> = (0..8).map(|i| (0, format!("c{i}"), 10 - i)).collect();
        let chart = chart(RANGES[0], since, &counts);
        let legend = chart.get_attr("legend").unwrap();
        let names: Vec<String> = legend.try_iter().unwrap().map(|l| l.get_attr("name").unwrap().to_string()).collect();
        assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "other"]);
        assert_eq!(chart.get_attr("total").unwrap().as_i64(), Some((3..=10).sum()));
    }
}
