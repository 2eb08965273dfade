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

/// One bucket of a histogram as Prometheus's bucket iterators give it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub lower: f64,
    pub upper: f64,
    pub lower_inclusive: bool,
    pub upper_inclusive: bool,
    pub count: f64,
}

/// The upper bound of exponential bucket `index` at `schema`, as
/// Prometheus's `getBound` computes it (a power of two scaled exactly).
pub fn exponential_bound(index: i32, schema: i32) -> f64 {
    if schema <= 0 {
        let exp = i64::from(index) << -schema;
        if exp >= 1024 {
            return f64::MAX;
        }
        return libm_ldexp(1.0, exp);
    }
    let frac_index = index & ((1 << schema) - 1);
    let frac = 2f64.powf(f64::from(frac_index) / f64::from(1 << schema)) / 2.0;
    let exp = i64::from(index >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    libm_ldexp(frac, exp)
}

/// `x * 2^exp` without overflow in the intermediate power.
fn libm_ldexp(x: f64, exp: i64) -> f64 {
    let mut x = x;
    let mut exp = exp.clamp(-2200, 2200);
    while exp > 1000 {
        x *= 2f64.powi(1000);
        exp -= 1000;
    }
    while exp < -1000 {
        x *= 2f64.powi(-1000);
        exp += 1000;
    }
    x * 2f64.powi(exp as i32)
}

impl Histogram {
    /// Whether the buckets are custom (schema -53).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == comet_schema::histogram::CUSTOM_BUCKETS_SCHEMA
    }

    /// Every bucket from the lowest to the highest (Prometheus's
    /// `AllBucketIterator`): negative buckets, the zero bucket when it
    /// holds any, positive buckets; other empty buckets included.
    pub fn buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::with_capacity(self.negative.len() + self.positive.len() + 1);
        if self.uses_custom_buckets() {
            for &(index, count) in &self.positive {
                let at = |i: i32| {
                    usize::try_from(i)
                        .ok()
                        .and_then(|i| self.custom_values.get(i))
                };
                let lower = index
                    .checked_sub(1)
                    .and_then(at)
                    .copied()
                    .unwrap_or(f64::NEG_INFINITY);
                let upper = at(index).copied().unwrap_or(f64::INFINITY);
                out.push(Bucket {
                    lower,
                    upper,
                    lower_inclusive: false,
                    upper_inclusive: true,
                    count,
                });
            }
            return out;
        }
        // Buckets reaching into the zero bucket end at its threshold.
        let zt = self.zero_threshold;
        for &(index, count) in self.negative.iter().rev() {
            let upper = -exponential_bound(index - 1, self.schema);
            out.push(Bucket {
                lower: -exponential_bound(index, self.schema),
                upper: if upper > -zt { -zt } else { upper },
                lower_inclusive: true,
                upper_inclusive: false,
                count,
            });
        }
        if self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
            });
        }
        for &(index, count) in &self.positive {
            let lower = exponential_bound(index - 1, self.schema);
            out.push(Bucket {
                lower: if lower < zt { zt } else { lower },
                upper: exponential_bound(index, self.schema),
                lower_inclusive: false,
                upper_inclusive: true,
                count,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_bounds_are_powers_of_two() {
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(-1, 0), 0.5);
        assert_eq!(exponential_bound(1, 1), std::f64::consts::SQRT_2);
        assert_eq!(exponential_bound(2, 1), 2.0);
        assert_eq!(exponential_bound(1, -2), 16.0);
        assert_eq!(exponential_bound(300, -2), f64::MAX);
    }

    #[test]
    fn buckets_run_from_negative_to_positive() {
        let h = Histogram {
            schema: 0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            negative: vec![(1, 3.0), (2, 0.0)],
            positive: vec![(0, 1.0)],
            ..Histogram::default()
        };
        let b = h.buckets();
        let bounds: Vec<(f64, f64, f64)> = b.iter().map(|b| (b.lower, b.upper, b.count)).collect();
        assert_eq!(
            bounds,
            vec![
                (-4.0, -2.0, 0.0),
                (-2.0, -1.0, 3.0),
                (-0.001, 0.001, 2.0),
                (0.5, 1.0, 1.0)
            ]
        );
        let custom = Histogram {
            schema: -53,
            custom_values: vec![1.0, 5.0],
            positive: vec![(0, 1.0), (2, 4.0)],
            ..Histogram::default()
        };
        let b = custom.buckets();
        assert_eq!((b[0].lower, b[0].upper), (f64::NEG_INFINITY, 1.0));
        assert_eq!((b[1].lower, b[1].upper), (5.0, f64::INFINITY));
    }
}
