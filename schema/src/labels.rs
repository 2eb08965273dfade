//! Label sets: the identity of a series.
//!
//! A [`Labels`] value is always valid, sorted by name and free of duplicates,
//! so everything downstream (fingerprint, SQL, results) can rely on that.

use std::fmt;

use thiserror::Error;

/// The label that carries the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// How label and metric names are checked.
///
/// `Legacy` is Prometheus's classic charset (`[a-zA-Z_][a-zA-Z0-9_]*`, plus
/// `:` in metric names). `Utf8` is Prometheus 3's scheme: any non-empty valid
/// UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameValidation {
    #[default]
    Legacy,
    Utf8,
}

/// Bounds on one series' labels, so that no input can make a series of
/// unbounded size (0 is no bound). Checked where a source admits a new
/// series; Mimir's and VictoriaMetrics's ingest limits are of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelLimits {
    /// Labels per series, `__name__` included.
    pub max_labels: usize,
    /// Bytes of one label name.
    pub max_name_bytes: usize,
    /// Bytes of one label value (the metric name included).
    pub max_value_bytes: usize,
}

impl Default for LabelLimits {
    fn default() -> Self {
        Self {
            max_labels: 100,
            max_name_bytes: 1024,
            max_value_bytes: 4096,
        }
    }
}

/// At most the first 64 characters of `text`, for messages.
fn shortened(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LabelError {
    #[error("series has no metric name (label __name__ is missing or empty)")]
    MissingMetricName,
    #[error("empty label name")]
    EmptyLabelName,
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    #[error("duplicate label name {0:?}")]
    DuplicateLabelName(String),
    #[error("labels are not sorted: {previous:?} comes before {next:?}")]
    UnsortedLabels { previous: String, next: String },
    #[error("label {name:?} has a value that is not valid UTF-8")]
    InvalidUtf8Value { name: String },
    #[error(
        "series has {count} labels, more than the limit of {max} (ingest.max_labels_per_series)"
    )]
    TooManyLabels { count: usize, max: usize },
    #[error(
        "label name {name:?} is {bytes} bytes long, more than the limit of {max} (ingest.max_label_name_bytes)"
    )]
    LabelNameTooLong {
        name: String,
        bytes: usize,
        max: usize,
    },
    #[error(
        "label {name:?} has a value {bytes} bytes long, more than the limit of {max} (ingest.max_label_value_bytes)"
    )]
    LabelValueTooLong {
        name: String,
        bytes: usize,
        max: usize,
    },
}

impl LabelError {
    /// A short code for metrics labels (`reason="..."`).
    pub fn reason(&self) -> &'static str {
        match self {
            LabelError::MissingMetricName => "missing_metric_name",
            LabelError::EmptyLabelName | LabelError::InvalidLabelName(_) => "invalid_label_name",
            LabelError::InvalidMetricName(_) => "invalid_metric_name",
            LabelError::DuplicateLabelName(_) => "duplicate_label_name",
            LabelError::UnsortedLabels { .. } => "unsorted_labels",
            LabelError::InvalidUtf8Value { .. } => "invalid_utf8",
            LabelError::TooManyLabels { .. } => "too_many_labels",
            LabelError::LabelNameTooLong { .. } => "label_name_too_long",
            LabelError::LabelValueTooLong { .. } => "label_value_too_long",
        }
    }
}

/// One name/value pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A validated label set, sorted by name, without duplicates or empty values,
/// always with a `__name__`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set from pairs in any order. Pairs with an empty value
    /// are left out, because Prometheus treats an empty value as "label not
    /// set" and a series must hash the same whichever way it arrives.
    pub fn new<I, N, V>(pairs: I, scheme: NameValidation) -> Result<Self, LabelError>
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let mut labels: Vec<Label> = pairs
            .into_iter()
            .map(|(n, v)| Label::new(n, v))
            .filter(|l| !l.value.is_empty())
            .collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in labels.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(LabelError::DuplicateLabelName(pair[0].name.clone()));
            }
        }
        validate_names(&labels, scheme)?;
        Ok(Self(labels))
    }

    /// Builds a label set that must already be sorted by name, as the
    /// remote-write protocol requires of senders.
    pub fn from_sorted(labels: Vec<Label>, scheme: NameValidation) -> Result<Self, LabelError> {
        for pair in labels.windows(2) {
            match pair[0].name.cmp(&pair[1].name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(LabelError::DuplicateLabelName(pair[0].name.clone()));
                }
                std::cmp::Ordering::Greater => {
                    return Err(LabelError::UnsortedLabels {
                        previous: pair[0].name.clone(),
                        next: pair[1].name.clone(),
                    });
                }
            }
        }
        let labels: Vec<Label> = labels.into_iter().filter(|l| !l.value.is_empty()).collect();
        validate_names(&labels, scheme)?;
        Ok(Self(labels))
    }

    /// Checks the label set against `limits`.
    pub fn check_limits(&self, limits: &LabelLimits) -> Result<(), LabelError> {
        let over = |n: usize, max: usize| max > 0 && n > max;
        if over(self.0.len(), limits.max_labels) {
            return Err(LabelError::TooManyLabels {
                count: self.0.len(),
                max: limits.max_labels,
            });
        }
        for l in &self.0 {
            if over(l.name.len(), limits.max_name_bytes) {
                return Err(LabelError::LabelNameTooLong {
                    name: shortened(&l.name),
                    bytes: l.name.len(),
                    max: limits.max_name_bytes,
                });
            }
            if over(l.value.len(), limits.max_value_bytes) {
                return Err(LabelError::LabelValueTooLong {
                    name: shortened(&l.name),
                    bytes: l.value.len(),
                    max: limits.max_value_bytes,
                });
            }
        }
        Ok(())
    }

    /// The value of `__name__`.
    pub fn metric_name(&self) -> &str {
        self.get(METRIC_NAME_LABEL).unwrap_or_default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The canonical 64-bit fingerprint, see [`crate::fingerprint`].
    pub fn fingerprint(&self) -> u64 {
        crate::fingerprint::fingerprint(self.0.iter().map(|l| (l.name.as_str(), l.value.as_str())))
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }
}

impl fmt::Display for Labels {
    /// Formats as PromQL does: `name{a="1", b="2"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric_name())?;
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

fn validate_names(labels: &[Label], scheme: NameValidation) -> Result<(), LabelError> {
    let mut has_name = false;
    for l in labels {
        if l.name.is_empty() {
            return Err(LabelError::EmptyLabelName);
        }
        if l.name == METRIC_NAME_LABEL {
            if !is_valid_metric_name(&l.value, scheme) {
                return Err(LabelError::InvalidMetricName(l.value.clone()));
            }
            has_name = true;
        } else if !is_valid_label_name(&l.name, scheme) {
            return Err(LabelError::InvalidLabelName(l.name.clone()));
        }
    }
    if has_name {
        Ok(())
    } else {
        Err(LabelError::MissingMetricName)
    }
}

/// Prometheus's label-name rule: `[a-zA-Z_][a-zA-Z0-9_]*` (legacy) or any
/// non-empty string (UTF-8).
pub fn is_valid_label_name(name: &str, scheme: NameValidation) -> bool {
    match scheme {
        NameValidation::Utf8 => !name.is_empty(),
        NameValidation::Legacy => {
            let mut bytes = name.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
    }
}

/// Prometheus's metric-name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*` (legacy) or any
/// non-empty string (UTF-8).
pub fn is_valid_metric_name(name: &str, scheme: NameValidation) -> bool {
    match scheme {
        NameValidation::Utf8 => !name.is_empty(),
        NameValidation::Legacy => {
            let mut bytes = name.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        }
    }
}

/// Turns raw bytes from the wire into a label value, refusing invalid UTF-8
/// instead of replacing characters (which would change the series identity).
pub fn label_value_from_bytes(name: &str, bytes: Vec<u8>) -> Result<String, LabelError> {
    String::from_utf8(bytes).map_err(|_| LabelError::InvalidUtf8Value {
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(pairs: &[(&str, &str)]) -> Result<Labels, LabelError> {
        Labels::new(pairs.iter().copied(), NameValidation::Legacy)
    }

    #[test]
    fn sorts_and_drops_empty_values() {
        let l = legacy(&[("job", "api"), ("__name__", "up"), ("env", "")]).unwrap();
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job"]);
        assert_eq!(l.metric_name(), "up");
        assert_eq!(l.get("job"), Some("api"));
        assert_eq!(l.get("env"), None);
        assert_eq!(l.to_string(), r#"up{job="api"}"#);
    }

    #[test]
    fn rejects_bad_sets() {
        assert_eq!(legacy(&[("job", "x")]), Err(LabelError::MissingMetricName));
        assert_eq!(
            legacy(&[("__name__", "up"), ("job", "a"), ("job", "b")]),
            Err(LabelError::DuplicateLabelName("job".into()))
        );
        assert_eq!(
            legacy(&[("__name__", "up"), ("1job", "a")]),
            Err(LabelError::InvalidLabelName("1job".into()))
        );
        assert_eq!(
            legacy(&[("__name__", "http-requests")]),
            Err(LabelError::InvalidMetricName("http-requests".into()))
        );
        assert_eq!(
            legacy(&[("__name__", "up"), ("", "a")]),
            Err(LabelError::EmptyLabelName)
        );
    }

    #[test]
    fn utf8_scheme_accepts_dotted_names() {
        let l = Labels::new(
            [
                ("__name__", "http.server.duration"),
                ("service.name", "api"),
            ],
            NameValidation::Utf8,
        )
        .unwrap();
        assert_eq!(l.metric_name(), "http.server.duration");
        assert!(
            Labels::new(
                [("__name__", "http.server.duration")],
                NameValidation::Legacy
            )
            .is_err()
        );
    }

    #[test]
    fn from_sorted_checks_order() {
        let unsorted = vec![Label::new("job", "a"), Label::new("__name__", "up")];
        assert_eq!(
            Labels::from_sorted(unsorted, NameValidation::Legacy),
            Err(LabelError::UnsortedLabels {
                previous: "job".into(),
                next: "__name__".into()
            })
        );
        let dup = vec![
            Label::new("__name__", "up"),
            Label::new("a", "1"),
            Label::new("a", "2"),
        ];
        assert_eq!(
            Labels::from_sorted(dup, NameValidation::Legacy),
            Err(LabelError::DuplicateLabelName("a".into()))
        );
    }

    #[test]
    fn limits_bound_labels_names_and_values() {
        let labels = Labels::new(
            [("__name__", "up"), ("job", "api"), ("instance", "a:80")],
            NameValidation::Legacy,
        )
        .unwrap();
        let limits = |max_labels, max_name_bytes, max_value_bytes| LabelLimits {
            max_labels,
            max_name_bytes,
            max_value_bytes,
        };
        assert_eq!(labels.check_limits(&limits(3, 8, 4)), Ok(()));
        assert_eq!(labels.check_limits(&limits(0, 0, 0)), Ok(()));
        let too_many = labels.check_limits(&limits(2, 0, 0)).unwrap_err();
        assert_eq!(too_many.reason(), "too_many_labels");
        let name = labels.check_limits(&limits(0, 7, 0)).unwrap_err();
        assert_eq!(
            name,
            LabelError::LabelNameTooLong {
                name: "__name__".into(),
                bytes: 8,
                max: 7
            }
        );
        let value = labels.check_limits(&limits(0, 0, 3)).unwrap_err();
        assert_eq!(value.reason(), "label_value_too_long");
        assert!(value.to_string().contains("\"instance\""), "{value}");
        assert_eq!(shortened(&"x".repeat(100)).len(), 67);
    }

    #[test]
    fn name_rules() {
        for ok in ["a", "_", "abc_123", "A"] {
            assert!(is_valid_label_name(ok, NameValidation::Legacy), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a:b", "é"] {
            assert!(!is_valid_label_name(bad, NameValidation::Legacy), "{bad}");
        }
        assert!(is_valid_metric_name("job:rate5m", NameValidation::Legacy));
        assert!(!is_valid_metric_name("5xx", NameValidation::Legacy));
    }

    #[test]
    fn invalid_utf8_value_is_refused() {
        assert_eq!(
            label_value_from_bytes("job", vec![0xff, 0xfe]),
            Err(LabelError::InvalidUtf8Value { name: "job".into() })
        );
        assert_eq!(
            label_value_from_bytes("job", b"api".to_vec()).unwrap(),
            "api"
        );
    }
}
