//! Comet query: reading Comet's data back. Today: Prometheus remote-read
//! and the label-matcher to SQL translation it shares with the PromQL
//! engine to come.

pub mod matchers;
pub mod promqltest;
pub mod remote_read;
