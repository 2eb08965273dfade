//! Templates in alert labels and annotations: Go's text/template syntax
//! (the `gtmpl` crate) with the variables Prometheus defines (`$labels`,
//! `$externalLabels`, `$externalURL`, `$value`) and its formatting
//! functions (`humanize*`, `title`, `match`, `reReplaceAll`, ...), with the
//! same output as Prometheus's Go implementation.

use std::collections::HashMap;

use comet_schema::model::format_float;
use gtmpl::{Context, Func, FuncError, Template, Value};

/// What a template sees.
pub struct TemplateData<'a> {
    pub labels: &'a [(String, String)],
    pub external_labels: &'a [(String, String)],
    pub external_url: &'a str,
    pub value: f64,
}

/// The variables Prometheus defines before every alert template.
const DEFS: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

const FUNCS: &[(&str, Func)] = &[
    ("humanize", humanize as Func),
    ("humanize1024", humanize1024 as Func),
    ("humanizeDuration", humanize_duration as Func),
    ("humanizePercentage", humanize_percentage as Func),
    ("humanizeTimestamp", humanize_timestamp as Func),
    ("title", title as Func),
    ("toUpper", to_upper as Func),
    ("toLower", to_lower as Func),
    ("match", match_regex as Func),
    ("reReplaceAll", re_replace_all as Func),
    ("stripPort", strip_port as Func),
    ("stripDomain", strip_domain as Func),
    ("safeHtml", identity as Func),
    ("args", args as Func),
    ("parseDuration", parse_duration as Func),
];

/// What gtmpl 0.7 cannot be trusted with, found before it reads `text`:
/// a text that ends inside a `{{ ... }}` action (Go fails it with
/// "unclosed action"; gtmpl's lexer loops forever on some, such as a `.`
/// or `$x.` right at the end), or a non-ASCII character in an action
/// outside its strings (its lexer steps back one byte, not one character,
/// and panics; Go would accept a Unicode identifier there).
fn gtmpl_hazard(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        rest = &rest[open + 2..];
        let body = rest.trim_start_matches('-').trim_start();
        if let Some(comment) = body.strip_prefix("/*") {
            // An unterminated comment is gtmpl's own error to report.
            let end = comment.find("*/")?;
            rest = &comment[end + 2..];
            continue;
        }
        let mut chars = rest.char_indices();
        let mut closed = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' if rest[i..].starts_with("}}") => {
                    closed = Some(i + 2);
                    break;
                }
                // Quoted strings and characters: an unterminated one is
                // gtmpl's own (clean) error.
                '"' | '\'' | '`' => {
                    let mut escaped = false;
                    loop {
                        match chars.next() {
                            None => return None,
                            Some((_, '\\')) if c != '`' && !escaped => escaped = true,
                            Some((_, q)) if q == c && !escaped => break,
                            Some(_) => escaped = false,
                        }
                    }
                }
                c if !c.is_ascii() => {
                    return Some(format!(
                        "non-ASCII character {c:?} in an action (outside a string)"
                    ));
                }
                _ => {}
            }
        }
        match closed {
            Some(end) => rest = &rest[end..],
            None => return Some("unclosed action".into()),
        }
    }
    None
}

fn template(name: &str, text: &str) -> Result<Template, String> {
    if let Some(problem) = gtmpl_hazard(text) {
        return Err(format!("template: __alert_{name}: {problem}"));
    }
    let mut t = Template::with_name(format!("__alert_{name}"));
    t.add_funcs(FUNCS);
    t.parse(format!("{DEFS}{text}"))
        .map_err(|e| format!("template: __alert_{name}: {e}"))?;
    Ok(t)
}

/// Checks that `text` parses, as Prometheus does when loading rules.
pub fn check(rule: &str, text: &str) -> Result<(), String> {
    template(rule, text).map(|_| ())
}

fn map(pairs: &[(String, String)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<HashMap<_, _>>(),
    )
}

/// A float as a template value. Infinities and NaN travel as Go prints
/// them (the functions below read those strings back as numbers).
fn number(v: f64) -> Value {
    if v.is_finite() {
        Value::from(v)
    } else {
        Value::String(format_float(v))
    }
}

/// Expands `text`; a failure gives Prometheus's placeholder text.
pub fn expand(rule: &str, text: &str, data: &TemplateData<'_>) -> String {
    // Plain text needs no template run (most label values).
    if !text.contains("{{") {
        return text.to_string();
    }
    let mut dot = HashMap::new();
    dot.insert("Labels".to_string(), map(data.labels));
    dot.insert("ExternalLabels".to_string(), map(data.external_labels));
    dot.insert(
        "ExternalURL".to_string(),
        Value::String(data.external_url.to_string()),
    );
    dot.insert("Value".to_string(), number(data.value));
    let result = template(rule, text).and_then(|t| {
        t.render(&Context::from(Value::Object(dot)))
            .map_err(|e| format!("template: __alert_{rule}: {e}"))
    });
    match result {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(rule, error = %e, "expanding an alert template failed");
            format!("<error expanding template: {e}>")
        }
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, FuncError> {
    match args {
        [v] => Ok(v),
        _ => Err(FuncError::ExactlyXArgs(name.into(), 1)),
    }
}

/// Prometheus's `convertToFloat`: numbers, and strings that parse as one.
fn float_arg(name: &str, args: &[Value]) -> Result<f64, FuncError> {
    match one_arg(name, args)? {
        Value::Number(n) => n
            .as_f64()
            .or_else(|| n.as_i64().map(|i| i as f64))
            .or_else(|| n.as_u64().map(|u| u as f64))
            .ok_or(FuncError::UnableToConvertFromValue),
        Value::String(s) => parse_go_float(s)
            .ok_or_else(|| FuncError::Generic(format!("strconv.ParseFloat: parsing {s:?}"))),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn string_arg(name: &str, args: &[Value], i: usize, n: usize) -> Result<String, FuncError> {
    if args.len() != n {
        return Err(FuncError::ExactlyXArgs(name.into(), n));
    }
    match &args[i] {
        Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

fn text(s: String) -> Result<Value, FuncError> {
    Ok(Value::String(s))
}

fn humanize(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = float_arg("humanize", args)?;
    if v == 0.0 || !v.is_finite() {
        return text(go_g(v, 4));
    }
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    text(format!("{}{prefix}", go_g(v, 4)))
}

fn humanize1024(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = float_arg("humanize1024", args)?;
    if v.abs() <= 1.0 || !v.is_finite() {
        return text(go_g(v, 4));
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    text(format!("{}{prefix}", go_g(v, 4)))
}

fn humanize_duration(args: &[Value]) -> Result<Value, FuncError> {
    let mut v = float_arg("humanizeDuration", args)?;
    if !v.is_finite() {
        return text(go_g(v, 4));
    }
    if v == 0.0 {
        return text(format!("{}s", go_g(v, 4)));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        return text(if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        });
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    text(format!("{}{prefix}s", go_g(v, 4)))
}

fn humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizePercentage", args)?;
    text(format!("{}%", go_g(v * 100.0, 4)))
}

fn humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizeTimestamp", args)?;
    if !v.is_finite() {
        return text(go_g(v, 4));
    }
    // Prometheus goes through model.Time: millisecond precision.
    let ms = ((v * 1e9) as i64).div_euclid(1_000_000);
    let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
    let Some(t) = chrono::DateTime::from_timestamp(ms.div_euclid(1000), nanos) else {
        return Err(FuncError::Generic(format!("timestamp {v} out of range")));
    };
    // Go's time.Time.String(): fractional seconds without trailing zeros.
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    text(out)
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("title", args, 0, 1)?;
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !(c.is_alphanumeric() || c == '_' || c == '\'');
    }
    text(out)
}

fn to_upper(args: &[Value]) -> Result<Value, FuncError> {
    text(string_arg("toUpper", args, 0, 1)?.to_uppercase())
}

fn to_lower(args: &[Value]) -> Result<Value, FuncError> {
    text(string_arg("toLower", args, 0, 1)?.to_lowercase())
}

fn regex(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::Regex::new(pattern).map_err(|e| FuncError::Generic(e.to_string()))
}

fn match_regex(args: &[Value]) -> Result<Value, FuncError> {
    let pattern = string_arg("match", args, 0, 2)?;
    let s = string_arg("match", args, 1, 2)?;
    Ok(Value::Bool(regex(&pattern)?.is_match(&s)))
}

fn re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    let pattern = string_arg("reReplaceAll", args, 0, 3)?;
    let replacement = string_arg("reReplaceAll", args, 1, 3)?;
    let s = string_arg("reReplaceAll", args, 2, 3)?;
    // Go's ${1} and $1 expansion is the regex crate's too.
    text(
        regex(&pattern)?
            .replace_all(&s, replacement.as_str())
            .into_owned(),
    )
}

fn strip_port(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("stripPort", args, 0, 1)?;
    if let Some(rest) = s.strip_prefix('[')
        && let Some((host, _)) = rest.split_once(']')
    {
        return text(host.to_string());
    }
    match s.rsplit_once(':') {
        Some((host, _)) if !host.contains(':') => text(host.to_string()),
        _ => text(s),
    }
}

fn strip_domain(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("stripDomain", args, 0, 1)?;
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), format!(":{p}")),
        _ => (s.clone(), String::new()),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return text(s);
    }
    let short = host.split('.').next().unwrap_or_default();
    text(format!("{short}{port}"))
}

fn identity(args: &[Value]) -> Result<Value, FuncError> {
    Ok(one_arg("safeHtml", args)?.clone())
}

fn args(args: &[Value]) -> Result<Value, FuncError> {
    let m = args
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("arg{i}"), v.clone()))
        .collect();
    Ok(Value::Map(m))
}

fn parse_duration(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg("parseDuration", args, 0, 1)?;
    let d = crate::duration::parse_duration(&s).map_err(FuncError::Generic)?;
    Ok(Value::from(d.as_secs_f64()))
}

/// Go's `%.{prec}g`: `prec` significant digits, exponent form when the
/// exponent is below -4 or at least `prec`, trailing zeros removed.
pub fn go_g(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return format_float(v);
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let prec = prec.max(1);
    // Round to the significant digits first: the exponent may change.
    let e_form = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` on another thread: a template that makes the parser
    /// loop fails the test instead of hanging the suite.
    fn check_bounded(text: &str) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let owned = text.to_string();
        std::thread::spawn(move || {
            let _ = tx.send(check("r", &owned));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("parsing {text:?} did not end"))
    }

    #[test]
    fn templates_gtmpl_cannot_read_are_refused() {
        // Found by the rule_file fuzz target: gtmpl's lexer loops on these.
        for text in [
            "{{ $labels.job }} error rate is {{ $value |es.",
            "{{ .",
            "{{ $x.",
            "{{ 1.",
            "{{ a.b.",
            "{{ \"}}\" .",
            "a {{ .Labels }} b {{",
        ] {
            let e = check_bounded(text).expect_err(text);
            assert!(e.ends_with("unclosed action"), "{text}: {e}");
        }
        for text in [
            "{{ \"}}\" }}",
            "{{ `{{` }} {{/* {{ */}}",
            "{{- $labels.job -}}",
            "{{ '}' }}",
            "{{ \"é ֓\" }} ֓ outside actions",
            "no actions at all",
        ] {
            assert_eq!(gtmpl_hazard(text), None, "{text}");
        }
        // gtmpl's lexer panicked on these (found by the fuzz target too).
        for text in ["{{ ֓abels.job }}", "{{ $labels.a֓ }}", "{{ 1€ }}"] {
            let e = check_bounded(text).expect_err(text);
            assert!(e.contains("non-ASCII character"), "{text}: {e}");
        }
        // Unterminated strings stay gtmpl's own error.
        let e = check_bounded("{{ \"abc").expect_err("unterminated");
        assert!(e.contains("unterminated quoted string"), "{e}");
    }

    fn render(text: &str, value: f64) -> String {
        let labels = vec![
            (
                "instance".to_string(),
                "host-1.example.com:9100".to_string(),
            ),
            ("job".to_string(), "node".to_string()),
        ];
        let external = vec![("cluster".to_string(), "eu1".to_string())];
        expand(
            "Test",
            text,
            &TemplateData {
                labels: &labels,
                external_labels: &external,
                external_url: "http://comet:9090",
                value,
            },
        )
    }

    #[test]
    fn variables() {
        assert_eq!(
            render(
                "{{ $labels.instance }} of {{ $labels.job }} in {{ $externalLabels.cluster }}: {{ $value }}",
                3.5
            ),
            "host-1.example.com:9100 of node in eu1: 3.5"
        );
        assert_eq!(render("{{ $value }}", 2.0), "2");
        assert_eq!(render("{{ $externalURL }}", 0.0), "http://comet:9090");
        assert_eq!(render("{{ .Labels.job }}", 0.0), "node");
        assert_eq!(render("plain", 0.0), "plain");
        assert_eq!(render("{{ $labels.missing }}", 0.0), "<no value>");
    }

    #[test]
    fn functions() {
        assert_eq!(render("{{ humanize $value }}", 1234567.0), "1.235M");
        assert_eq!(render("{{ $value | humanize }}", 0.00123), "1.23m");
        assert_eq!(render("{{ humanize 0 }}", 0.0), "0");
        assert_eq!(render("{{ humanize1024 $value }}", 1048576.0), "1Mi");
        assert_eq!(
            render("{{ humanizeDuration $value }}", 93784.0),
            "1d 2h 3m 4s"
        );
        assert_eq!(render("{{ humanizeDuration $value }}", 1.5), "1.5s");
        assert_eq!(render("{{ humanizeDuration $value }}", 0.0015), "1.5ms");
        assert_eq!(render("{{ humanizePercentage $value }}", 0.1234), "12.34%");
        assert_eq!(
            render("{{ humanizeTimestamp $value }}", 1_435_065_584.128),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(render("{{ printf \"%.2f\" $value }}", 1.23456), "1.23");
        assert_eq!(render("{{ $labels.job | toUpper }}", 0.0), "NODE");
        assert_eq!(render("{{ title \"hello world\" }}", 0.0), "Hello World");
        assert_eq!(
            render("{{ $labels.instance | stripPort }}", 0.0),
            "host-1.example.com"
        );
        assert_eq!(
            render("{{ $labels.instance | stripDomain }}", 0.0),
            "host-1:9100"
        );
        assert_eq!(
            render(
                "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }}",
                0.0
            ),
            "host-1.example.com"
        );
        assert_eq!(
            render(
                "{{ if match \"^host\" $labels.instance }}yes{{ else }}no{{ end }}",
                0.0
            ),
            "yes"
        );
        assert_eq!(render("{{ if gt $value 10.0 }}big{{ end }}", 11.0), "big");
        assert_eq!(render("{{ $value }}", f64::INFINITY), "+Inf");
    }

    #[test]
    fn errors() {
        assert!(check("A", "{{ $value").is_err());
        assert!(check("A", "{{ nosuchfunc }}").is_err());
        assert!(render("{{ humanize \"x\" }}", 0.0).starts_with("<error expanding template: "));
    }

    #[test]
    fn go_percent_g() {
        assert_eq!(go_g(1234567.0, 4), "1.235e+06");
        assert_eq!(go_g(123.456, 4), "123.5");
        assert_eq!(go_g(1.0, 4), "1");
        assert_eq!(go_g(0.0001234, 4), "0.0001234");
        assert_eq!(go_g(0.00001234, 4), "1.234e-05");
        assert_eq!(go_g(9999.9, 4), "1e+04");
        assert_eq!(go_g(f64::NAN, 4), "NaN");
    }
}
