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
//! The cache is per process and per database (a registry keyed by URL and
//! database), so the writers and engines of one process share it without
//! being wired to each other.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::store::{Store, StoreError};

/// How long names read from ClickHouse are trusted.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// The names of one database.
#[derive(Default)]
struct Known {
    names: Arc<BTreeSet<String>>,
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
        .filter(|n| !known.names.contains(*n))
        .collect();
    if !missing.is_empty() {
        let mut names = (*known.names).clone();
        names.extend(missing.into_iter().map(str::to_string));
        known.names = Arc::new(names);
    }
}

/// Forgets what is known of `store` (after its tables are emptied).
pub fn forget(store: &Store) {
    if let Ok(mut registry) = registry().lock() {
        registry.remove(&store.identity());
    }
}

/// The metric names with histogram samples in `store`, read from
/// ClickHouse when what is known is older than [`MAX_AGE`].
pub async fn current(store: &Store) -> Result<Arc<BTreeSet<String>>, StoreError> {
    let cached = registry().lock().ok().and_then(|registry| {
        registry.get(&store.identity()).and_then(|known| {
            known
                .fetched
                .is_some_and(|at| at.elapsed() < MAX_AGE)
                .then(|| known.names.clone())
        })
    });
    if let Some(names) = cached {
        return Ok(names);
    }
    let fetched_at = Instant::now();
    let query = store
        .client()
        .query("SELECT DISTINCT metric_name FROM histograms");
    let read: Vec<String> = store.fetch_all(query, "histogram metric names").await?;
    let mut registry = registry()
        .lock()
        .map_err(|_| StoreError::Settings("the histogram name cache is poisoned".into()))?;
    let known = registry.entry(store.identity()).or_default();
    // Names noted while the read ran stay: they are stored too.
    let mut names: BTreeSet<String> = read.into_iter().collect();
    names.extend(known.names.iter().cloned());
    known.names = Arc::new(names);
    known.fetched = Some(fetched_at);
    Ok(known.names.clone())
}
