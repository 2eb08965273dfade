//! The API's caches (moka), each with its hits and misses in
//! `comet_query_cache_requests_total`:
//!
//! - **series**: a `match[]` set and time range -> the matching series'
//!   label sets, for the series and label endpoints (short TTL);
//! - **labels**: label names and values per request (short TTL);
//! - **results**: range-query results per (query, step, alignment); a later
//!   request reuses the cached steps and computes only the ones after them
//!   (the newest steps of a dashboard refresh). Which steps may be kept:
//!   when every write goes through this process (`results_sole_writer`),
//!   every step up to now, trimmed at the next request to before the oldest
//!   sample written since (`comet_schema::recent_writes`); otherwise only
//!   steps older than `results_freshness`, since newer data may still
//!   arrive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use comet_schema::recent_writes::Mark;

use moka::future::Cache;
use prometheus::IntCounterVec;

use super::respond::ApiError;

use crate::value::{Point, Series};

/// Sizes and lifetimes of the caches.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// How long series lists and label names/values are reused.
    pub catalog_ttl: Duration,
    /// Most bytes the series and label caches hold together.
    pub catalog_max_bytes: u64,
    /// How long a cached range result is kept.
    pub results_ttl: Duration,
    /// Most bytes of cached range results.
    pub results_max_bytes: u64,
    /// Steps newer than this are never cached (late samples may still
    /// change them); not used when `results_sole_writer`.
    pub results_freshness: Duration,
    /// Every write to the database goes through this process, so what it
    /// wrote tells which cached steps are still right.
    pub results_sole_writer: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            catalog_ttl: Duration::from_secs(15),
            catalog_max_bytes: 64 << 20,
            results_ttl: Duration::from_secs(600),
            results_max_bytes: 256 << 20,
            results_freshness: Duration::from_secs(600),
            results_sole_writer: false,
        }
    }
}

pub type LabelSets = Arc<Vec<Vec<(String, String)>>>;

/// A range result cached for steps `start..=end`.
#[derive(Debug)]
pub struct Extent {
    pub start: i64,
    pub end: i64,
    pub series: Vec<Series>,
    /// Right for every write noted before this mark.
    pub as_of: Mark,
}

impl Extent {
    fn weight(&self) -> u32 {
        let bytes: usize = self
            .series
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                    + s.points.len() * std::mem::size_of::<Point>()
                    + 64
            })
            .sum();
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

pub struct Caches {
    pub series: Cache<String, LabelSets>,
    pub labels: Cache<String, Arc<Vec<String>>>,
    pub results: Cache<String, Arc<Extent>>,
    pub results_freshness: Duration,
    pub results_sole_writer: bool,
    lookups: IntCounterVec,
}

impl Caches {
    pub fn new(settings: &CacheSettings, lookups: IntCounterVec) -> Self {
        let series = Cache::builder()
            .max_capacity(settings.catalog_max_bytes / 2)
            .weigher(|k: &String, v: &LabelSets| {
                let bytes: usize = v
                    .iter()
                    .flatten()
                    .map(|(a, b)| a.len() + b.len() + 48)
                    .sum();
                u32::try_from(bytes + k.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(settings.catalog_ttl)
            .build();
        let labels = Cache::builder()
            .max_capacity(settings.catalog_max_bytes / 2)
            .weigher(|k: &String, v: &Arc<Vec<String>>| {
                let bytes: usize = v.iter().map(|s| s.len() + 24).sum();
                u32::try_from(bytes + k.len()).unwrap_or(u32::MAX)
            })
            .time_to_live(settings.catalog_ttl)
            .build();
        let results = Cache::builder()
            .max_capacity(settings.results_max_bytes)
            .weigher(|k: &String, v: &Arc<Extent>| v.weight().saturating_add(k.len() as u32))
            .time_to_live(settings.results_ttl)
            .build();
        Self {
            series,
            labels,
            results,
            results_freshness: settings.results_freshness,
            results_sole_writer: settings.results_sole_writer,
            lookups,
        }
    }

    /// Counts one lookup of `cache` as `result` (hit, miss, partial).
    pub fn count(&self, cache: &str, result: &str) {
        self.lookups.with_label_values(&[cache, result]).inc();
    }

    /// The value cached under `key`, or the one `load` makes and caches.
    /// Concurrent requests for the same key (a dashboard's panels loading
    /// at once) wait for one load instead of each asking ClickHouse.
    pub async fn get_or_load<V>(
        &self,
        cache: &Cache<String, V>,
        name: &str,
        key: String,
        load: impl Future<Output = Result<V, ApiError>>,
    ) -> Result<V, ApiError>
    where
        V: Clone + Send + Sync + 'static,
    {
        let entry = cache
            .entry(key)
            .or_try_insert_with(load)
            .await
            .map_err(|e| (*e).clone())?;
        self.count(name, if entry.is_fresh() { "miss" } else { "hit" });
        Ok(entry.into_value())
    }
}

/// Joins cached series with freshly computed ones: for each label set, the
/// cached points, then the new points after them (floats and histograms
/// alike). Output sorted by labels, as range results are.
pub fn merge(cached: &[Series], start: i64, fresh: Vec<Series>) -> Vec<Series> {
    let mut by_labels: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for s in cached {
        let mut kept = Series::floats(s.labels.clone(), Vec::new());
        kept.points = s.points.iter().filter(|p| p.t >= start).copied().collect();
        kept.histograms = s
            .histograms
            .iter()
            .filter(|p| p.t >= start)
            .cloned()
            .collect();
        if !kept.points.is_empty() || !kept.histograms.is_empty() {
            by_labels.insert(s.labels.clone(), kept);
        }
    }
    for s in fresh {
        let entry = by_labels
            .entry(s.labels.clone())
            .or_insert_with(|| Series::floats(s.labels, Vec::new()));
        let last = entry
            .points
            .last()
            .map(|p| p.t)
            .max(entry.histograms.last().map(|p| p.t));
        let after = |t: i64| last.is_none_or(|l| t > l);
        entry
            .points
            .extend(s.points.into_iter().filter(|p| after(p.t)));
        entry
            .histograms
            .extend(s.histograms.into_iter().filter(|p| after(p.t)));
    }
    by_labels.into_values().collect()
}

/// The part of `series` with steps at or before `end` (what may be cached).
pub fn up_to(series: &[Series], end: i64) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let mut kept = Series::floats(s.labels.clone(), Vec::new());
            kept.points = s.points.iter().filter(|p| p.t <= end).copied().collect();
            kept.histograms = s
                .histograms
                .iter()
                .filter(|p| p.t <= end)
                .cloned()
                .collect();
            (!kept.points.is_empty() || !kept.histograms.is_empty()).then_some(kept)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, ts: &[i64]) -> Series {
        Series::floats(
            vec![("__name__".into(), name.into())],
            ts.iter().map(|&t| Point { t, v: t as f64 }).collect(),
        )
    }

    #[test]
    fn merge_keeps_cached_steps_and_appends_new_ones() {
        let cached = vec![series("a", &[10, 20, 30]), series("c", &[10])];
        let fresh = vec![series("a", &[30, 40]), series("b", &[40])];
        let merged = merge(&cached, 20, fresh);
        let got: Vec<(String, Vec<i64>)> = merged
            .iter()
            .map(|s| {
                (
                    s.labels[0].1.clone(),
                    s.points.iter().map(|p| p.t).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), vec![20, 30, 40]),
                ("b".to_string(), vec![40]),
            ]
        );
    }

    #[test]
    fn only_old_steps_are_kept() {
        let kept = up_to(&[series("a", &[10, 20, 30]), series("b", &[30])], 20);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].points.len(), 2);
    }
}
