//! Comet's data model and everything about ClickHouse that both ingest and
//! query share: labels and the series fingerprint, samples and metadata,
//! the DDL and its migrations, the store client and the managed local
//! ClickHouse server.

pub mod ddl;
pub mod fingerprint;
pub mod histogram;
pub mod histogram_names;
pub mod labels;
pub mod managed;
pub mod migrate;
pub mod model;
pub mod nhcb;
pub mod prompb;
pub mod recent_writes;
pub mod rows;
pub mod store;

pub use ddl::{SchemaOptions, Topology};
pub use histogram::{CounterResetHint, HistogramCounts, NativeHistogram};
pub use labels::{Label, LabelError, Labels, NameValidation};
pub use model::{Metadata, MetricType, Sample, TimeSeries};
pub use store::{RetryPolicy, Store, StoreError, StoreSettings};
