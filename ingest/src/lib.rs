//! Comet ingest: remote-write, OTLP and Kafka sources feeding one batcher that writes to ClickHouse (built in the ingest issues).
