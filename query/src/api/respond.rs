//! Prometheus's response envelope: `{"status":"success","data":...}` or
//! `{"status":"error","errorType":...,"error":...}` with its status codes,
//! and query values encoded as Prometheus encodes them (times as seconds
//! with millisecond fractions, values as strings, `NaN`, `+Inf`).

use std::fmt::Write as _;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use comet_schema::store::StoreError;
use serde::Serialize;

use crate::engine::QueryError;
use crate::plan::PlanError;
use crate::value::{Histogram, Point, QueryValue};

/// Prometheus's error classes and the status code each gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Canceled | ErrorType::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An API error as Prometheus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// ClickHouse down or overloaded is `unavailable` (503, retry);
    /// anything else is `internal`.
    fn from_store(e: &StoreError) -> Self {
        let kind = if e.is_transient() {
            ErrorType::Unavailable
        } else {
            ErrorType::Internal
        };
        ApiError::new(kind, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from_store(&e)
    }
}

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        QueryError::from(e).into()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let kind = match &e {
            QueryError::BadData(_) => ErrorType::BadData,
            QueryError::Execution(_)
            | QueryError::Unsupported(_)
            | QueryError::TooManySamples
            | QueryError::TooManySeries(_)
            | QueryError::TooMuchMemory(_) => ErrorType::Execution,
            QueryError::Timeout => ErrorType::Timeout,
            QueryError::Canceled => ErrorType::Canceled,
            QueryError::Store(store) => return ApiError::from_store(store),
        };
        ApiError::new(kind, e.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            status: "error",
            error_type: self.kind.as_str(),
            error: &self.message,
        })
        .unwrap_or_default();
        json_response(self.status(), body)
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The start of a success answer; the data is written after it, then the
/// answer is closed by [`success_body`] (no copy of a large result).
pub fn success_start(data_capacity: usize) -> String {
    let mut body = String::with_capacity(data_capacity + 64);
    body.push_str(r#"{"status":"success","data":"#);
    body
}

/// Closes a body from [`success_start`], with warnings if any.
pub fn success_body(mut body: String, warnings: &[String]) -> Response {
    if !warnings.is_empty() {
        let _ = write!(
            body,
            r#","warnings":{}"#,
            serde_json::to_string(warnings).unwrap_or_else(|_| "[]".into())
        );
    }
    body.push('}');
    json_response(StatusCode::OK, body.into_bytes())
}

/// A success answer whose data serde can encode.
pub fn success<T: Serialize>(data: &T, warnings: &[String]) -> Response {
    let mut body = success_start(0);
    // Writing JSON into a String cannot fail on I/O; only a type serde
    // cannot encode would.
    match serde_json::to_string(data) {
        Ok(json) => {
            body.push_str(&json);
            success_body(body, warnings)
        }
        Err(e) => ApiError::new(ErrorType::Internal, e.to_string()).into_response(),
    }
}

/// A time in ms as Prometheus writes it: seconds, with the milliseconds as
/// a three-digit fraction only when not zero (`1435781451.781`, `12.05`
/// is written `12.050`).
pub fn write_time(out: &mut String, ms: i64) {
    if ms < 0 {
        out.push('-');
    }
    let abs = ms.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(abs / 1000));
    let fraction = (abs % 1000) as u32;
    if fraction != 0 {
        out.push('.');
        for digit in [fraction / 100, fraction / 10 % 10, fraction % 10] {
            out.push(char::from(b'0' + digit as u8));
        }
    }
}

/// A float as Prometheus's API writes it (`jsonutil.MarshalFloat`),
/// quoted: Go's `strconv.FormatFloat(v, 'f', -1, 64)`, but in exponent
/// form (`1e-07`, `1.5e+21`) when non-zero and below 1e-6 or from 1e21 on.
pub fn write_value(out: &mut String, v: f64) {
    out.push('"');
    let magnitude = v.abs();
    if magnitude.is_finite() && magnitude != 0.0 && !(1e-6..1e21).contains(&magnitude) {
        write_go_exponent(out, v);
    } else {
        let _ = comet_schema::model::write_float(out, v);
    }
    out.push('"');
}

/// A finite float as Go's `strconv.FormatFloat(v, 'e', -1, 64)`: the
/// shortest digits, and an exponent of at least two digits with its sign.
fn write_go_exponent(out: &mut String, v: f64) {
    let text = format!("{v:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.unsigned_abs());
}

fn write_point(out: &mut String, p: &Point) {
    out.push('[');
    write_time(out, p.t);
    out.push(',');
    write_value(out, p.v);
    out.push(']');
}

/// `[t, {"count": ..., "sum": ..., "buckets": [...]}]` as Prometheus
/// writes a native histogram: only buckets holding observations, each as
/// `[boundaries, lower, upper, count]` where boundaries is 0 for (a, b],
/// 1 for [a, b), 2 for (a, b) and 3 for [a, b].
fn write_histogram_point(out: &mut String, t: i64, h: &Histogram) {
    out.push('[');
    write_time(out, t);
    out.push_str(r#",{"count":"#);
    write_value(out, h.count);
    out.push_str(r#","sum":"#);
    write_value(out, h.sum);
    let mut first = true;
    for b in h.buckets().iter().filter(|b| b.count != 0.0) {
        out.push_str(if first { r#","buckets":["# } else { "," });
        first = false;
        let boundaries = match (b.lower_inclusive, b.upper_inclusive) {
            (false, true) => '0',
            (true, false) => '1',
            (false, false) => '2',
            (true, true) => '3',
        };
        out.push('[');
        out.push(boundaries);
        for v in [b.lower, b.upper, b.count] {
            out.push(',');
            write_value(out, v);
        }
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push_str("}]");
}

/// A label set as a JSON object.
pub fn write_labels(out: &mut String, labels: &[(String, String)]) {
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_string(out, k);
        out.push(':');
        write_json_string(out, v);
    }
    out.push('}');
}

pub fn write_json_string(out: &mut String, s: &str) {
    // serde_json's escaping, straight into the buffer.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// `{"metric":{...},"<key>":` of one result element.
fn write_metric(out: &mut String, labels: &[(String, String)], key: &str) {
    out.push_str(r#"{"metric":"#);
    write_labels(out, labels);
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
}

/// `items` comma-separated, then `]`.
pub fn write_list<T>(out: &mut String, items: &[T], mut write: impl FnMut(&mut String, &T)) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

/// About the size of a value's JSON, so its buffer is allocated once
/// (a point is `[1700000000.123,"0.123456789"]`).
pub fn json_size_hint(value: &QueryValue) -> usize {
    const POINT: usize = 32;
    let labels =
        |l: &[(String, String)]| 16 + l.iter().map(|(k, v)| k.len() + v.len() + 6).sum::<usize>();
    64 + match value {
        QueryValue::Scalar(_) => POINT,
        QueryValue::String { value, .. } => value.len() + POINT,
        QueryValue::Vector(samples) => samples.iter().map(|s| labels(&s.labels) + POINT).sum(),
        QueryValue::Matrix(series) => series
            .iter()
            .map(|s| labels(&s.labels) + s.points.len() * POINT)
            .sum(),
    }
}

/// `{"resultType":...,"result":...}` of a query value.
pub fn write_query_data(out: &mut String, value: &QueryValue) {
    match value {
        QueryValue::Scalar(p) => {
            out.push_str(r#"{"resultType":"scalar","result":"#);
            write_point(out, p);
        }
        QueryValue::String { t, value } => {
            out.push_str(r#"{"resultType":"string","result":["#);
            write_time(out, *t);
            out.push(',');
            write_json_string(out, value);
            out.push(']');
        }
        QueryValue::Vector(samples) => {
            out.push_str(r#"{"resultType":"vector","result":["#);
            write_list(out, samples, |out, s| {
                match &s.histogram {
                    Some(h) => {
                        write_metric(out, &s.labels, "histogram");
                        write_histogram_point(out, s.point.t, h);
                    }
                    None => {
                        write_metric(out, &s.labels, "value");
                        write_point(out, &s.point);
                    }
                }
                out.push('}');
            });
        }
        QueryValue::Matrix(series) => {
            out.push_str(r#"{"resultType":"matrix","result":["#);
            write_list(out, series, |out, s| {
                out.push_str(r#"{"metric":"#);
                write_labels(out, &s.labels);
                // Prometheus leaves out whichever kind a series lacks.
                if !s.points.is_empty() || s.histograms.is_empty() {
                    out.push_str(r#","values":["#);
                    write_list(out, &s.points, write_point);
                }
                if !s.histograms.is_empty() {
                    out.push_str(r#","histograms":["#);
                    write_list(out, &s.histograms, |out, p| {
                        write_histogram_point(out, p.t, &p.h)
                    });
                }
                out.push('}');
            });
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Sample, Series};

    fn time(ms: i64) -> String {
        let mut s = String::new();
        write_time(&mut s, ms);
        s
    }

    fn value(v: f64) -> String {
        let mut s = String::new();
        write_value(&mut s, v);
        s
    }

    #[test]
    fn times_and_values_as_prometheus_writes_them() {
        assert_eq!(time(1_435_781_451_781), "1435781451.781");
        assert_eq!(time(12_050), "12.050");
        assert_eq!(time(12_000), "12");
        assert_eq!(time(-1_500), "-1.500");
        assert_eq!(time(-1), "-0.001");
        assert_eq!(time(i64::MIN), "-9223372036854775.808");
        assert_eq!(value(1.0), "\"1\"");
        assert_eq!(value(0.1), "\"0.1\"");
        assert_eq!(value(1e21), "\"1e+21\"");
        assert_eq!(
            value(999_999_999_999_999_900_000.0),
            "\"999999999999999900000\""
        );
        assert_eq!(value(-1.5e-7), "\"-1.5e-07\"");
        assert_eq!(value(1e-6), "\"0.000001\"");
        assert_eq!(value(2.5e-300), "\"2.5e-300\"");
        assert_eq!(value(-0.0), "\"-0\"");
        assert_eq!(value(f64::NAN), "\"NaN\"");
        assert_eq!(value(f64::NEG_INFINITY), "\"-Inf\"");
        assert_eq!(value(f64::INFINITY), "\"+Inf\"");
    }

    #[test]
    fn values_encode_in_prometheus_shapes() {
        let mut out = String::new();
        write_query_data(
            &mut out,
            &QueryValue::Vector(vec![Sample {
                labels: vec![
                    ("__name__".into(), "up".into()),
                    ("job".into(), "a\"b".into()),
                ],
                point: Point { t: 1000, v: 1.0 },
                histogram: None,
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]}"#
        );
        let mut out = String::new();
        write_query_data(
            &mut out,
            &QueryValue::Matrix(vec![Series {
                labels: vec![],
                points: vec![
                    Point { t: 1500, v: 2.5 },
                    Point {
                        t: 3000,
                        v: f64::NAN,
                    },
                ],
                histograms: vec![],
            }]),
        );
        assert_eq!(
            out,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1.500,"2.5"],[3,"NaN"]]}]}"#
        );
        let mut out = String::new();
        write_query_data(&mut out, &QueryValue::Scalar(Point { t: 1000, v: 3.0 }));
        assert_eq!(out, r#"{"resultType":"scalar","result":[1,"3"]}"#);
        let mut out = String::new();
        write_query_data(
            &mut out,
            &QueryValue::String {
                t: 1500,
                value: "a".into(),
            },
        );
        assert_eq!(out, r#"{"resultType":"string","result":[1.500,"a"]}"#);
    }

    #[test]
    fn errors_have_prometheus_codes() {
        let e = ApiError::bad_data("x");
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e: ApiError = QueryError::Execution("many-to-many".into()).into();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let e: ApiError = QueryError::Timeout.into();
        assert_eq!(
            (e.kind, e.status()),
            (ErrorType::Timeout, StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
