//! Query results in Prometheus's value types.

pub use comet_schema::histogram::CounterResetHint;

/// Label pairs of one result series, sorted by name.
pub type LabelPairs = Vec<(String, String)>;

/// One point: milliseconds since the epoch and a float value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// A native histogram in a query result, as Prometheus's `FloatHistogram`
/// but with buckets by absolute index (`(index, count)`, increasing index)
/// instead of spans and deltas.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// -4..=8, or -53 for custom buckets.
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive: Vec<(i32, f64)>,
    pub negative: Vec<(i32, f64)>,
    /// Upper bounds of the custom buckets (schema -53).
    pub custom_values: Vec<f64>,
    pub reset_hint: CounterResetHint,
}

/// One histogram point of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramPoint {
    pub t: i64,
    pub h: Histogram,
}

/// One series of an instant vector: a float, or a histogram when
/// `histogram` is set (then `point.v` is 0 and only `point.t` counts).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: LabelPairs,
    pub point: Point,
    pub histogram: Option<Box<Histogram>>,
}

impl Sample {
    /// A float sample.
    pub fn float(labels: LabelPairs, point: Point) -> Self {
        Self {
            labels,
            point,
            histogram: None,
        }
    }
}

/// One series of a range result: its float points and its histogram
/// points (a series may switch between the two), each by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: LabelPairs,
    pub points: Vec<Point>,
    pub histograms: Vec<HistogramPoint>,
}

impl Series {
    /// A series of float points.
    pub fn floats(labels: LabelPairs, points: Vec<Point>) -> Self {
        Self {
            labels,
            points,
            histograms: Vec::new(),
        }
    }
}

/// The result of a query, typed as Prometheus types it.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    Scalar(Point),
    String {
        t: i64,
        value: String,
    },
    /// An instant query's vector, in Prometheus's order (by labels unless
    /// the query sorts).
    Vector(Vec<Sample>),
    /// A range query's result, or an instant query of a range vector.
    Matrix(Vec<Series>),
}

impl QueryValue {
    /// Prometheus's name of the result type (`resultType` in the API).
    pub fn type_name(&self) -> &'static str {
        match self {
            QueryValue::Scalar(_) => "scalar",
            QueryValue::String { .. } => "string",
            QueryValue::Vector(_) => "vector",
            QueryValue::Matrix(_) => "matrix",
        }
    }
}

/// Formats labels as Prometheus prints them: `name{a="b", c="d"}`.
pub fn format_labels(labels: &[(String, String)]) -> String {
    let name = labels
        .iter()
        .find(|(n, _)| n == "__name__")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(n, _)| n != "__name__")
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}
