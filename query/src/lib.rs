//! Comet query: the PromQL to ClickHouse SQL planner and the Prometheus HTTP API (built in the query issues).
