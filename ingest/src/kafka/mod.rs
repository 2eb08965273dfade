//! Kafka ingestion: Comet as a consumer group member. Messages (remote-write,
//! OTLP protobuf or JSON, Prometheus text) go from a consumer thread
//! ([`consumer`]) to per-partition workers ([`partition`]) that decode them
//! in parallel, cut batches and insert each through the shared writer under
//! an `insert_deduplication_token` of its offset range ([`ledger`]).
//! Offsets are committed only past stored batches ([`offsets`]), so nothing
//! acknowledged to Kafka is lost, and a replay after a crash is dropped by
//! ClickHouse's deduplication instead of doubling the data.

pub mod consumer;
pub mod dlq;
pub mod format;
pub mod ledger;
pub mod metrics;
pub mod offsets;
pub mod partition;
pub mod text;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use comet_schema::Store;
use rdkafka::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use thiserror::Error;
use tracing::{info, warn};

use crate::metrics::IngestMetrics;
use crate::writer::Writer;

pub use format::{MessageDecoder, MessageFormat};
pub use metrics::KafkaMetrics;

/// Everything about the Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `group.id`.
    pub group_id: String,
    /// Topics to subscribe to; a name starting with `^` is a regex.
    pub topics: Vec<String>,
    /// The format of topics not in `topic_formats`.
    pub format: MessageFormat,
    /// Formats by topic name.
    pub topic_formats: BTreeMap<String, MessageFormat>,
    /// Further librdkafka properties for the consumer and the dead-letter
    /// producer (security, fetch sizes, ...); they win over Comet's.
    pub librdkafka: BTreeMap<String, String>,
    /// Where messages that cannot be decoded or validated go.
    pub dlq_topic: Option<String>,
    /// Messages decoded at once per partition.
    pub workers_per_partition: usize,
    /// Messages queued per partition before it is paused...
    pub queue_messages: usize,
    /// ...or bytes of their payloads. Room for several fetches, since
    /// librdkafka hands a whole fetch over at once and every pause makes it
    /// drop what it prefetched and fetch it again.
    pub queue_bytes: usize,
    /// Cut a batch at this many samples, messages, or this long after its
    /// first message.
    pub batch_max_samples: usize,
    pub batch_max_messages: usize,
    pub batch_linger: Duration,
    /// Batches of one partition being inserted at once.
    pub max_inflight_batches: usize,
    pub commit_interval: Duration,
    /// How long a revoked partition may take to store what it received.
    pub revoke_timeout: Duration,
    /// Longest wait between retries of a failed insert or dead letter.
    pub retry_backoff_max: Duration,
    /// Broker requests made from rebalance callbacks.
    pub request_timeout: Duration,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            group_id: "comet".into(),
            topics: Vec::new(),
            format: MessageFormat::RemoteWrite,
            topic_formats: BTreeMap::new(),
            librdkafka: BTreeMap::new(),
            dlq_topic: None,
            workers_per_partition: 2,
            queue_messages: 10_000,
            queue_bytes: 16 << 20,
            batch_max_samples: 200_000,
            batch_max_messages: 5_000,
            batch_linger: Duration::from_millis(200),
            max_inflight_batches: 2,
            commit_interval: Duration::from_secs(1),
            revoke_timeout: Duration::from_secs(30),
            retry_backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl KafkaSettings {
    pub fn format_of(&self, topic: &str) -> MessageFormat {
        self.topic_formats
            .get(topic)
            .copied()
            .unwrap_or(self.format)
    }

    /// librdkafka properties common to the consumer and the producer.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config
    }
}

/// Why the Kafka source could not start.
#[derive(Debug, Error)]
pub enum KafkaStartError {
    #[error("Kafka source: no brokers configured")]
    NoBrokers,
    #[error("Kafka source: no topics configured")]
    NoTopics,
    #[error("Kafka consumer: {0}")]
    Consumer(KafkaError),
    #[error("Kafka dead-letter producer: {0}")]
    Producer(KafkaError),
    #[error("Kafka subscription to {topics:?}: {error}")]
    Subscribe {
        topics: Vec<String>,
        error: KafkaError,
    },
    #[error("cannot start the Kafka consumer thread: {0}")]
    Thread(std::io::Error),
}

/// What every partition worker shares.
pub struct Pipeline {
    pub settings: KafkaSettings,
    pub writer: Writer,
    pub decoder: MessageDecoder,
    pub ledger: ledger::Ledger,
    pub dead_letters: Option<dlq::DeadLetters>,
    pub metrics: KafkaMetrics,
    pub ingest: IngestMetrics,
}

/// The running Kafka source.
pub struct KafkaIngest {
    stop: Arc<AtomicBool>,
    finished: tokio::sync::oneshot::Receiver<()>,
}

impl KafkaIngest {
    /// Joins the group and starts consuming on a thread of its own. Must be
    /// called on a Tokio runtime (the workers run on it).
    pub fn start(
        settings: KafkaSettings,
        writer: Writer,
        decoder: MessageDecoder,
        store: Store,
        metrics: KafkaMetrics,
        ingest: IngestMetrics,
    ) -> Result<Self, KafkaStartError> {
        if settings.brokers.is_empty() {
            return Err(KafkaStartError::NoBrokers);
        }
        if settings.topics.is_empty() {
            return Err(KafkaStartError::NoTopics);
        }
        let mut consumer_config = settings.client_config();
        consumer_config
            .set("group.id", &settings.group_id)
            // Comet commits itself, only past stored batches.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Watermarks for the lag metric come with the statistics.
            .set("statistics.interval.ms", "5000");
        let mut producer_config = settings.client_config();
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all");
        for (key, value) in &settings.librdkafka {
            consumer_config.set(key, value);
            if !CONSUMER_ONLY.contains(&key.as_str()) {
                producer_config.set(key, value);
            }
        }
        let dead_letters = match &settings.dlq_topic {
            Some(topic) => {
                let producer: FutureProducer = producer_config
                    .create()
                    .map_err(KafkaStartError::Producer)?;
                Some(dlq::DeadLetters::new(producer, topic.clone()))
            }
            None => None,
        };
        let runtime = tokio::runtime::Handle::current();
        let ledger = ledger::Ledger::new(store, settings.group_id.clone());
        let topics = settings.topics.clone();
        let pipeline = Arc::new(Pipeline {
            settings,
            writer,
            decoder,
            ledger,
            dead_letters,
            metrics,
            ingest,
        });
        let consumer: consumer::GroupConsumer = consumer_config
            .create_with_context(consumer::DispatchContext::new(pipeline, runtime))
            .map_err(KafkaStartError::Consumer)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|error| KafkaStartError::Subscribe {
                topics: topics.clone(),
                error,
            })?;
        info!(?topics, "Kafka consumer subscribed");
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = tokio::sync::oneshot::channel();
        let thread_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("kafka-consumer".into())
            .spawn(move || {
                consumer::run(&consumer, &thread_stop);
                // Closing the consumer leaves the group (LeaveGroup), so the
                // others take its partitions at once: done only after it,
                // or a process that exits next may never send it and its
                // partitions wait for the broker to expire the member. It
                // may block on an unreachable broker: `shutdown` waits for
                // it only up to its timeout.
                drop(consumer);
                let _ = done.send(());
            })
            .map_err(KafkaStartError::Thread)?;
        Ok(Self { stop, finished })
    }

    /// Stores and commits what was received, leaves the group. librdkafka's
    /// own shutdown can hang on an unreachable broker: past `timeout` Comet
    /// goes on without it (nothing uncommitted is lost; it is replayed).
    pub async fn shutdown(self, timeout: Duration) {
        self.stop.store(true, Ordering::Release);
        if tokio::time::timeout(timeout, self.finished).await.is_err() {
            warn!(?timeout, "Kafka consumer did not stop in time; leaving it");
        }
    }
}

/// librdkafka properties a producer refuses to take.
const CONSUMER_ONLY: &[&str] = &[
    "group.id",
    "group.instance.id",
    "auto.offset.reset",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "max.partition.fetch.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "partition.assignment.strategy",
    "isolation.level",
];
