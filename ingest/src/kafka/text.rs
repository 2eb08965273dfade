//! Prometheus text exposition lines (`name{label="value"} value
//! timestamp_ms`) as they are written to Kafka by exporters and scripts.
//! Written here rather than taken from a crate: the crates on crates.io are
//! regex-based, lose colons in names and unescaped label values, and fill
//! in the parse time for a missing timestamp.

use comet_schema::{Labels, Metadata, MetricType, NameValidation, Sample};
use std::collections::HashMap;
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_128;

use crate::batch::{Rejection, SeriesSamples, WriteBatch};
use crate::series::SeriesRegistry;

/// A line that is not valid exposition format.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct TextError {
    pub line: usize,
    pub message: String,
}

/// A parsed message.
#[derive(Debug, Default)]
pub struct ParsedText {
    pub batch: WriteBatch,
    pub rejections: Vec<Rejection>,
    pub samples: u64,
}

/// Parses `text`; samples without a timestamp get `default_timestamp_ms`
/// (the Kafka message's timestamp). Any malformed line fails the whole
/// message; series with invalid names are rejected, the rest kept.
pub fn parse(
    text: &str,
    default_timestamp_ms: i64,
    validation: NameValidation,
    registry: &SeriesRegistry,
) -> Result<ParsedText, TextError> {
    let mut out = ParsedText::default();
    let mut index: HashMap<u128, usize> = HashMap::new();
    let mut families: HashMap<&str, Metadata> = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        let fail = |message: String| TextError {
            line: number + 1,
            message,
        };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            comment_line(comment, &mut families);
            continue;
        }
        let sample = parse_sample(line).map_err(fail)?;
        out.samples += 1;
        let key = xxh3_128(sample.series_text.as_bytes());
        let slot = match index.get(&key) {
            Some(&slot) => slot,
            None => {
                let series = match registry.get(key) {
                    Some(series) => series,
                    None => match Labels::new(sample.labels, validation)
                        .and_then(|labels| registry.admit(key, labels))
                    {
                        Ok(series) => series,
                        Err(err) => {
                            out.rejections.push(Rejection {
                                reason: err.reason(),
                                message: format!("line {}: {err}", number + 1),
                                samples: 1,
                                histograms: 0,
                            });
                            continue;
                        }
                    },
                };
                out.batch
                    .series
                    .push(SeriesSamples::new(series, Vec::new()));
                index.insert(key, out.batch.series.len() - 1);
                out.batch.series.len() - 1
            }
        };
        out.batch.series[slot].samples.push(Sample {
            timestamp_ms: sample.timestamp_ms.unwrap_or(default_timestamp_ms),
            value: sample.value,
        });
    }
    for series in &mut out.batch.series {
        // Lines of one series may come in any order; samples go in time order.
        series.samples.sort_by_key(|s| s.timestamp_ms);
    }
    out.batch
        .series
        .retain(|s: &SeriesSamples| !s.samples.is_empty());
    out.batch.metadata = families.into_values().collect();
    Ok(out)
}

/// `# TYPE name type` and `# HELP name text`; other comments are ignored.
fn comment_line<'a>(comment: &'a str, families: &mut HashMap<&'a str, Metadata>) {
    let mut parts = comment.trim_start().splitn(3, ' ');
    let (Some(kind @ ("TYPE" | "HELP")), Some(name)) = (parts.next(), parts.next()) else {
        return;
    };
    let rest = parts.next().unwrap_or("").trim();
    let family = families.entry(name).or_insert_with(|| Metadata {
        metric_family_name: name.to_string(),
        metric_type: MetricType::Unknown,
        unit: String::new(),
        help: String::new(),
    });
    if kind == "TYPE" {
        family.metric_type = rest.parse().unwrap_or_default();
    } else {
        family.help = unescape_help(rest);
    }
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    out
}

struct TextSample<'a> {
    /// `name{...}` as written: the registry key.
    series_text: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

fn parse_sample(line: &str) -> Result<TextSample<'_>, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or_else(|| "a sample needs a value after its name".to_string())?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("a sample line must start with a metric name".into());
    }
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let (pairs, after) = parse_labels(inner)?;
        labels.extend(pairs);
        rest = after;
    }
    let series_text = &line[..line.len() - rest.len()];
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("{series_text}: no value"))
        .and_then(|v| parse_value(v).ok_or_else(|| format!("{series_text}: bad value {v:?}")))?;
    let timestamp_ms =
        match fields.next() {
            None => None,
            Some(ts) => Some(ts.parse::<i64>().map_err(|_| {
                format!("{series_text}: bad timestamp {ts:?} (integer milliseconds)")
            })?),
        };
    if let Some(extra) = fields.next() {
        return Err(format!(
            "{series_text}: unexpected {extra:?} after the timestamp"
        ));
    }
    Ok(TextSample {
        series_text,
        labels,
        value,
        timestamp_ms,
    })
}

/// Label pairs after `{`, up to and including `}`; returns what follows.
type LabelPairs = Vec<(String, String)>;

fn parse_labels(mut s: &str) -> Result<(LabelPairs, &str), String> {
    let mut pairs = Vec::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Ok((pairs, after));
        }
        let eq = s.find('=').ok_or("a label needs name=\"value\"")?;
        let name = s[..eq].trim();
        if name.is_empty() {
            return Err("empty label name".into());
        }
        s = s[eq + 1..].trim_start();
        s = s.strip_prefix('"').ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err("unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        pairs.push((name.to_string(), value));
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("labels must be separated by commas".into());
        }
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> SeriesRegistry {
        SeriesRegistry::new(1 << 20)
    }

    #[test]
    fn parses_samples_labels_and_metadata() {
        let text = "# HELP http_requests_total Requests \\n served.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"GET\",path=\"/a\\\"b\"} 12 1700000000000\n\
                    http_requests_total{method=\"GET\",path=\"/a\\\"b\"} 10 1699999990000\n\
                    node:load1 +Inf\n\
                    \n";
        let parsed = parse(text, 42, NameValidation::Legacy, &registry()).unwrap();
        assert_eq!(parsed.samples, 3);
        assert!(parsed.rejections.is_empty());
        assert_eq!(parsed.batch.series.len(), 2);
        let http = &parsed.batch.series[0];
        assert_eq!(http.labels().get("path"), Some("/a\"b"));
        let times: Vec<i64> = http.samples.iter().map(|s| s.timestamp_ms).collect();
        assert_eq!(times, [1699999990000, 1700000000000]);
        let load = &parsed.batch.series[1];
        assert_eq!(load.labels().metric_name(), "node:load1");
        assert_eq!(load.samples[0].timestamp_ms, 42);
        assert_eq!(load.samples[0].value, f64::INFINITY);
        let meta = &parsed.batch.metadata[0];
        assert_eq!(meta.metric_type, MetricType::Counter);
        assert_eq!(meta.help, "Requests \n served.");
    }

    #[test]
    fn malformed_lines_fail_the_message() {
        for bad in [
            "up",
            "up{job=\"a\" 1",
            "up{job=a} 1",
            "up 1 2 3",
            "up one",
            "up 1 1.5",
        ] {
            let err = parse(bad, 0, NameValidation::Legacy, &registry()).unwrap_err();
            assert_eq!(err.line, 1, "{bad}");
        }
    }

    #[test]
    fn invalid_names_are_rejected_not_fatal() {
        let text = "up 1 1000\nbad-name 2 1000\n";
        let parsed = parse(text, 0, NameValidation::Legacy, &registry()).unwrap();
        assert_eq!(parsed.batch.series.len(), 1);
        assert_eq!(parsed.rejections.len(), 1);
        assert_eq!(parsed.rejections[0].samples, 1);
    }
}
