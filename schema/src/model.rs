//! Samples and metric metadata, independent of any wire format.

use std::fmt;
use std::str::FromStr;

use crate::labels::Labels;

/// Bit pattern of Prometheus's staleness marker: a NaN that is not the
/// ordinary NaN. It must be stored and returned bit-exact.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as an `f64`.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `value` is exactly the staleness marker (not any NaN).
pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// One float sample of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch, as Prometheus counts time.
    pub timestamp_ms: i64,
    pub value: f64,
}

/// A series with its samples, as sources hand them to the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Writes a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` does, with
/// Prometheus's `NaN`, `+Inf` and `-Inf`: the form of sample values in the
/// HTTP API and of `le` and `quantile` label values.
pub fn write_float(out: &mut impl fmt::Write, v: f64) -> fmt::Result {
    if v.is_nan() {
        out.write_str("NaN")
    } else if v == f64::INFINITY {
        out.write_str("+Inf")
    } else if v == f64::NEG_INFINITY {
        out.write_str("-Inf")
    } else {
        // Rust's shortest round-trip form, like Go's, never uses an exponent.
        write!(out, "{v}")
    }
}

/// [`write_float`] into a new string.
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    let _ = write_float(&mut out, v);
    out
}

/// The metric types Prometheus and OpenMetrics know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    /// The lower-case name used by the Prometheus metadata API.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetricType {
    type Err = std::convert::Infallible;

    /// Unknown strings become `Unknown`, as Prometheus does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        })
    }
}

/// Type, unit and help of one metric family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Metadata {
    pub metric_family_name: String,
    pub metric_type: MetricType,
    pub unit: String,
    pub help: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_marker_is_a_distinct_nan() {
        let stale = stale_nan();
        assert!(stale.is_nan());
        assert!(is_stale_nan(stale));
        assert!(!is_stale_nan(f64::NAN));
        assert_eq!(stale.to_bits(), STALE_NAN_BITS);
    }

    #[test]
    fn metric_type_round_trips() {
        for t in [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::GaugeHistogram,
            MetricType::Summary,
            MetricType::Info,
            MetricType::StateSet,
            MetricType::Unknown,
        ] {
            assert_eq!(t.as_str().parse::<MetricType>().unwrap(), t);
        }
        assert_eq!("weird".parse::<MetricType>().unwrap(), MetricType::Unknown);
    }
}
