//! Prometheus rules and alerts on Comet's engine.
//!
//! - `file`: rule files, their validation and the configured globs;
//! - `template`: Go templates in alert labels and annotations;
//! - `alert`: the alerting state machine (pending, firing, resolved);
//! - `group`: one evaluation of a group, its output and metrics;
//! - `manager`: the group tasks, alignment, reloads, restore at start;
//! - `restore`: the `for` state from ALERTS_FOR_STATE;
//! - `notifier`: Alertmanager's v2 API;
//! - `api`: `/api/v1/rules` and `/api/v1/alerts`;
//! - `unittest`: `promtool test rules` files against the engine.
//!
//! The ruler writes samples through [`SampleSink`]; the binary implements it
//! with the ingest writer (this crate does not depend on ingest).

pub mod alert;
pub mod api;
pub mod file;
pub mod group;
pub mod manager;
pub mod notifier;
pub mod restore;
pub mod template;
pub mod unittest;

use std::future::Future;
use std::pin::Pin;

use comet_schema::TimeSeries;

pub use manager::{LoadError, Ruler, RulerSettings, StartError};
pub use notifier::{Notifier, NotifierSettings};
pub use restore::RestorePolicy;

/// Where rule output goes. `write` returns once the samples are stored
/// (acknowledged), so the next rule's query sees them.
pub trait SampleSink: Send + Sync {
    fn write(
        &self,
        series: Vec<TimeSeries>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}
