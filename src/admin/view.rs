//! What the admin's lists share: the period (presets and a date-time
//! picker), filter choices counted from the rollups, how many rows match,
//! and pages both ways.

use std::future::Future;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;
use crate::lifecycle::{tally, TallyFilter};
use crate::store::{EventReader, Order, Page, StatsGroup, StatsKind, StoreError};

/// The period presets: value, label and length in seconds.
pub const PRESETS: [(&str, &str, i64); 4] = [
    ("1h", "Last hour", 3600),
    ("24h", "Last 24 hours", 86_400),
    ("7d", "Last 7 days", 7 * 86_400),
    ("30d", "Last 30 days", 30 * 86_400),
];

/// The `range` that says "any time" where a list's default is a preset.
pub const ANY_TIME: &str = "all";

/// Most rows a list counts; beyond that it says "more than".
pub const COUNT_CAP: u64 = 10_000;

/// The period a list shows, as its form and URL carry it: a preset, or
/// `from`/`to` from the date-time picker (read in the browser's time zone,
/// whose offset the page's script puts in `tz`, minutes behind UTC as
/// `Date.getTimezoneOffset` gives it; UTC without it) or typed as RFC 3339.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Period {
    /// A preset's value, e.g. `24h`; blank for none.
    pub range: String,
    /// The start, as typed.
    pub from: String,
    /// The end (not included), as typed.
    pub to: String,
    /// The browser's offset from UTC in minutes, as `Date.getTimezoneOffset` says.
    pub tz: String,
}

/// A period's bounds, both optional.
pub type Bounds = (Option<Timestamp>, Option<Timestamp>);

impl Period {
    /// The bounds at `now`; an error names the field that cannot be read.
    pub fn bounds(&self, now: DateTime<Utc>) -> Result<Bounds, String> {
        if let Some((_, _, secs)) = PRESETS.iter().find(|(v, _, _)| *v == self.range) {
            return Ok((Some(Timestamp::from(now - Duration::seconds(*secs))), None));
        }
        if self.range == ANY_TIME {
            return Ok((None, None));
        }
        if !self.range.is_empty() {
            return Err(format!("range: choose one of {}", PRESETS.map(|p| p.0).join(", ")));
        }
        Ok((self.time("from", &self.from)?, self.time("to", &self.to)?))
    }

    fn offset(&self) -> Duration {
        Duration::minutes(self.tz.trim().parse::<i64>().unwrap_or(0).clamp(-24 * 60, 24 * 60))
    }

    fn time(&self, name: &str, value: &str) -> Result<Option<Timestamp>, String> {
        let value = value.trim();
        if value.is_empty() {
            return Ok(None);
        }
        if let Ok(t) = Timestamp::parse(value) {
            return Ok(Some(t));
        }
        ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
            .map(|local| Some(Timestamp::from(local.and_utc() + self.offset())))
            .ok_or_else(|| format!("{name}: not a date and time (2026-11-29T14:30, or RFC 3339)"))
    }

    /// What the picker shows for a bound: the browser's local time, as
    /// `<input type="datetime-local">` wants it.
    pub fn picker(&self, bound: Option<Timestamp>) -> String {
        bound
            .filter(|_| self.range.is_empty() || self.range == ANY_TIME)
            .map(|t| (t.as_datetime() - self.offset()).format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_default()
    }

    /// Links to the presets (and to any time) for a list at `path` whose
    /// other filters are `others` (without the period). `any` is the range
    /// that means any time there: blank, or [`ANY_TIME`] where blank means a preset.
    pub fn preset_links(&self, path: &str, others: &impl Serialize, any: &str) -> Vec<minijinja::Value> {
        let chosen_any =
            (self.range.is_empty() || self.range == ANY_TIME) && self.from.is_empty() && self.to.is_empty();
        let others = pairs(others);
        let link = |range: &str| {
            let mut query = others.clone();
            if !range.is_empty() {
                query.push(("range".into(), range.into()));
            }
            link(path, &query)
        };
        std::iter::once(minijinja::context! { label => "Any time", url => link(any), chosen => chosen_any })
            .chain(PRESETS.iter().map(|(value, label, _)| {
                minijinja::context! { label, url => link(value), chosen => *value == self.range }
            }))
            .collect()
    }
}

/// Filters as the pairs of a query, the blank ones left out.
pub fn pairs(filters: &impl Serialize) -> Vec<(String, String)> {
    let text = serde_urlencoded::to_string(filters).unwrap_or_default();
    let all: Vec<(String, String)> = serde_urlencoded::from_str(&text).unwrap_or_default();
    all.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

/// `path` with `pairs` as its query.
pub fn link(path: &str, pairs: &[(String, String)]) -> String {
    match serde_urlencoded::to_string(pairs).unwrap_or_default() {
        q if q.is_empty() => path.to_string(),
        q => format!("{path}?{q}"),
    }
}

/// `path` with `filters` as its query, the blank ones left out.
pub fn url(path: &str, filters: &impl Serialize) -> String {
    link(path, &pairs(filters))
}

/// `n` with thousands separated: `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many match, for people: "1 event", "1,234 events", "more than 10,000 events".
pub fn matching(n: u64, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n if n > COUNT_CAP => format!("more than {} {many}", thousands(COUNT_CAP)),
        n => format!("{} {many}", thousands(n)),
    }
}

/// The values a filter may take, each with how many rows of `kind` the
/// rollups count for it in the period, the busiest first; `group` says which
/// (`Name` merges a name's count across categories). The chosen value stays
/// among them even when nothing of it is counted.
pub async fn choices(
    reader: &dyn EventReader,
    kind: StatsKind,
    group: StatsGroup,
    bounds: Bounds,
    filter: TallyFilter,
    chosen: &str,
) -> Result<Vec<minijinja::Value>, StoreError> {
    let range = (bounds.0.map(Timestamp::as_datetime), bounds.1.map(Timestamp::as_datetime));
    let mut counts: Vec<(String, i64)> = Vec::new();
    for (key, n) in tally(reader, kind, group, range, filter).await? {
        let Some(value) = key.last().filter(|v| !v.is_empty()) else { continue };
        match counts.iter_mut().find(|(v, _)| v == value) {
            Some((_, total)) => *total += n,
            None => counts.push((value.clone(), n)),
        }
    }
    if !chosen.is_empty() && !counts.iter().any(|(v, _)| v == chosen) {
        counts.push((chosen.to_string(), 0));
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(counts
        .into_iter()
        .map(|(value, n)| {
            let label = format!("{value} ({})", thousands(n.max(0) as u64));
            minijinja::context! { selected => value == chosen, value, label }
        })
        .collect())
}

/// Days a volume column shows.
pub const VOLUME_DAYS: i64 = 30;

/// How much of `kind` each key of `group` had in the last [`VOLUME_DAYS`]
/// days, from the rollups: a bar a day (with its date and count on hover),
/// the total, and when it was last seen (to five minutes within the last
/// day, else the day). Keys are the group's columns joined by `/`.
pub async fn volumes(
    reader: &dyn EventReader,
    kind: StatsKind,
    group: StatsGroup,
    filter: TallyFilter,
    now: DateTime<Utc>,
) -> Result<std::collections::HashMap<String, minijinja::Value>, StoreError> {
    use crate::store::{floor_to, StatsQuery, ROLLUP_SECS};
    let today = floor_to(now, 86_400);
    let from = today - Duration::days(VOLUME_DAYS - 1);
    let query = |from, bucket_secs| StatsQuery {
        kind,
        from,
        to: today + Duration::days(1),
        bucket_secs,
        group,
        category: filter.category.clone(),
        name: filter.name.clone(),
        application: filter.application.clone(),
    };
    let days = reader.stats(&query(from, 86_400)).await?;
    let recent = reader.stats(&query(floor_to(now - Duration::days(1), ROLLUP_SECS), ROLLUP_SECS)).await?;
    let mut by_key: std::collections::BTreeMap<String, (Vec<i64>, Option<DateTime<Utc>>)> = Default::default();
    for row in &days {
        let entry = by_key.entry(row.key.join("/")).or_insert_with(|| (vec![0; VOLUME_DAYS as usize], None));
        if let Ok(day) = usize::try_from((row.bucket - from).num_days()) {
            if let Some(slot) = entry.0.get_mut(day) {
                *slot += row.count;
            }
        }
        if row.count > 0 {
            entry.1 = entry.1.max(Some(row.bucket));
        }
    }
    let mut precise: std::collections::HashMap<String, DateTime<Utc>> = Default::default();
    for row in recent.iter().filter(|r| r.count > 0) {
        let last = precise.entry(row.key.join("/")).or_insert(row.bucket);
        *last = (*last).max(row.bucket);
    }
    Ok(by_key
        .into_iter()
        .map(|(key, (counts, last_day))| {
            let total = thousands(counts.iter().sum::<i64>().max(0) as u64);
            let max = counts.iter().copied().max().unwrap_or(0).max(1);
            let bars: Vec<_> = counts
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let h = n as f64 / max as f64 * 20.0;
                    let day = from + Duration::days(i as i64);
                    minijinja::context! {
                        x => i * 4, y => format!("{:.1}", 20.0 - h), h => format!("{h:.1}"),
                        title => format!("{}: {}", day.format("%a %d %b"), thousands(n.max(0) as u64)),
                    }
                })
                .collect();
            let last_seen = match precise.get(&key) {
                Some(t) => Some((Timestamp::from(*t).to_string(), true)),
                None => last_day.map(|d| (d.format("%d %b %Y").to_string(), false)),
            };
            let (last_seen, last_exact) = last_seen.map(|(t, exact)| (Some(t), exact)).unwrap_or((None, false));
            let volume = minijinja::context! {
                label => format!("{total} in the last {VOLUME_DAYS} days, at most {max} a day"),
                bars, total, max, last_seen, last_exact,
            };
            (key, volume)
        })
        .collect())
}

/// One page of a list that pages both ways, newest first.
#[derive(Debug)]
pub struct Paged<T, C> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Where the older page starts, if there is one.
    pub older: Option<C>,
    /// Where the newer page ends, if there is one.
    pub newer: Option<C>,
}

/// Reads a newest-first page: after `older_than` (going back), or before
/// `newer_than` (coming forward: read oldest first and turned round), or the
/// newest. `fetch(order, after)` reads one page; `key` is a row's cursor.
pub async fn both_ways<T, C, F, Fut>(
    older_than: Option<C>,
    newer_than: Option<C>,
    fetch: F,
    key: impl Fn(&T) -> C,
) -> Result<Paged<T, C>, StoreError>
where
    F: Fn(Order, Option<C>) -> Fut,
    Fut: Future<Output = Result<Page<T, C>, StoreError>>,
{
    if let Some(newer_than) = newer_than {
        let page = fetch(Order::Asc, Some(newer_than)).await?;
        if page.next.is_some() {
            let mut items = page.items;
            items.reverse();
            let (newer, older) = (items.first().map(&key), items.last().map(&key));
            return Ok(Paged { items, older, newer });
        }
        // Fewer than a page is newer: that is the newest page.
        let page = fetch(Order::Desc, None).await?;
        return Ok(Paged { older: page.next, newer: None, items: page.items });
    }
    let came_back = older_than.is_some();
    let page = fetch(Order::Desc, older_than).await?;
    let newer = if came_back { page.items.first().map(&key) } else { None };
    Ok(Paged { older: page.next, newer, items: page.items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn presets_count_back_from_now() {
        let p = Period { range: "24h".into(), ..Default::default() };
        let (from, to) = p.bounds(at("2026-11-29T12:00:00Z")).unwrap();
        assert_eq!(from.unwrap().to_string(), "2026-11-28T12:00:00.000000Z");
        assert_eq!(to, None);
        assert!(Period { range: "2w".into(), ..Default::default() }.bounds(Utc::now()).unwrap_err().contains("range"));
        let any = Period { range: ANY_TIME.into(), ..Default::default() };
        assert_eq!(any.bounds(Utc::now()).unwrap(), (None, None));
        let links = any.preset_links("/admin/sessions/", &[("category", "shop")], ANY_TIME);
        assert_eq!(links[0].get_attr("url").unwrap().to_string(), "/admin/sessions/?category=shop&range=all");
        assert!(links[0].get_attr("chosen").unwrap().is_true());
        assert_eq!(links[2].get_attr("url").unwrap().to_string(), "/admin/sessions/?category=shop&range=24h");
    }

    #[test]
    fn the_picker_reads_the_browsers_zone() {
        // Berlin in winter: getTimezoneOffset() is -60.
        let p = Period { from: "2026-11-29T14:30".into(), tz: "-60".into(), ..Default::default() };
        let (from, _) = p.bounds(Utc::now()).unwrap();
        assert_eq!(from.unwrap().to_string(), "2026-11-29T13:30:00.000000Z");
        assert_eq!(p.picker(from), "2026-11-29T14:30");
        let utc = Period { from: "2026-11-29T14:30:00Z".into(), ..Default::default() };
        assert_eq!(utc.bounds(Utc::now()).unwrap().0.unwrap().to_string(), "2026-11-29T14:30:00.000000Z");
        let bad = Period { to: "yesterday".into(), ..Default::default() };
        assert!(bad.bounds(Utc::now()).unwrap_err().starts_with("to:"));
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(matching(1, "event", "events"), "1 event");
        assert_eq!(matching(0, "event", "events"), "0 events");
        assert_eq!(matching(COUNT_CAP + 1, "event", "events"), "more than 10,000 events");
    }

    fn page(items: &[i64], order: Order, after: Option<i64>, limit: usize) -> Page<i64, i64> {
        let mut rows: Vec<i64> = items.to_vec();
        if order == Order::Desc {
            rows.reverse();
        }
        let rows: Vec<i64> = rows
            .into_iter()
            .filter(|r| match (order, after) {
                (_, None) => true,
                (Order::Desc, Some(a)) => *r < a,
                (Order::Asc, Some(a)) => *r > a,
            })
            .take(limit + 1)
            .collect();
        Page::from_rows(rows, limit, |r| *r)
    }

    #[tokio::test]
    async fn pages_go_back_and_forth() {
        let rows: Vec<i64> = (1..=7).collect();
        let fetch = |order, after| {
            let rows = rows.clone();
            async move { Ok(page(&rows, order, after, 3)) }
        };
        let first = both_ways(None, None, fetch, |r| *r).await.unwrap();
        assert_eq!((first.items.clone(), first.older, first.newer), (vec![7, 6, 5], Some(5), None));
        let second = both_ways(first.older, None, fetch, |r| *r).await.unwrap();
        assert_eq!((second.items.clone(), second.older, second.newer), (vec![4, 3, 2], Some(2), Some(4)));
        let last = both_ways(second.older, None, fetch, |r| *r).await.unwrap();
        assert_eq!((last.items.clone(), last.older, last.newer), (vec![1], None, Some(1)));
        let back = both_ways(None, last.newer, fetch, |r| *r).await.unwrap();
        assert_eq!((back.items.clone(), back.older, back.newer), (vec![4, 3, 2], Some(2), Some(4)));
        let top = both_ways(None, back.newer, fetch, |r| *r).await.unwrap();
        assert_eq!((top.items, top.older, top.newer), (vec![7, 6, 5], Some(5), None));
    }
}
