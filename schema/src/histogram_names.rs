//! Which metric names have native histogram samples.
//!
//! The query planner needs to know before it writes a statement whether a
//! selector may read histograms: float-only selectors (nearly all) then
//! plan exactly as before, with no second table to read. The names come
//! from ClickHouse (`SELECT DISTINCT metric_name FROM histograms`), cached
//! for [`MAX_AGE`]; every writer of this process adds the names it writes
//! as soon as they are stored, so a histogram written through this Comet is
//! queryable at once, and one written by another Comet of a cluster within
//! [`MAX_AGE`].
//!
//! Of those names, the ones with no float sample either are read with the
//! same query (`SELECT DISTINCT metric_name FROM samples WHERE metric_name
//! IN (...)`, which the sort key answers from the index for names without
//! floats): a selector of one of them by name reads histograms alone, and
//! its plan leaves floats and windows mixing both kinds out, which halves
//! what ClickHouse analyses. A name counts as having floats from the moment
//! this process is about to write one (before the insert), and a name first
//! noted as a histogram counts as mixed until the next read confirms it.
//!
//! The cache is per process and per database (a registry keyed by URL and
//! database), so the writers and engines of one process share it without
//! being wired to each other.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError};

/// How long names read from ClickHouse are trusted.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// What the planner knows of one database's native histograms.
#[derive(Debug, Clone, Default)]
pub struct HistogramNames {
    /// Metric names with histogram samples.
    pub names: Arc<BTreeSet<String>>,
    /// Those of `names` known to have no float sample.
    pub only_histograms: Arc<BTreeSet<String>>,
}

/// The names of one database.
#[derive(Default)]
struct Known {
    current: HistogramNames,
    /// Metric names this process has written floats of (kept from the
    /// last read on).
    floats_written: BTreeSet<String>,
    /// When the names were last read from ClickHouse.
    fetched: Option<Instant>,
}

type Registry = Mutex<HashMap<(String, String), Known>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Records that `names` have histogram samples in `store` (called by a
/// writer once they are stored).
pub fn note<'a>(store: &Store, names: impl IntoIterator<Item = &'a str>) {
    let Ok(mut registry) = registry().lock() else {
        return;
    };
    let known = registry.entry(store.identity()).or_default();
    let missing: Vec<&str> = names
        .into_iter()
        .filter(|n| !known.current.names.contains(*n))
        .collect();
    if !missing.is_empty() {
        let mut names = (*known.current.names).clone();
        names.extend(missing.into_iter().map(str::to_string));
        known.current.names = Arc::new(names);
    }
}

/// Records that floats of `names` are about to be written to `store`
/// (called by a writer before the insert: a plan for histograms alone
/// must never miss a stored float).
pub fn note_floats<'a>(store: &Store, names: impl IntoIterator<Item = &'a str>) {
    let Ok(mut registry) = registry().lock() else {
        return;
    };
    let known = registry.entry(store.identity()).or_default();
    let mut only = None;
    for name in names {
        if !known.floats_written.contains(name) {
            known.floats_written.insert(name.to_string());
        }
        if known.current.only_histograms.contains(name) {
            only.get_or_insert_with(|| (*known.current.only_histograms).clone())
                .remove(name);
        }
    }
    if let Some(only) = only {
        known.current.only_histograms = Arc::new(only);
    }
}

/// Forgets what is known of `store` (after its tables are emptied).
pub fn forget(store: &Store) {
    if let Ok(mut registry) = registry().lock() {
        registry.remove(&store.identity());
    }
}

/// The metric names with histogram samples in `store` and those of them
/// without floats, read from ClickHouse when what is known is older than
/// [`MAX_AGE`].
pub async fn current(store: &Store) -> Result<HistogramNames, StoreError> {
    let cached = registry().lock().ok().and_then(|registry| {
        registry.get(&store.identity()).and_then(|known| {
            known
                .fetched
                .is_some_and(|at| at.elapsed() < MAX_AGE)
                .then(|| known.current.clone())
        })
    });
    if let Some(current) = cached {
        return Ok(current);
    }
    let fetched_at = Instant::now();
    let query = store
        .client()
        .query("SELECT DISTINCT metric_name FROM histograms");
    let read: Vec<String> = store.fetch_all(query, "histogram metric names").await?;
    let with_floats: Vec<String> = if read.is_empty() {
        Vec::new()
    } else {
        let query = store
            .client()
            .query("SELECT DISTINCT metric_name FROM samples WHERE metric_name IN ?")
            .bind(&read);
        store
            .fetch_all(query, "histogram metric names with floats")
            .await?
    };
    let mut registry = registry()
        .lock()
        .map_err(|_| StoreError::Settings("the histogram name cache is poisoned".into()))?;
    let known = registry.entry(store.identity()).or_default();
    let only: BTreeSet<String> = read
        .iter()
        .filter(|n| !with_floats.contains(n) && !known.floats_written.contains(*n))
        .cloned()
        .collect();
    // Names noted while the read ran stay: they are stored too (as mixed
    // until the next read).
    let mut names: BTreeSet<String> = read.into_iter().collect();
    names.extend(known.current.names.iter().cloned());
    known.current = HistogramNames {
        names: Arc::new(names),
        only_histograms: Arc::new(only),
    };
    known.fetched = Some(fetched_at);
    Ok(known.current.clone())
}
