//! OpenTelemetry names to Prometheus names, following the OpenTelemetry
//! specification's Prometheus compatibility rules as Prometheus's own OTLP
//! receiver applies them: metric names get unit and type suffixes, and
//! names and attribute keys are escaped to Prometheus's legacy charset
//! unless the translation strategy keeps UTF-8.

use comet_schema::NameValidation;

/// How metric and label names are translated (Prometheus's
/// `otlp.translation_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TranslationStrategy {
    /// Invalid characters become `_`; unit, `_total` and `_ratio` suffixes
    /// are added. Prometheus's default.
    #[default]
    UnderscoreEscapingWithSuffixes,
    /// Invalid characters become `_`; no suffixes.
    UnderscoreEscapingWithoutSuffixes,
    /// UTF-8 names are kept; suffixes are added.
    NoUtf8EscapingWithSuffixes,
    /// Names are kept exactly as sent.
    NoTranslation,
}

impl TranslationStrategy {
    fn escapes(self) -> bool {
        matches!(
            self,
            Self::UnderscoreEscapingWithSuffixes | Self::UnderscoreEscapingWithoutSuffixes
        )
    }

    /// The name check the translated names must pass.
    pub fn name_validation(self) -> NameValidation {
        if self.escapes() {
            NameValidation::Legacy
        } else {
            NameValidation::Utf8
        }
    }
}

/// What a metric is, as far as its name's suffixes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Gauge,
    /// A monotonic sum: `_total`.
    Counter,
    /// Anything else (non-monotonic sums, histograms, summaries).
    Other,
}

/// The Prometheus name of an OpenTelemetry metric (before `_bucket`,
/// `_sum`, `_count`).
pub fn metric_name(
    name: &str,
    unit: &str,
    kind: NameKind,
    strategy: TranslationStrategy,
) -> String {
    match strategy {
        TranslationStrategy::UnderscoreEscapingWithSuffixes => {
            escaped_name_with_suffixes(name, unit, kind)
        }
        TranslationStrategy::UnderscoreEscapingWithoutSuffixes => {
            let joined = name
                .split(|c: char| !is_metric_char(c) && c != '_')
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            digit_guard(joined)
        }
        TranslationStrategy::NoUtf8EscapingWithSuffixes => {
            let mut out = name.to_string();
            let (main, per) = unit_suffixes(unit);
            for suffix in [main, per].into_iter().flatten() {
                out.push('_');
                out.push_str(&suffix);
            }
            match kind {
                NameKind::Counter => out.push_str("_total"),
                NameKind::Gauge if unit == "1" => out.push_str("_ratio"),
                _ => {}
            }
            out
        }
        TranslationStrategy::NoTranslation => name.to_string(),
    }
}

/// The Prometheus label name of an attribute key, or `None` when escaping
/// leaves nothing usable (only underscores).
pub fn label_name(key: &str, strategy: TranslationStrategy) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    if !strategy.escapes() {
        return Some(key.to_string());
    }
    let mut out: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    if out != key && out.chars().all(|c| c == '_') {
        return None;
    }
    Some(out)
}

/// The unit as Prometheus spells it in metadata (`seconds`, `bytes_per_second`).
pub fn unit_name(unit: &str, strategy: TranslationStrategy) -> String {
    let (main, per) = unit_suffixes(unit);
    let clean = |s: String| {
        if strategy.escapes() {
            clean_unit(&s)
        } else {
            s
        }
    };
    let joined = match (main.map(clean), per.map(clean)) {
        (Some(m), Some(p)) if !m.is_empty() => format!("{m}_{p}"),
        (Some(m), _) if !m.is_empty() => m,
        (_, Some(p)) => p,
        _ => String::new(),
    };
    joined.trim_matches('_').to_string()
}

/// Letters, digits and `:`: the characters a name token keeps.
fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

fn digit_guard(mut name: String) -> String {
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

fn escaped_name_with_suffixes(name: &str, unit: &str, kind: NameKind) -> String {
    // Tokens of letters, digits and ':'; runs of anything else (including
    // '_') separate them, so repeated underscores collapse.
    let mut tokens: Vec<String> = name
        .split(|c: char| !is_metric_char(c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = unit_suffixes(unit);
    let mut main = main.map(|m| clean_unit(&m)).unwrap_or_default();
    let mut per = per.map(|p| clean_unit(&p)).unwrap_or_default();
    if tokens.contains(&main) {
        main.clear();
    }
    if per == "per_" {
        per.clear();
    } else {
        per = per.trim_end_matches('_').to_string();
        if tokens.contains(&per) {
            per.clear();
        }
    }
    if !per.is_empty() {
        main = main.trim_end_matches('_').to_string();
    }
    for suffix in [main, per] {
        if !suffix.is_empty() {
            tokens.push(suffix);
        }
    }
    let mut push_last = |word: &str| {
        tokens.retain(|t| t != word);
        tokens.push(word.to_string());
    };
    match kind {
        NameKind::Counter => push_last("total"),
        NameKind::Gauge if unit == "1" => push_last("ratio"),
        _ => {}
    }
    digit_guard(tokens.join("_"))
}

/// The main and "per" parts of a UCUM unit, mapped to Prometheus words;
/// annotations in braces (`{requests}`) are no unit.
fn unit_suffixes(unit: &str) -> (Option<String>, Option<String>) {
    let mut parts = unit.splitn(2, '/');
    let main = parts
        .next()
        .map(str::trim)
        .filter(|m| !m.is_empty() && !m.contains(['{', '}']))
        .map(|m| main_unit(m).unwrap_or(m).to_string())
        .filter(|m| !m.is_empty());
    let per = parts
        .next()
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.contains(['{', '}']))
        .map(|p| format!("per_{}", per_unit(p).unwrap_or(p)));
    (main, per)
}

fn main_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// A unit part in name characters: invalid characters become `_`, runs of
/// `_` collapse, and a leading `_` goes.
fn clean_unit(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    for c in unit.chars() {
        let c = if is_metric_char(c) { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_start_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(name: &str, unit: &str, kind: NameKind) -> String {
        metric_name(
            name,
            unit,
            kind,
            TranslationStrategy::UnderscoreEscapingWithSuffixes,
        )
    }

    #[test]
    fn units_and_type_suffixes() {
        assert_eq!(
            escaped("http.server.request.duration", "s", NameKind::Other),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            escaped("system.network.io", "By", NameKind::Counter),
            "system_network_io_bytes_total"
        );
        // `total` moves to the end; a unit already in the name is not repeated.
        assert_eq!(
            escaped("requests.total.seconds", "s", NameKind::Counter),
            "requests_seconds_total"
        );
        assert_eq!(
            escaped("cpu.utilization", "1", NameKind::Gauge),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            escaped("cpu.utilization", "1", NameKind::Counter),
            "cpu_utilization_total"
        );
        assert_eq!(
            escaped("queue.size", "{items}", NameKind::Gauge),
            "queue_size"
        );
        assert_eq!(
            escaped("throughput", "By/s", NameKind::Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(
            escaped("speed", "m/{tick}", NameKind::Gauge),
            "speed_meters"
        );
        assert_eq!(escaped("foo__bar..baz", "", NameKind::Gauge), "foo_bar_baz");
        assert_eq!(escaped("2xx.count", "", NameKind::Gauge), "_2xx_count");
        assert_eq!(escaped("temp", "Cel", NameKind::Gauge), "temp_celsius");
        assert_eq!(escaped("odd", "foo bar", NameKind::Gauge), "odd_foo_bar");
    }

    #[test]
    fn other_strategies() {
        let name = |s| metric_name("http.requests", "s", NameKind::Counter, s);
        assert_eq!(
            name(TranslationStrategy::UnderscoreEscapingWithoutSuffixes),
            "http_requests"
        );
        assert_eq!(
            name(TranslationStrategy::NoUtf8EscapingWithSuffixes),
            "http.requests_seconds_total"
        );
        assert_eq!(name(TranslationStrategy::NoTranslation), "http.requests");
    }

    #[test]
    fn label_names() {
        let s = TranslationStrategy::UnderscoreEscapingWithSuffixes;
        assert_eq!(label_name("http.method", s).as_deref(), Some("http_method"));
        assert_eq!(label_name("123abc", s).as_deref(), Some("key_123abc"));
        assert_eq!(label_name("_private", s).as_deref(), Some("key_private"));
        assert_eq!(
            label_name("__reserved__", s).as_deref(),
            Some("__reserved__")
        );
        assert_eq!(label_name("...", s), None);
        assert_eq!(label_name("", s), None);
        assert_eq!(
            label_name("http.method", TranslationStrategy::NoTranslation).as_deref(),
            Some("http.method")
        );
    }

    #[test]
    fn unit_names() {
        let s = TranslationStrategy::UnderscoreEscapingWithSuffixes;
        assert_eq!(unit_name("s", s), "seconds");
        assert_eq!(unit_name("By/s", s), "bytes_per_second");
        assert_eq!(unit_name("1", s), "");
        assert_eq!(unit_name("{requests}", s), "");
    }
}
