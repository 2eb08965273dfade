//! Per-partition Kafka consumer metrics on Comet's /metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Cheap to clone.
#[derive(Clone)]
pub struct KafkaMetrics {
    /// Messages consumed, by topic and partition.
    pub messages: IntCounterVec,
    /// Payload bytes consumed.
    pub bytes: IntCounterVec,
    /// Samples (OTLP data points) in consumed messages.
    pub samples: IntCounterVec,
    /// Messages that could not be decoded or validated, by reason.
    pub decode_errors: IntCounterVec,
    /// Messages written to the dead-letter topic.
    pub dlq_messages: IntCounterVec,
    /// Messages behind the partition's end: high watermark less the
    /// committed position.
    pub lag: IntGaugeVec,
    /// 1 while the partition is paused for backpressure.
    pub paused: IntGaugeVec,
    /// Payload bytes waiting in the partition's queue (`queue_bytes`).
    pub queued_bytes: IntGaugeVec,
    /// Times a partition was paused.
    pub pauses: IntCounterVec,
    /// The last committed offset.
    pub committed_offset: IntGaugeVec,
    /// Batches inserted, and inserts retried after a failure.
    pub batches: IntCounterVec,
    pub insert_retries: IntCounterVec,
    /// Time to commit offsets (one synchronous commit for all partitions).
    pub commit_duration: Histogram,
    pub commit_failures: IntCounter,
    /// Partitions assigned and revoked.
    pub rebalances: IntCounterVec,
}

const PARTITION: &[&str] = &["topic", "partition"];

impl KafkaMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self::unregistered();
        registry.register(Box::new(m.messages.clone()))?;
        registry.register(Box::new(m.bytes.clone()))?;
        registry.register(Box::new(m.samples.clone()))?;
        registry.register(Box::new(m.decode_errors.clone()))?;
        registry.register(Box::new(m.dlq_messages.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.paused.clone()))?;
        registry.register(Box::new(m.queued_bytes.clone()))?;
        registry.register(Box::new(m.pauses.clone()))?;
        registry.register(Box::new(m.committed_offset.clone()))?;
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.insert_retries.clone()))?;
        registry.register(Box::new(m.commit_duration.clone()))?;
        registry.register(Box::new(m.commit_failures.clone()))?;
        registry.register(Box::new(m.rebalances.clone()))?;
        Ok(m)
    }

    /// Metrics not shown anywhere (tests, benchmarks).
    pub fn unregistered() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), PARTITION).expect("valid metric")
        };
        Self {
            messages: counter(
                "comet_kafka_messages_total",
                "Kafka messages consumed.",
                PARTITION,
            ),
            bytes: counter(
                "comet_kafka_bytes_total",
                "Kafka payload bytes consumed.",
                PARTITION,
            ),
            samples: counter(
                "comet_kafka_samples_total",
                "Samples (OTLP data points) in consumed Kafka messages.",
                PARTITION,
            ),
            decode_errors: counter(
                "comet_kafka_decode_errors_total",
                "Kafka messages that could not be decoded or validated, by reason.",
                &["topic", "partition", "reason"],
            ),
            dlq_messages: counter(
                "comet_kafka_dlq_messages_total",
                "Kafka messages written to the dead-letter topic.",
                PARTITION,
            ),
            lag: gauge(
                "comet_kafka_consumer_lag",
                "Messages between the committed position and the partition's high watermark.",
            ),
            paused: gauge(
                "comet_kafka_partition_paused",
                "1 while the partition is paused because ingest is behind (backpressure).",
            ),
            queued_bytes: gauge(
                "comet_kafka_queued_bytes",
                "Payload bytes received and waiting for the partition's decoders (bounded by kafka.queue_bytes), as of librdkafka's last statistics.",
            ),
            pauses: counter(
                "comet_kafka_partition_pauses_total",
                "Times a partition was paused for backpressure.",
                PARTITION,
            ),
            committed_offset: gauge(
                "comet_kafka_committed_offset",
                "The partition's last committed offset (next message to read).",
            ),
            batches: counter(
                "comet_kafka_batches_total",
                "Kafka batches stored (one deduplicated insert each).",
                PARTITION,
            ),
            insert_retries: counter(
                "comet_kafka_insert_retries_total",
                "Kafka batch inserts retried after a failure.",
                PARTITION,
            ),
            commit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "comet_kafka_commit_duration_seconds",
                    "Time to commit consumed offsets to the group coordinator.",
                )
                .buckets(prometheus::exponential_buckets(0.0005, 2.0, 15).expect("valid buckets")),
            )
            .expect("valid metric"),
            commit_failures: IntCounter::new(
                "comet_kafka_commit_failures_total",
                "Offset commits that failed (retried at the next interval).",
            )
            .expect("valid metric"),
            rebalances: counter(
                "comet_kafka_rebalance_partitions_total",
                "Partitions assigned to or revoked from this consumer.",
                &["event"],
            ),
        }
    }

    /// Drops the per-partition series of a partition no longer assigned.
    pub fn forget_partition(&self, topic: &str, partition: &str) {
        let labels = [topic, partition];
        for gauge in [
            &self.lag,
            &self.paused,
            &self.queued_bytes,
            &self.committed_offset,
        ] {
            let _ = gauge.remove_label_values(&labels);
        }
    }
}
