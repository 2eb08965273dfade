//! Comet query: reading Comet's data back. Today: Prometheus remote-read,
//! the label-matcher to SQL translation the PromQL engine will share, and
//! the reader of the upstream PromQL test scripts that will judge it.

pub mod matchers;
pub mod promqltest;
pub mod remote_read;
