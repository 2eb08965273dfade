//! Remote-write bodies (snappy-compressed protobuf, 1.0 and 2.0) to a
//! [`WriteBatch`]. Whole-request problems (bad snappy, bad protobuf, too
//! large) are a [`RequestError`]; problems of single series are
//! [`Rejection`]s and the rest of the request is still stored.

use std::sync::Arc;

use comet_schema::prompb::{v1, v2};
use comet_schema::rows::ExemplarRow;
use comet_schema::{
    Label, LabelError, Labels, Metadata, MetricType, NameValidation, NativeHistogram, Sample,
};
use prost::Message;
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_128;

use super::histogram::decode_histogram;
use super::wire::{self, Reader};
use crate::batch::{Rejection, SeriesHistograms, SeriesSamples, WriteBatch};
use crate::series::{Series, SeriesRegistry};

/// Limits and choices for decoding.
#[derive(Debug, Clone, Copy)]
pub struct DecodeOptions {
    /// Largest body after snappy decompression.
    pub max_decompressed_bytes: usize,
    pub name_validation: NameValidation,
    /// Remote-write 2.0: add a 0 sample at a series' created timestamp, as
    /// Prometheus's `created-timestamp-zero-ingestion` does.
    pub created_timestamp_zero_samples: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            max_decompressed_bytes: 256 << 20,
            name_validation: NameValidation::Legacy,
            created_timestamp_zero_samples: false,
        }
    }
}

/// A request that cannot be stored at all.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("body is not valid snappy block format: {0}")]
    Snappy(String),
    #[error("body is not a valid {message} protobuf: {error}")]
    Protobuf {
        message: &'static str,
        error: String,
    },
    #[error("decompressed body of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl RequestError {
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::Snappy(_) => "invalid_snappy",
            RequestError::Protobuf { .. } => "invalid_protobuf",
            RequestError::TooLarge { .. } => "too_large",
        }
    }
}

/// A decoded request.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: WriteBatch,
    pub rejections: Vec<Rejection>,
    /// Float samples in the request, accepted or not.
    pub received_samples: u64,
    /// Native histogram samples in the request, accepted or not.
    pub received_histograms: u64,
}

impl Decoded {
    fn reject(&mut self, reason: &'static str, message: String, samples: u64) {
        self.reject_both(reason, message, samples, 0);
    }

    fn reject_both(
        &mut self,
        reason: &'static str,
        message: String,
        samples: u64,
        histograms: u64,
    ) {
        self.rejections.push(Rejection {
            reason,
            message,
            samples,
            histograms,
        });
    }

    /// Keeps a series' float samples and native histograms, or records why
    /// not. A series with neither is kept as before (it stores nothing).
    fn push_series_data(
        &mut self,
        series: Result<Arc<Series>, LabelError>,
        samples: Vec<Sample>,
        histograms: &[v1::Histogram],
        series_start_ms: i64,
    ) {
        let series = match series {
            Ok(series) => series,
            Err(err) => {
                return self.reject_both(
                    err.reason(),
                    err.to_string(),
                    samples.len() as u64,
                    histograms.len() as u64,
                );
            }
        };
        if !histograms.is_empty() {
            self.push_histograms(&series, histograms, series_start_ms);
            if samples.is_empty() {
                return;
            }
        }
        self.push_series(Ok(series), samples);
    }

    /// Decodes and validates each histogram: a bad one is refused with its
    /// reason, the others of the series are kept (as Prometheus's 2.0
    /// handler does).
    fn push_histograms(
        &mut self,
        series: &Arc<Series>,
        histograms: &[v1::Histogram],
        series_start_ms: i64,
    ) {
        let mut good = Vec::with_capacity(histograms.len());
        for h in histograms {
            match decode_histogram(h, series_start_ms) {
                Ok(histogram) => good.push(histogram),
                Err(err) => self.reject_both(
                    err.reason(),
                    format!(
                        "series {}: histogram at {} ms: {err}",
                        series.labels(),
                        h.timestamp
                    ),
                    0,
                    1,
                ),
            }
        }
        if good.is_empty() {
            return;
        }
        let count = good.len() as u64;
        match histograms_in_order(good) {
            Ok(histograms) => self.batch.histograms.push(SeriesHistograms {
                series: Arc::clone(series),
                histograms,
            }),
            Err((previous, next)) => self.reject_both(
                "out_of_order",
                format!(
                    "series {}: histogram at {next} ms comes after one at {previous} ms",
                    series.labels()
                ),
                0,
                count,
            ),
        }
    }

    /// Keeps a validated series with its samples, or records why not.
    fn push_series(&mut self, series: Result<Arc<Series>, LabelError>, samples: Vec<Sample>) {
        let count = samples.len() as u64;
        let series = match series {
            Ok(series) => series,
            Err(err) => return self.reject(err.reason(), err.to_string(), count),
        };
        match in_order(samples) {
            Ok(samples) => self.batch.series.push(SeriesSamples::new(series, samples)),
            Err((previous, next)) => self.reject(
                "out_of_order",
                format!(
                    "series {}: sample at {next} ms comes after one at {previous} ms",
                    series.labels()
                ),
                count,
            ),
        }
    }
}

/// Decompresses a snappy block-format body within a size limit.
pub fn decompress(body: &[u8], limit: usize) -> Result<Vec<u8>, RequestError> {
    let size = snap::raw::decompress_len(body).map_err(|e| RequestError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(RequestError::TooLarge { size, limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| RequestError::Snappy(e.to_string()))
}

/// Remote-write 1.0: `prometheus.WriteRequest`.
///
/// Read with a small wire reader rather than prost so that a series seen
/// before is found in `registry` by a hash of its raw label bytes, with no
/// per-label allocation; new series are decoded, validated and registered.
pub fn decode_v1(
    body: &[u8],
    options: &DecodeOptions,
    registry: &SeriesRegistry,
) -> Result<Decoded, RequestError> {
    let raw = decompress(body, options.max_decompressed_bytes)?;
    parse_v1(&raw, options, registry).map_err(|error| RequestError::Protobuf {
        message: "prometheus.WriteRequest",
        error,
    })
}

fn parse_v1(
    raw: &[u8],
    options: &DecodeOptions,
    registry: &SeriesRegistry,
) -> Result<Decoded, String> {
    let mut out = Decoded::default();
    let mut scratch = Scratch::default();
    let mut reader = Reader::new(raw);
    while !reader.is_empty() {
        match reader.key()? {
            (1, wire::LEN) => {
                decode_v1_series(reader.bytes()?, options, registry, &mut scratch, &mut out)?
            }
            (3, wire::LEN) => {
                let m = v1::MetricMetadata::decode(reader.bytes()?).map_err(|e| e.to_string())?;
                out.batch.metadata.push(Metadata {
                    metric_type: wire_metric_type(m.r#type),
                    metric_family_name: m.metric_family_name,
                    unit: m.unit,
                    help: m.help,
                });
            }
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }
    Ok(out)
}

/// Buffers reused from one series to the next.
#[derive(Default)]
struct Scratch<'a> {
    labels: Vec<&'a [u8]>,
    exemplars: Vec<&'a [u8]>,
    histograms: Vec<&'a [u8]>,
    key: Vec<u8>,
}

/// One `prometheus.TimeSeries`.
fn decode_v1_series<'a>(
    bytes: &'a [u8],
    options: &DecodeOptions,
    registry: &SeriesRegistry,
    scratch: &mut Scratch<'a>,
    out: &mut Decoded,
) -> Result<(), String> {
    scratch.labels.clear();
    scratch.exemplars.clear();
    scratch.histograms.clear();
    let mut samples = Vec::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.key()? {
            (1, wire::LEN) => scratch.labels.push(reader.bytes()?),
            (2, wire::LEN) => samples.push(decode_v1_sample(reader.bytes()?)?),
            (3, wire::LEN) => scratch.exemplars.push(reader.bytes()?),
            (4, wire::LEN) => scratch.histograms.push(reader.bytes()?),
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }
    out.received_samples += samples.len() as u64;
    out.received_histograms += scratch.histograms.len() as u64;

    // The raw label messages, length-prefixed, identify the series.
    scratch.key.clear();
    for label in &scratch.labels {
        scratch
            .key
            .extend_from_slice(&(label.len() as u32).to_le_bytes());
        scratch.key.extend_from_slice(label);
    }
    let key = xxh3_128(&scratch.key);
    let series = match registry.get(key) {
        Some(series) => Ok(series),
        None => {
            let mut labels = Vec::with_capacity(scratch.labels.len());
            for bytes in &scratch.labels {
                let l = v1::Label::decode(*bytes).map_err(|e| e.to_string())?;
                labels.push(Label::new(l.name, l.value));
            }
            Labels::from_sorted(labels, options.name_validation)
                .and_then(|labels| registry.admit(key, labels))
        }
    };
    if let Ok(series) = &series {
        for bytes in &scratch.exemplars {
            let e = v1::Exemplar::decode(*bytes).map_err(|e| e.to_string())?;
            let labels = e.labels.into_iter().map(|l| (l.name, l.value)).collect();
            out.batch
                .exemplars
                .push(exemplar(series, e.timestamp, e.value, labels));
        }
    }
    let mut histograms = Vec::with_capacity(scratch.histograms.len());
    for bytes in &scratch.histograms {
        histograms.push(v1::Histogram::decode(*bytes).map_err(|e| e.to_string())?);
    }
    // Remote-write 1.0 has no start timestamps.
    out.push_series_data(series, samples, &histograms, 0);
    Ok(())
}

/// `prometheus.Sample`: value (fixed64 double, field 1), timestamp (int64
/// varint, field 2); absent fields are 0.
fn decode_v1_sample(bytes: &[u8]) -> Result<Sample, String> {
    let mut sample = Sample {
        timestamp_ms: 0,
        value: 0.0,
    };
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.key()? {
            (1, wire::FIXED64) => sample.value = f64::from_bits(reader.fixed64()?),
            (2, wire::VARINT) => sample.timestamp_ms = reader.varint()? as i64,
            (_, wire_type) => reader.skip(wire_type)?,
        }
    }
    Ok(sample)
}

/// An exemplar row of a validated series.
fn exemplar(
    series: &Series,
    timestamp_ms: i64,
    value: f64,
    labels: Vec<(String, String)>,
) -> ExemplarRow {
    ExemplarRow {
        metric_name: series.metric_name().to_string(),
        fingerprint: series.fingerprint(),
        timestamp_ms,
        value,
        labels,
    }
}

/// Remote-write 2.0: `io.prometheus.write.v2.Request`.
pub fn decode_v2(
    body: &[u8],
    options: &DecodeOptions,
    registry: &SeriesRegistry,
) -> Result<Decoded, RequestError> {
    let raw = decompress(body, options.max_decompressed_bytes)?;
    let request = v2::Request::decode(raw.as_slice()).map_err(|e| RequestError::Protobuf {
        message: "io.prometheus.write.v2.Request",
        error: e.to_string(),
    })?;
    let symbols = &request.symbols;
    let mut out = Decoded::default();
    let mut key_buffer = Vec::new();
    for ts in request.timeseries {
        let count = ts.samples.len() as u64;
        out.received_samples += count;
        out.received_histograms += ts.histograms.len() as u64;
        if let Err(message) = check_refs(symbols, &ts.labels_refs) {
            out.reject_both(
                "invalid_symbol_ref",
                message,
                count,
                ts.histograms.len() as u64,
            );
            continue;
        }
        let key = refs_key(symbols, &ts.labels_refs, &mut key_buffer);
        let series = match registry.get(key) {
            Some(series) => Ok(series),
            // 2.0 does not promise sorted labels; sort, still refusing
            // duplicates.
            None => Labels::new(
                symbol_pairs(symbols, &ts.labels_refs),
                options.name_validation,
            )
            .and_then(|labels| registry.admit(key, labels)),
        };
        if let Ok(series) = &series {
            for e in &ts.exemplars {
                match check_refs(symbols, &e.labels_refs) {
                    Ok(()) => {
                        let labels = symbol_pairs(symbols, &e.labels_refs)
                            .map(|(n, v)| (n.to_string(), v.to_string()))
                            .collect();
                        out.batch
                            .exemplars
                            .push(exemplar(series, e.timestamp, e.value, labels));
                    }
                    Err(message) => out.reject("invalid_symbol_ref", message, 0),
                }
            }
            if let Some(m) = &ts.metadata
                && let Some(metadata) = v2_metadata(symbols, m, series.metric_name())
            {
                out.batch.metadata.push(metadata);
            }
        }
        let mut samples: Vec<Sample> = Vec::with_capacity(ts.samples.len() + 1);
        if options.created_timestamp_zero_samples
            && ts.created_timestamp > 0
            && ts
                .samples
                .first()
                .is_some_and(|s| s.timestamp > ts.created_timestamp)
        {
            samples.push(Sample {
                timestamp_ms: ts.created_timestamp,
                value: 0.0,
            });
        }
        samples.extend(ts.samples.into_iter().map(|s| Sample {
            timestamp_ms: s.timestamp,
            value: s.value,
        }));
        out.push_series_data(series, samples, &ts.histograms, ts.created_timestamp);
    }
    Ok(out)
}

/// Checks `[name_ref, value_ref, ...]`: pairs, each inside the symbol table.
fn check_refs(symbols: &[String], refs: &[u32]) -> Result<(), String> {
    if refs.len() % 2 != 0 {
        return Err(format!(
            "labels_refs has an odd length ({}); it must hold name/value pairs",
            refs.len()
        ));
    }
    match refs.iter().find(|&&r| r as usize >= symbols.len()) {
        Some(r) => Err(format!(
            "symbol reference {r} is out of range (the symbol table has {} entries)",
            symbols.len()
        )),
        None => Ok(()),
    }
}

/// The label pairs of references that passed [`check_refs`].
fn symbol_pairs<'s>(
    symbols: &'s [String],
    refs: &'s [u32],
) -> impl Iterator<Item = (&'s str, &'s str)> + 's {
    let symbol = |r: u32| symbols.get(r as usize).map_or("", String::as_str);
    refs.chunks_exact(2)
        .map(move |pair| (symbol(pair[0]), symbol(pair[1])))
}

/// A registry key for a 2.0 series: a hash of its label strings, computed
/// without allocating them.
fn refs_key(symbols: &[String], refs: &[u32], buffer: &mut Vec<u8>) -> u128 {
    buffer.clear();
    // A different domain than 1.0's raw-bytes keys.
    buffer.push(2);
    for (name, value) in symbol_pairs(symbols, refs) {
        for text in [name, value] {
            buffer.extend_from_slice(&(text.len() as u32).to_le_bytes());
            buffer.extend_from_slice(text.as_bytes());
        }
    }
    xxh3_128(buffer)
}

fn v2_metadata(symbols: &[String], m: &v2::Metadata, metric_name: &str) -> Option<Metadata> {
    let text = |r: u32| symbols.get(r as usize).cloned().unwrap_or_default();
    let metric_type = wire_metric_type(m.r#type);
    let (help, unit) = (text(m.help_ref), text(m.unit_ref));
    if metric_type == MetricType::Unknown && help.is_empty() && unit.is_empty() {
        return None;
    }
    Some(Metadata {
        metric_family_name: metric_name.to_string(),
        metric_type,
        unit,
        help,
    })
}

/// The metric type enums of 1.0 and 2.0 share their numbers (2.0's 0 is
/// "unspecified", 1.0's "unknown").
fn wire_metric_type(value: i32) -> MetricType {
    match v1::MetricType::try_from(value).unwrap_or(v1::MetricType::Unknown) {
        v1::MetricType::Unknown => MetricType::Unknown,
        v1::MetricType::Counter => MetricType::Counter,
        v1::MetricType::Gauge => MetricType::Gauge,
        v1::MetricType::Histogram => MetricType::Histogram,
        v1::MetricType::Gaugehistogram => MetricType::GaugeHistogram,
        v1::MetricType::Summary => MetricType::Summary,
        v1::MetricType::Info => MetricType::Info,
        v1::MetricType::Stateset => MetricType::StateSet,
    }
}

/// Samples must come in timestamp order. A repeat of the same timestamp
/// with the same value is dropped (as Prometheus does); anything else out of
/// order refuses the series, returning the offending pair.
fn in_order(samples: Vec<Sample>) -> Result<Vec<Sample>, (i64, i64)> {
    in_time_order(
        samples,
        |s| s.timestamp_ms,
        |a, b| a.value.to_bits() == b.value.to_bits(),
    )
}

/// [`in_order`] for histograms, compared field by field.
fn histograms_in_order(
    histograms: Vec<NativeHistogram>,
) -> Result<Vec<NativeHistogram>, (i64, i64)> {
    in_time_order(histograms, |h| h.timestamp_ms, NativeHistogram::same_as)
}

/// `items` in timestamp order with exact repeats dropped, or the first
/// pair out of order (or repeated with another value).
fn in_time_order<T>(
    items: Vec<T>,
    timestamp: impl Fn(&T) -> i64,
    same: impl Fn(&T, &T) -> bool,
) -> Result<Vec<T>, (i64, i64)> {
    if items
        .windows(2)
        .all(|w| timestamp(&w[0]) < timestamp(&w[1]))
    {
        return Ok(items);
    }
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if let Some(last) = out.last() {
            let (t, last_t) = (timestamp(&item), timestamp(last));
            if t < last_t || (t == last_t && !same(&item, last)) {
                return Err((last_t, t));
            }
            if t == last_t {
                continue;
            }
        }
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use comet_schema::model::{STALE_NAN_BITS, stale_nan};

    fn registry() -> SeriesRegistry {
        SeriesRegistry::new(1 << 20)
    }

    fn label(n: &str, v: &str) -> v1::Label {
        v1::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn series(labels: Vec<v1::Label>, samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| v1::Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    fn encode_v1(request: &v1::WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    #[test]
    fn v1_valid_series_metadata_and_special_values() {
        let request = v1::WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "up"), label("job", "a")],
                &[
                    (1000, 1.0),
                    (2000, f64::NAN),
                    (3000, stale_nan()),
                    (4000, f64::INFINITY),
                ],
            )],
            metadata: vec![v1::MetricMetadata {
                r#type: v1::MetricType::Gauge as i32,
                metric_family_name: "up".into(),
                help: "up or not".into(),
                unit: String::new(),
            }],
        };
        let out = decode_v1(&encode_v1(&request), &DecodeOptions::default(), &registry()).unwrap();
        assert!(out.rejections.is_empty());
        assert_eq!(out.received_samples, 4);
        let s = &out.batch.series[0];
        assert_eq!(s.labels().metric_name(), "up");
        assert_eq!(s.samples[2].value.to_bits(), STALE_NAN_BITS);
        assert!(s.samples[1].value.is_nan());
        assert_eq!(out.batch.metadata[0].metric_type, MetricType::Gauge);
    }

    #[test]
    fn v1_bad_series_are_rejected_with_reasons_and_the_rest_kept() {
        let request = v1::WriteRequest {
            timeseries: vec![
                series(vec![label("job", "a")], &[(1, 1.0)]),
                series(
                    vec![label("__name__", "x"), label("a", "1"), label("a", "2")],
                    &[(1, 1.0)],
                ),
                series(vec![label("__name__", "x"), label("a-b", "1")], &[(1, 1.0)]),
                series(vec![label("job", "a"), label("__name__", "x")], &[(1, 1.0)]),
                series(vec![label("__name__", "x")], &[(2, 1.0), (1, 1.0)]),
                series(
                    vec![label("__name__", "ok")],
                    &[(1, 1.0), (1, 1.0), (2, 2.0)],
                ),
            ],
            metadata: vec![],
        };
        let out = decode_v1(&encode_v1(&request), &DecodeOptions::default(), &registry()).unwrap();
        let reasons: Vec<_> = out.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            [
                "missing_metric_name",
                "duplicate_label_name",
                "invalid_label_name",
                "unsorted_labels",
                "out_of_order"
            ]
        );
        assert_eq!(out.batch.series.len(), 1);
        // The repeated identical sample was dropped.
        assert_eq!(out.batch.series[0].samples.len(), 2);
    }

    /// A known series is served from the registry: same entry, same result.
    #[test]
    fn repeated_series_share_one_registry_entry() {
        let registry = registry();
        let request = v1::WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "up"), label("job", "a")],
                &[(1, 1.0)],
            )],
            metadata: vec![],
        };
        let body = encode_v1(&request);
        let first = decode_v1(&body, &DecodeOptions::default(), &registry).unwrap();
        let second = decode_v1(&body, &DecodeOptions::default(), &registry).unwrap();
        let (a, b) = (&first.batch.series[0], &second.batch.series[0]);
        assert!(Arc::ptr_eq(&a.series, &b.series));
        assert_eq!(a.labels().to_string(), r#"up{job="a"}"#);
        assert_eq!(a.fingerprint(), a.labels().fingerprint());
        // Invalid series are never registered: refused every time.
        let bad = encode_v1(&v1::WriteRequest {
            timeseries: vec![series(vec![label("job", "a")], &[(1, 1.0)])],
            metadata: vec![],
        });
        for _ in 0..2 {
            let out = decode_v1(&bad, &DecodeOptions::default(), &registry).unwrap();
            assert_eq!(out.rejections[0].reason, "missing_metric_name");
        }
    }

    #[test]
    fn corrupt_bodies_are_request_errors() {
        let err = decode_v1(
            b"\xff\xff\xff\xff\xff",
            &DecodeOptions::default(),
            &registry(),
        )
        .unwrap_err();
        assert_eq!(err.reason(), "invalid_snappy");
        let garbage = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\x01")
            .unwrap();
        let err = decode_v1(&garbage, &DecodeOptions::default(), &registry()).unwrap_err();
        assert_eq!(err.reason(), "invalid_protobuf");
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 4096])
            .unwrap();
        let options = DecodeOptions {
            max_decompressed_bytes: 1024,
            ..DecodeOptions::default()
        };
        assert_eq!(
            decode_v1(&big, &options, &registry()).unwrap_err().reason(),
            "too_large"
        );
    }

    #[test]
    fn v2_symbols_metadata_and_created_timestamp() {
        let request = v2::Request {
            symbols: vec![
                "".into(),
                "__name__".into(),
                "reqs_total".into(),
                "job".into(),
                "a".into(),
                "Requests.".into(),
            ],
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![3, 4, 1, 2],
                    samples: vec![v2::Sample {
                        value: 5.0,
                        timestamp: 2000,
                    }],
                    metadata: Some(v2::Metadata {
                        r#type: v2::MetricType::Counter as i32,
                        help_ref: 5,
                        unit_ref: 0,
                    }),
                    created_timestamp: 1000,
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1, 99],
                    samples: vec![v2::Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Default::default()
                },
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let options = DecodeOptions {
            created_timestamp_zero_samples: true,
            ..DecodeOptions::default()
        };
        let out = decode_v2(&body, &options, &registry()).unwrap();
        assert_eq!(out.rejections[0].reason, "invalid_symbol_ref");
        let s = &out.batch.series[0];
        assert_eq!(s.labels().to_string(), r#"reqs_total{job="a"}"#);
        assert_eq!(
            s.samples,
            vec![
                Sample {
                    timestamp_ms: 1000,
                    value: 0.0
                },
                Sample {
                    timestamp_ms: 2000,
                    value: 5.0
                }
            ]
        );
        assert_eq!(out.batch.metadata[0].help, "Requests.");
        assert_eq!(out.batch.metadata[0].metric_type, MetricType::Counter);
    }

    fn histogram(timestamp: i64, count: u64) -> v1::Histogram {
        v1::Histogram {
            count: Some(v1::histogram::Count::CountInt(count)),
            sum: 1.5,
            schema: 3,
            positive_spans: vec![v1::BucketSpan {
                offset: 2,
                length: 1,
            }],
            positive_deltas: vec![count as i64],
            timestamp,
            ..Default::default()
        }
    }

    #[test]
    fn v1_histograms_are_kept_bad_ones_refused_and_floats_kept() {
        let mut mixed = series(vec![label("__name__", "lat")], &[(1000, 1.0)]);
        mixed.histograms = vec![
            histogram(1000, 2),
            // Count 9 but 3 in the buckets.
            v1::Histogram {
                count: Some(v1::histogram::Count::CountInt(9)),
                ..histogram(2000, 3)
            },
            histogram(3000, 4),
        ];
        let mut unordered = series(vec![label("__name__", "other")], &[]);
        unordered.histograms = vec![histogram(2000, 1), histogram(1000, 1)];
        let mut repeated = series(vec![label("__name__", "again")], &[]);
        repeated.histograms = vec![histogram(1000, 1), histogram(1000, 1)];
        let request = v1::WriteRequest {
            timeseries: vec![mixed, unordered, repeated],
            metadata: vec![],
        };
        let out = decode_v1(&encode_v1(&request), &DecodeOptions::default(), &registry()).unwrap();
        assert_eq!(out.received_samples, 1);
        assert_eq!(out.received_histograms, 7);
        let reasons: Vec<_> = out
            .rejections
            .iter()
            .map(|r| (r.reason, r.samples, r.histograms))
            .collect();
        assert_eq!(
            reasons,
            [("histogram_count_mismatch", 0, 1), ("out_of_order", 0, 2)]
        );
        assert!(
            out.rejections[0]
                .message
                .starts_with("series lat{}: histogram at 2000 ms: 3 observations found in buckets")
        );
        assert_eq!(out.batch.sample_count(), 1);
        assert_eq!(out.batch.histograms.len(), 2);
        let lat = &out.batch.histograms[0];
        assert_eq!(lat.series.labels().metric_name(), "lat");
        let times: Vec<_> = lat.histograms.iter().map(|h| h.timestamp_ms).collect();
        assert_eq!(times, [1000, 3000]);
        assert_eq!(lat.histograms[0].positive_index, vec![2]);
        // The identical repeat was dropped.
        assert_eq!(out.batch.histograms[1].histograms.len(), 1);
        assert_eq!(out.batch.histogram_count(), 3);
    }

    #[test]
    fn v2_histograms_take_start_timestamps_and_bad_labels_count_them() {
        let mut own_start = histogram(5000, 2);
        own_start.start_timestamp = 4000;
        let request = v2::Request {
            symbols: vec![
                "".into(),
                "__name__".into(),
                "lat".into(),
                "bad-name".into(),
            ],
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![1, 2],
                    histograms: vec![histogram(3000, 1), own_start],
                    created_timestamp: 1000,
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 2],
                    histograms: vec![histogram(3000, 1)],
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1, 7],
                    histograms: vec![histogram(3000, 1)],
                    samples: vec![v2::Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Default::default()
                },
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let out = decode_v2(&body, &DecodeOptions::default(), &registry()).unwrap();
        assert_eq!(out.received_histograms, 4);
        let reasons: Vec<_> = out
            .rejections
            .iter()
            .map(|r| (r.reason, r.samples, r.histograms))
            .collect();
        assert_eq!(
            reasons,
            [("invalid_label_name", 0, 1), ("invalid_symbol_ref", 1, 1)]
        );
        assert!(out.batch.series.is_empty());
        let starts: Vec<_> = out.batch.histograms[0]
            .histograms
            .iter()
            .map(|h| h.start_timestamp_ms)
            .collect();
        assert_eq!(starts, [1000, 4000]);
    }
}
