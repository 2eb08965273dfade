//! The dead-letter topic: messages that cannot be decoded or validated are
//! copied there, with headers saying why and where they came from, before
//! their offset counts as processed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// Headers on every dead letter.
pub const ERROR_HEADER: &str = "comet-error";
pub const REASON_HEADER: &str = "comet-error-reason";
pub const TOPIC_HEADER: &str = "comet-source-topic";
pub const PARTITION_HEADER: &str = "comet-source-partition";
pub const OFFSET_HEADER: &str = "comet-source-offset";
pub const TIME_HEADER: &str = "comet-failed-at-ms";

/// Produces dead letters. Cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(producer: FutureProducer, topic: String) -> Self {
        Self { producer, topic }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Copies `message` to the dead-letter topic (same key, payload and
    /// headers, plus Comet's) and waits for the broker's acknowledgement.
    pub async fn send(
        &self,
        message: &OwnedMessage,
        reason: &str,
        error: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let now = now_ms.to_string();
        let mut headers = OwnedHeaders::new();
        if let Some(original) = message.headers() {
            for h in original.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        for (key, value) in [
            (ERROR_HEADER, error),
            (REASON_HEADER, reason),
            (TOPIC_HEADER, message.topic()),
            (PARTITION_HEADER, partition.as_str()),
            (OFFSET_HEADER, offset.as_str()),
            (TIME_HEADER, now.as_str()),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|_| ())
            .map_err(|(err, _)| err)
    }
}
