//! Comet query: reading Comet's data back. The PromQL engine (a planner
//! from PromQL to one ClickHouse SQL statement, and its executor),
//! Prometheus remote-read, and the runner of the upstream PromQL test
//! scripts that judge the engine.

pub mod api;
pub mod duration;
pub mod engine;
pub mod matchers;
pub mod plan;
pub mod promqltest;
pub mod remote_read;
pub mod rules;
pub mod value;
