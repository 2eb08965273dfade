//! Row types as they travel to and from ClickHouse in RowBinary.
//! Field order and types match the DDL in [`crate::ddl`]; the integration
//! tests write and read each of them against a real server.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::labels::Labels;
use crate::model::{Metadata, Sample};

/// A row of `samples`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SampleRow {
    pub metric_name: String,
    pub fingerprint: u64,
    pub timestamp_ms: i64,
    pub value: f64,
}

impl SampleRow {
    pub fn new(labels: &Labels, fingerprint: u64, sample: Sample) -> Self {
        Self {
            metric_name: labels.metric_name().to_string(),
            fingerprint,
            timestamp_ms: sample.timestamp_ms,
            value: sample.value,
        }
    }
}

/// A row of `samples` for writing, borrowing the metric name so a batch of
/// a million samples does not hold a million copies of it.
#[derive(Debug, Clone, Copy, PartialEq, Row, Serialize)]
pub struct SampleRowRef<'a> {
    pub metric_name: &'a str,
    pub fingerprint: u64,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A row of `exemplars`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct ExemplarRow {
    pub metric_name: String,
    pub fingerprint: u64,
    pub timestamp_ms: i64,
    pub value: f64,
    pub labels: Vec<(String, String)>,
}

/// A row of `series`: one per series per UTC day it is active.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SeriesRow {
    /// ClickHouse `Date`: days since 1970-01-01.
    pub date: u16,
    pub metric_name: String,
    pub fingerprint: u64,
    /// ClickHouse `Map`, written as (name, value) pairs in label order.
    pub labels: Vec<(String, String)>,
}

impl SeriesRow {
    pub fn new(labels: &Labels, fingerprint: u64, date: u16) -> Self {
        Self {
            date,
            metric_name: labels.metric_name().to_string(),
            fingerprint,
            labels: labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
        }
    }
}

/// A row of `metadata`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct MetadataRow {
    pub metric_family_name: String,
    #[serde(rename = "type")]
    pub metric_type: String,
    pub unit: String,
    pub help: String,
    /// ClickHouse `DateTime`: seconds since the epoch; the newest row wins.
    pub last_seen: u32,
}

impl MetadataRow {
    pub fn new(metadata: &Metadata, last_seen_unix_seconds: u32) -> Self {
        Self {
            metric_family_name: metadata.metric_family_name.clone(),
            metric_type: metadata.metric_type.as_str().to_string(),
            unit: metadata.unit.clone(),
            help: metadata.help.clone(),
            last_seen: last_seen_unix_seconds,
        }
    }
}

/// The UTC day (days since the epoch) of a millisecond timestamp, clamped to
/// the range of ClickHouse's `Date` (1970-01-01 ..= 2149-06-06).
pub fn day_of_timestamp_ms(timestamp_ms: i64) -> u16 {
    let days = timestamp_ms.div_euclid(86_400_000);
    days.clamp(0, i64::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_boundaries() {
        assert_eq!(day_of_timestamp_ms(0), 0);
        assert_eq!(day_of_timestamp_ms(86_399_999), 0);
        assert_eq!(day_of_timestamp_ms(86_400_000), 1);
        assert_eq!(day_of_timestamp_ms(-1), 0);
        // 2024-01-01T00:00:00Z is day 19723.
        assert_eq!(day_of_timestamp_ms(1_704_067_200_000), 19723);
        assert_eq!(day_of_timestamp_ms(i64::MAX), u16::MAX);
    }
}
