//! The batch ledger (table `kafka_batches`): each batch's offset range is
//! recorded before its insert. After a crash, the partition's next owner
//! reads the ranges planned past the committed offset and cuts the same
//! batches again, so their `insert_deduplication_token`s match and
//! ClickHouse drops what was already stored.

use clickhouse::Row;
use comet_schema::migrate::KAFKA_BATCHES_TABLE;
use comet_schema::{Store, StoreError};
use serde::{Deserialize, Serialize};

/// An offset range of one partition, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Row, Serialize, Deserialize)]
pub struct PlannedRange {
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Row, Serialize)]
struct LedgerRow<'a> {
    consumer_group: &'a str,
    topic: &'a str,
    partition: i32,
    first_offset: i64,
    last_offset: i64,
}

/// The ledger of one consumer group. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    store: Store,
    group: String,
}

impl Ledger {
    pub fn new(store: Store, group: String) -> Self {
        Self { store, group }
    }

    /// Ranges planned for `partition` starting at or after `from_offset`,
    /// oldest first. A range planned twice (two owners racing) counts once,
    /// the later plan winning.
    pub async fn planned(
        &self,
        topic: &str,
        partition: i32,
        from_offset: i64,
    ) -> Result<Vec<PlannedRange>, StoreError> {
        let query = self
            .store
            .client()
            .query(&format!(
                "SELECT first_offset, argMax(last_offset, planned_at) AS last_offset \
                 FROM {KAFKA_BATCHES_TABLE} \
                 WHERE consumer_group = ? AND topic = ? AND partition = ? AND first_offset >= ? \
                 GROUP BY first_offset ORDER BY first_offset"
            ))
            .bind(&self.group)
            .bind(topic)
            .bind(partition)
            .bind(from_offset);
        self.store
            .fetch_all::<PlannedRange>(query, "read the Kafka batch ledger")
            .await
    }

    /// Records that the batch `range` of `partition` is about to be inserted.
    pub async fn plan(
        &self,
        topic: &str,
        partition: i32,
        range: PlannedRange,
    ) -> Result<(), StoreError> {
        let row = LedgerRow {
            consumer_group: &self.group,
            topic,
            partition,
            first_offset: range.first_offset,
            last_offset: range.last_offset,
        };
        self.store
            .insert::<LedgerRow<'static>>(KAFKA_BATCHES_TABLE, &[row])
            .await
    }
}

/// The `insert_deduplication_token` of a batch: the same range of the same
/// partition always gets the same token.
pub fn dedup_token(topic: &str, partition: i32, range: PlannedRange) -> String {
    format!(
        "kafka:{topic}:{partition}:{}-{}",
        range.first_offset, range.last_offset
    )
}
