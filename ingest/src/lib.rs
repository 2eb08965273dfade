//! Comet ingest: sources decode what they receive into a [`batch::WriteBatch`]
//! of the data model and hand it to the shared [`writer::Writer`], which
//! batches rows from every source into large ClickHouse inserts and answers
//! each caller only once ClickHouse has accepted its rows.
//!
//! Sources: [`remote_write`] (Prometheus remote-write 1.0 and 2.0) and
//! [`otlp`] (OTLP metrics over gRPC and HTTP). Kafka follows the same path.

pub mod batch;
pub mod kafka;
pub mod metrics;
pub mod otlp;
pub mod remote_write;
pub mod series;
pub mod writer;

pub use batch::{Rejection, SeriesHistograms, SeriesSamples, WriteBatch};
pub use metrics::IngestMetrics;
pub use series::{Series, SeriesRegistry};
pub use writer::{WriteError, Writer, WriterSettings};
