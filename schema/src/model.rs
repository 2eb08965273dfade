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
    } else if v == 0.0 {
        out.write_str(if v.is_sign_negative() { "-0" } else { "0" })
    } else {
        // Ryu's shortest round-trip digits (Go's too), written out without
        // an exponent: several times faster than `{v}`, and the same text.
        let mut buffer = ryu::Buffer::new();
        let ryu = buffer.format_finite(v);
        if ryu.as_bytes().contains(&b'e') {
            write_plain_decimal(out, ryu)
        } else {
            // Already plain (`0.00123`, `123.45`); `.0` ends an integer.
            out.write_str(ryu.strip_suffix(".0").unwrap_or(ryu))
        }
    }
}

/// Rewrites a finite, non-zero float in Ryu's exponent form (`-1.5e-7`,
/// `1e16`) as a plain decimal without exponent or trailing zeros
/// (`-0.00000015`, `10000000000000000`).
fn write_plain_decimal(out: &mut impl fmt::Write, ryu: &str) -> fmt::Result {
    let (negative, unsigned) = match ryu.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, ryu),
    };
    let (mantissa, exponent) = match unsigned.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| fmt::Error)?),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // All significant digits (at most 17, Ryu's form is at most 24
    // characters), and where the decimal point falls in them.
    let mut buffer = [0u8; 32];
    let total = integer.len() + fraction.len();
    if total > buffer.len() {
        return Err(fmt::Error);
    }
    buffer[..integer.len()].copy_from_slice(integer.as_bytes());
    buffer[integer.len()..total].copy_from_slice(fraction.as_bytes());
    let leading = buffer[..total].iter().take_while(|&&d| d == b'0').count();
    let mut digits = &buffer[leading..total];
    let point = integer.len() as i32 + exponent - leading as i32;
    while digits.len() as i32 > point.max(0) && digits.last() == Some(&b'0') {
        digits = &digits[..digits.len() - 1];
    }
    let digits = std::str::from_utf8(digits).map_err(|_| fmt::Error)?;
    if negative {
        out.write_char('-')?;
    }
    if point <= 0 {
        out.write_str("0.")?;
        for _ in 0..-point {
            out.write_char('0')?;
        }
        out.write_str(digits)
    } else if point as usize >= digits.len() {
        out.write_str(digits)?;
        for _ in 0..point as usize - digits.len() {
            out.write_char('0')?;
        }
        Ok(())
    } else {
        let (whole, part) = digits.split_at(point as usize);
        out.write_str(whole)?;
        out.write_char('.')?;
        out.write_str(part)
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

    /// `{v}` (Rust's shortest round-trip digits, no exponent) was the
    /// reference form; the Ryu-based writer must give the same text.
    #[test]
    fn floats_are_written_as_go_formats_them() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            100.0,
            1e16,
            1e21,
            1e22,
            123456789012345680000.0,
            1.5e-7,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            3.0381164756586635e300,
            0.30000000000000004,
            1234.5,
            1e-5,
            9007199254740993.0,
        ];
        // A fixed xorshift walk over bit patterns, and over decimals.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(f64::from_bits(x));
            values.push((x % 1_000_000) as f64 / 10f64.powi((i % 12) as i32));
        }
        let significant = |s: &str| -> String {
            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
            digits.trim_matches('0').to_string()
        };
        for v in values.into_iter().filter(|v| v.is_finite()) {
            let ours = format_float(v);
            let reference = format!("{v}");
            if ours == reference {
                continue;
            }
            // Where two shortest forms are equally close, Go (and Ryu)
            // round half to even; Rust's `{v}` does not always.
            let context = format!("bits {:#x}: {ours} vs {reference}", v.to_bits());
            assert_eq!(ours.parse::<f64>().ok(), Some(v), "{context}");
            let (a, b) = (significant(&ours), significant(&reference));
            assert_eq!(a.len(), b.len(), "{context}");
            assert_eq!(a[..a.len() - 1], b[..b.len() - 1], "{context}");
            let last = |s: &str| s.as_bytes()[s.len() - 1] - b'0';
            assert_eq!(last(&a) % 2, 0, "{context}");
            assert_eq!(last(&a).abs_diff(last(&b)), 1, "{context}");
        }
        // The tie above: 1658206780088562.25 exactly; Go writes ...562.2.
        assert_eq!(
            format_float(f64::from_bits(0x4317_9085_685d_83c9)),
            "1658206780088562.2"
        );
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    }

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
