//! Query results in Prometheus's value types.

/// Label pairs of one result series, sorted by name.
pub type LabelPairs = Vec<(String, String)>;

/// One point: milliseconds since the epoch and a float value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: i64,
    pub v: f64,
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: LabelPairs,
    pub point: Point,
}

/// One series of a range result.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: LabelPairs,
    pub points: Vec<Point>,
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
