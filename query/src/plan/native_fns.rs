//! Placeholder until the histogram function expressions land.
pub(crate) const HISTOGRAM_TYPE: &str = "Tuple(schema Int8, zero_threshold Float64, zero_count Float64, count Float64, sum Float64, positive_index Array(Int32), positive_counts Array(Float64), negative_index Array(Int32), negative_counts Array(Float64), custom_values Array(Float64), reset_hint Int8)";
pub(crate) fn histogram_count(h: &str) -> String {
    format!("{h}.count")
}
pub(crate) fn histogram_sum(h: &str) -> String {
    format!("{h}.sum")
}
pub(crate) fn histogram_avg(h: &str) -> String {
    format!("{h}.sum / {h}.count")
}
pub(crate) fn histogram_stddev(_h: &str) -> String {
    "nan".into()
}
pub(crate) fn histogram_stdvar(_h: &str) -> String {
    "nan".into()
}
pub(crate) fn histogram_fraction(_l: &str, _u: &str, _h: &str) -> String {
    "nan".into()
}
pub(crate) fn histogram_quantile(_q: &str, _h: &str) -> String {
    "nan".into()
}
