//! Series and point notation of test scripts: `metric{a="b"}` selectors and
//! the expanding value syntax (`1 2+3x4 _ _x2 stale {{schema:1 ...}}`).

use comet_schema::histogram::CUSTOM_BUCKETS_SCHEMA;

use super::histogram;
use crate::value::{CounterResetHint, Histogram};

/// Label pairs in the order written.
pub type LabelPairs = Vec<(String, String)>;

/// One value of a series.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Float(f64),
    /// The staleness marker.
    Stale,
    /// A native histogram (`{{schema:1 sum:3 count:22 buckets:[5 10 7]}}`).
    Histogram {
        histogram: Box<Histogram>,
        /// Whether the notation spells `counter_reset_hint` (for `a+bxN`,
        /// whether `b` does, as upstream's parser has it): an expected
        /// hint is only compared then.
        reset_hint_given: bool,
    },
}

/// A single value token, or `None` when the line is not one.
pub fn parse_value(text: &str) -> Option<PointValue> {
    let text = text.trim();
    if text == "stale" {
        return Some(PointValue::Stale);
    }
    if text.starts_with("{{") {
        return match parse_histogram_item(text) {
            Ok(mut values) if values.len() == 1 => values.pop(),
            _ => None,
        };
    }
    parse_float(text).map(PointValue::Float)
}

/// Go's float syntax as the scripts use it: decimals, exponents, `Inf`,
/// `+Inf`, `-Inf`, `NaN`, and hexadecimal integers.
fn parse_float(text: &str) -> Option<f64> {
    if let Ok(v) = text.parse::<f64>() {
        return Some(v);
    }
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1.0, rest),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    let hex = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))?;
    u64::from_str_radix(hex, 16).ok().map(|v| sign * v as f64)
}

/// Splits values on whitespace, keeping `{{ ... }}` histograms whole.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' && chars.get(i + 1) == Some(&'{') {
            depth += 1;
            current.push_str("{{");
            i += 2;
            continue;
        }
        if c == '}' && chars.get(i + 1) == Some(&'}') && depth > 0 {
            depth -= 1;
            current.push_str("}}");
            i += 2;
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
        i += 1;
    }
    if depth != 0 {
        return Err(format!("unterminated histogram in {text:?}"));
    }
    if !current.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// Expands the point notation into one entry per step (`None` = missing).
///
/// `a+bxN` and `a-bxN` give N+1 values a, a±b, ..., a±N·b; `axN` repeats a
/// N+1 times; `_xN` is N missing points; `stale` a staleness marker. The
/// same forms hold for `{{...}}` histograms (see [`parse_histogram`]).
pub fn expand_points(text: &str) -> Result<Vec<Option<PointValue>>, String> {
    expand_with(text, parse_float)
}

/// The same notation over signed durations (`-30s-1mx2`), as start
/// timestamp lines (`metric@st ...`) use; values are milliseconds.
pub fn expand_duration_points(text: &str) -> Result<Vec<Option<PointValue>>, String> {
    expand_with(text, |t| {
        let (sign, rest) = match t.strip_prefix('-') {
            Some(rest) => (-1.0, rest),
            None => (1.0, t.strip_prefix('+').unwrap_or(t)),
        };
        super::parse_duration(rest)
            .ok()
            .map(|d| sign * d.as_millis() as f64)
    })
}

fn expand_with(
    text: &str,
    parse_number: impl Fn(&str) -> Option<f64>,
) -> Result<Vec<Option<PointValue>>, String> {
    let mut out = Vec::new();
    for token in tokens(text)? {
        if token == "_" {
            out.push(None);
            continue;
        }
        if let Some(count) = token.strip_prefix("_x") {
            let n: usize = count
                .parse()
                .map_err(|_| format!("invalid repeat {token:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
            continue;
        }
        if token.starts_with("{{") {
            out.extend(parse_histogram_item(&token)?.into_iter().map(Some));
            continue;
        }
        // `axn` is always a repetition here (`0x59` is 0 sixty times, not
        // hexadecimal), so it is tried before plain numbers.
        let repeat = token.rsplit_once('x').is_some_and(|(body, n)| {
            !body.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        });
        if !repeat && let Some(value) = parse_value(&token) {
            out.push(Some(value));
            continue;
        }
        if !repeat && let Some(v) = parse_number(&token) {
            out.push(Some(PointValue::Float(v)));
            continue;
        }
        let (body, times) = token
            .rsplit_once('x')
            .and_then(|(body, n)| n.parse::<u32>().ok().map(|n| (body, n)))
            .ok_or_else(|| format!("invalid value {token:?}"))?;
        if body == "stale" {
            out.extend((0..=times).map(|_| Some(PointValue::Stale)));
            continue;
        }
        let (start, step) = split_increment(body, &parse_number)
            .ok_or_else(|| format!("invalid value {token:?}"))?;
        for k in 0..=times {
            out.push(Some(PointValue::Float(start + step * f64::from(k))));
        }
    }
    Ok(out)
}

/// `a+b` -> (a, b), `a-b` -> (a, -b), `a` -> (a, 0).
fn split_increment(body: &str, parse_number: impl Fn(&str) -> Option<f64>) -> Option<(f64, f64)> {
    if let Some(v) = parse_number(body) {
        return Some((v, 0.0));
    }
    let bytes = body.as_bytes();
    let at = (1..bytes.len()).rev().find(|&i| {
        (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
    })?;
    let start = parse_number(&body[..at])?;
    let step = parse_number(&body[at + 1..])?;
    Some((start, if bytes[at] == b'-' { -step } else { step }))
}

/// One `{{...}}` item of a series: a histogram, `{{a}}xN` (N+1 copies),
/// or `{{a}}+{{b}}xN` / `{{a}}-{{b}}xN` (N+1 values, each the previous
/// plus or minus `b`, as `FloatHistogram.Add`/`Sub` compute them).
fn parse_histogram_item(token: &str) -> Result<Vec<PointValue>, String> {
    let (first, rest) = split_histogram(token)?;
    let (base, base_hint) = parse_histogram(first)?;
    let point = |histogram: Histogram, reset_hint_given: bool| PointValue::Histogram {
        histogram: Box::new(histogram),
        reset_hint_given,
    };
    if rest.is_empty() {
        return Ok(vec![point(base, base_hint)]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let times = parse_times(n, token)?;
        return Ok((0..=times)
            .map(|_| point(base.clone(), base_hint))
            .collect());
    }
    let (subtract, increment) = match (rest.strip_prefix('+'), rest.strip_prefix('-')) {
        (Some(inc), _) => (false, inc),
        (_, Some(inc)) => (true, inc),
        _ => return Err(format!("invalid histogram value {token:?}")),
    };
    let (inc_text, after) = split_histogram(increment)?;
    let times = after
        .strip_prefix('x')
        .ok_or_else(|| format!("expected xN after {token:?}"))
        .and_then(|n| parse_times(n, token))?;
    let (inc, inc_hint) = parse_histogram(inc_text)?;
    // Upstream takes whether the hint was given from the last histogram
    // parsed, the increment, for every value of the expansion.
    Ok(histogram::expand(&base, &inc, times, subtract)?
        .into_iter()
        .map(|h| point(h, inc_hint))
        .collect())
}

fn parse_times(text: &str, token: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("invalid repetition in {token:?}"))
}

/// `{{inner}}rest` -> (inner, rest).
fn split_histogram(text: &str) -> Result<(&str, &str), String> {
    let inner = text
        .strip_prefix("{{")
        .ok_or_else(|| format!("expected {{{{ at {text:?}"))?;
    let end = inner
        .find("}}")
        .ok_or_else(|| format!("unterminated histogram in {text:?}"))?;
    Ok((&inner[..end], &inner[end + 2..]))
}

/// The inside of `{{...}}`: `key:value` items separated by spaces, as
/// upstream's `buildHistogramFromMap` reads them. Returns the histogram and
/// whether `counter_reset_hint` was given. `buckets:[a b c] offset:o` are
/// the positive buckets at indexes o, o+1, o+2 (zero counts kept, the
/// layout is as written); `n_buckets` and `n_offset` the negative ones.
pub fn parse_histogram(text: &str) -> Result<(Histogram, bool), String> {
    let mut h = Histogram::default();
    let mut seen: Vec<String> = Vec::new();
    let (mut positive, mut negative) = (Vec::new(), Vec::new());
    let (mut offset, mut negative_offset) = (0i32, 0i32);
    let mut hint_given = false;
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let key_len = rest
            .find(|c: char| !(c.is_ascii_alphabetic() || c == '_'))
            .unwrap_or(rest.len());
        let key = rest[..key_len].to_ascii_lowercase();
        let after = rest[key_len..]
            .strip_prefix(':')
            .ok_or_else(|| format!("missing `:` after {key:?} in histogram {text:?}"))?;
        let value_len = if after.starts_with('[') {
            after
                .find(']')
                .map(|end| end + 1)
                .ok_or_else(|| format!("unterminated list in histogram {text:?}"))?
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        let (value, remaining) = after.split_at(value_len);
        if seen.contains(&key) {
            return Err(format!("duplicate key \"{key}\" in histogram"));
        }
        let bad = |what: &str| format!("error parsing {key} {what}: {value:?}");
        match key.as_str() {
            "schema" => h.schema = parse_int(value).ok_or_else(|| bad("number"))?,
            "sum" => h.sum = parse_signed(value).ok_or_else(|| bad("number"))?,
            "count" => h.count = parse_signed(value).ok_or_else(|| bad("number"))?,
            "z_bucket" => h.zero_count = parse_signed(value).ok_or_else(|| bad("number"))?,
            "z_bucket_w" => h.zero_threshold = go_number(value).ok_or_else(|| bad("number"))?,
            "buckets" => positive = parse_list(value).ok_or_else(|| bad("float array"))?,
            "n_buckets" => negative = parse_list(value).ok_or_else(|| bad("float array"))?,
            "offset" => offset = parse_int(value).ok_or_else(|| bad("number"))?,
            "n_offset" => negative_offset = parse_int(value).ok_or_else(|| bad("number"))?,
            "custom_values" => h.custom_values = parse_list(value).ok_or_else(|| bad("array"))?,
            "counter_reset_hint" => {
                hint_given = true;
                h.reset_hint = match value.to_ascii_lowercase().as_str() {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::Reset,
                    "not_reset" => CounterResetHint::NotReset,
                    "gauge" => CounterResetHint::Gauge,
                    _ => return Err(bad("value")),
                };
            }
            _ => return Err(format!("bad histogram descriptor found: {key:?}")),
        }
        seen.push(key);
        if !remaining.is_empty() && !remaining.starts_with(char::is_whitespace) {
            return Err(format!(
                "expected a space before {remaining:?} in histogram"
            ));
        }
        rest = remaining.trim_start();
    }
    h.positive = absolute_buckets(offset, positive)?;
    h.negative = absolute_buckets(negative_offset, negative)?;
    Ok((h, hint_given))
}

/// Bucket `i` of a list written with offset `o` has index `o + i`.
fn absolute_buckets(offset: i32, counts: Vec<f64>) -> Result<Vec<(i32, f64)>, String> {
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| {
            i32::try_from(i)
                .ok()
                .and_then(|i| offset.checked_add(i))
                .map(|index| (index, count))
                .ok_or_else(|| format!("bucket index out of range at offset {offset}"))
        })
        .collect()
}

/// `[a b c]`: at least one number, optionally negative.
fn parse_list(text: &str) -> Option<Vec<f64>> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let values: Vec<f64> = inner
        .split_whitespace()
        .map(parse_signed)
        .collect::<Option<_>>()?;
    (!values.is_empty()).then_some(values)
}

/// An integer field (`schema`, `offset`): optionally negative decimal.
fn parse_int(text: &str) -> Option<i32> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = digits.parse().ok()?;
    i32::try_from(if negative { -v } else { v }).ok()
}

/// A number that may be negative (`-` only; upstream's lexer has no `+`
/// inside histograms).
fn parse_signed(text: &str) -> Option<f64> {
    match text.strip_prefix('-') {
        Some(rest) => go_number(rest).map(|v| -v),
        None => go_number(text),
    }
}

/// An unsigned number as upstream reads it inside histograms: `Inf`,
/// `NaN`, or digits read with Go's `ParseInt(s, 0, 64)` (so `010` is
/// octal) and else `ParseFloat`.
fn go_number(text: &str) -> Option<f64> {
    if text.eq_ignore_ascii_case("inf") {
        return Some(f64::INFINITY);
    }
    if text.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let digits = text.replace('_', "");
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        if digits.len() > 1
            && digits.starts_with('0')
            && let Ok(v) = i64::from_str_radix(&digits[1..], 8)
        {
            return Some(v as f64);
        }
        if let Ok(v) = digits.parse::<i64>() {
            return Some(v as f64);
        }
    }
    text.parse::<f64>().ok()
}

/// A histogram in the scripts' notation, as upstream's `TestExpression`
/// prints it (empty buckets at the ends dropped, gaps filled with zeros),
/// for messages.
pub fn histogram_notation(h: &Histogram) -> String {
    let mut parts = Vec::new();
    if h.schema != 0 {
        parts.push(format!("schema:{}", h.schema));
    }
    if h.count != 0.0 {
        parts.push(format!("count:{}", h.count));
    }
    if h.sum != 0.0 {
        parts.push(format!("sum:{}", h.sum));
    }
    if h.zero_count != 0.0 {
        parts.push(format!("z_bucket:{}", h.zero_count));
    }
    if h.zero_threshold != 0.0 {
        parts.push(format!("z_bucket_w:{}", h.zero_threshold));
    }
    if h.schema == CUSTOM_BUCKETS_SCHEMA {
        parts.push(format!("custom_values:[{}]", join(&h.custom_values)));
    }
    match h.reset_hint {
        CounterResetHint::Unknown => {}
        hint => parts.push(format!("counter_reset_hint:{}", hint.as_str())),
    }
    for (buckets, offset_key, buckets_key) in [
        (&h.positive, "offset", "buckets"),
        (&h.negative, "n_offset", "n_buckets"),
    ] {
        let populated: Vec<&(i32, f64)> = buckets.iter().filter(|(_, c)| *c != 0.0).collect();
        let (Some(first), Some(last)) = (populated.first(), populated.last()) else {
            continue;
        };
        if first.0 != 0 {
            parts.push(format!("{offset_key}:{}", first.0));
        }
        let mut dense = Vec::new();
        for &&(index, count) in &populated {
            let gap = i64::from(index) - i64::from(first.0) - dense.len() as i64;
            dense.extend(std::iter::repeat_n(0.0, gap.max(0) as usize));
            dense.push(count);
        }
        debug_assert_eq!(
            dense.len() as i64,
            i64::from(last.0) - i64::from(first.0) + 1
        );
        parts.push(format!("{buckets_key}:[{}]", join(&dense)));
    }
    format!("{{{{{}}}}}", parts.join(" "))
}

fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads `name{label="value", ...}` (either part optional, UTF-8 names
/// quoted) and returns the labels and the rest of the line.
pub fn parse_series_selector(line: &str) -> Result<(LabelPairs, &str), String> {
    let line = line.trim_start();
    let name_len = line
        .char_indices()
        .take_while(|&(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
        .count();
    let mut labels = Vec::new();
    if name_len > 0 {
        labels.push(("__name__".to_string(), line[..name_len].to_string()));
    }
    let mut rest = &line[name_len..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut cursor = inner;
        loop {
            cursor = cursor.trim_start();
            if let Some(after) = cursor.strip_prefix('}') {
                rest = after;
                break;
            }
            let (name, after) = if cursor.starts_with('"') || cursor.starts_with('\'') {
                read_quoted(cursor)?
            } else {
                let len = cursor
                    .char_indices()
                    .take_while(|&(_, c)| c.is_ascii_alphanumeric() || c == '_')
                    .count();
                if len == 0 {
                    return Err(format!("invalid label in {line:?}"));
                }
                (cursor[..len].to_string(), &cursor[len..])
            };
            cursor = after.trim_start();
            if let Some(after_eq) = cursor.strip_prefix('=') {
                let (value, after) = read_quoted(after_eq.trim_start())?;
                labels.push((name, value));
                cursor = after.trim_start();
            } else {
                // A lone quoted string is the metric name.
                labels.insert(0, ("__name__".to_string(), name));
            }
            cursor = cursor.trim_start();
            if let Some(after) = cursor.strip_prefix(',') {
                cursor = after;
            } else if !cursor.starts_with('}') {
                return Err(format!("expected , or }} in {line:?}"));
            }
        }
    }
    if labels.is_empty() && name_len == 0 && !line.starts_with('{') {
        return Err(format!("expected a series in {line:?}"));
    }
    Ok((labels, rest))
}

/// A `"..."` or `'...'` string with Go escapes; returns it and the rest.
fn read_quoted(text: &str) -> Result<(String, &str), String> {
    let quote = text
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'' || *c == '`')
        .ok_or_else(|| format!("expected a quoted string at {text:?}"))?;
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Ok((out, &text[i + c.len_utf8()..]));
        }
        if c == '\\' && quote != '`' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\'')) => out.push('\''),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string at {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(text: &str) -> Vec<Option<f64>> {
        expand_points(text)
            .unwrap()
            .into_iter()
            .map(|p| match p {
                None => None,
                Some(PointValue::Float(v)) => Some(v),
                Some(other) => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn expanding_notation() {
        assert_eq!(
            floats("5 2+3x2 _ 1x2 _x2 10-2x2 -1+1x1"),
            vec![
                Some(5.0),
                Some(2.0),
                Some(5.0),
                Some(8.0),
                None,
                Some(1.0),
                Some(1.0),
                Some(1.0),
                None,
                None,
                Some(10.0),
                Some(8.0),
                Some(6.0),
                Some(-1.0),
                Some(0.0)
            ]
        );
        assert_eq!(floats("1e3+1e-1x1"), vec![Some(1000.0), Some(1000.1)]);
        let special = floats("Inf -Inf NaN 0x10");
        assert_eq!(special[0], Some(f64::INFINITY));
        assert_eq!(special[1], Some(f64::NEG_INFINITY));
        assert!(special[2].unwrap().is_nan());
        // `0x10` is 0 eleven times, not hexadecimal: upstream's
        // functions.test relies on `0x59` meaning sixty zeros.
        assert_eq!(special[3..], [Some(0.0); 11]);
    }

    fn histogram(text: &str) -> Histogram {
        parse_histogram(text.trim_start_matches("{{").trim_end_matches("}}"))
            .unwrap()
            .0
    }

    /// The histograms of a point list, with whether their hint was given.
    fn histograms(text: &str) -> Vec<(Histogram, bool)> {
        expand_points(text)
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Some(PointValue::Histogram {
                    histogram,
                    reset_hint_given,
                }) => (*histogram, reset_hint_given),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_histogram_field() {
        let (h, hint_given) = parse_histogram(
            "schema:1 sum:-3.5 count:22 z_bucket:2 z_bucket_w:0.001 buckets:[5 0 7] \
             offset:-2 n_buckets:[1 2] n_offset:3 counter_reset_hint:gauge",
        )
        .unwrap();
        assert!(hint_given);
        assert_eq!(
            h,
            Histogram {
                schema: 1,
                zero_threshold: 0.001,
                zero_count: 2.0,
                count: 22.0,
                sum: -3.5,
                // The zero-count bucket stays: the layout is as written.
                positive: vec![(-2, 5.0), (-1, 0.0), (0, 7.0)],
                negative: vec![(3, 1.0), (4, 2.0)],
                custom_values: vec![],
                reset_hint: CounterResetHint::Gauge,
            }
        );
        let (h, hint_given) =
            parse_histogram("schema:-53 sum:1 count:1 custom_values:[5 10 Inf] buckets:[1]")
                .unwrap();
        assert!(!hint_given);
        assert_eq!(h.schema, -53);
        assert_eq!(h.custom_values, vec![5.0, 10.0, f64::INFINITY]);
        assert_eq!(h.positive, vec![(0, 1.0)]);
        // Defaults; an offset without buckets makes no buckets.
        let (h, _) = parse_histogram("offset:3").unwrap();
        assert_eq!(h, Histogram::default());
        // Go's ParseInt with base 0 reads a leading 0 as octal.
        assert_eq!(histogram("{{count:010 sum:1e3 z_bucket:.5}}").count, 8.0);
        assert_eq!(histogram("{{sum:1e3 z_bucket:.5}}").sum, 1000.0);
        assert_eq!(histogram("{{sum:1e3 z_bucket:.5}}").zero_count, 0.5);
        assert!(histogram("{{sum:NaN}}").sum.is_nan());
        assert_eq!(histogram("{{sum:-Inf}}").sum, f64::NEG_INFINITY);
        for hint in ["unknown", "reset", "not_reset", "gauge"] {
            let h = histogram(&format!("counter_reset_hint:{hint}"));
            assert_eq!(h.reset_hint.as_str(), hint);
        }
    }

    #[test]
    fn malformed_histograms() {
        for bad in [
            "sum:1 sum:2",
            "total:1",
            "sum 1",
            "buckets:[]",
            "buckets:[1 2",
            "sum:+1",
            "z_bucket_w:-1",
            "schema:1.5",
            "counter_reset_hint:maybe",
            "sum:1m",
            "count:0x10",
        ] {
            assert!(parse_histogram(bad).is_err(), "{bad}");
        }
        for bad in [
            "{{sum:1}}+{{sum:1}}",
            "{{sum:1}}x",
            "{{sum:1}}*{{sum:1}}x2",
            "{{sum:1",
        ] {
            assert!(expand_points(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn histograms_among_other_values() {
        let points = expand_points("1 {{count:1}} _ stale {{count:2}}x1 2+1x1").unwrap();
        assert_eq!(points.len(), 8);
        assert_eq!(points[0], Some(PointValue::Float(1.0)));
        assert!(
            matches!(&points[1], Some(PointValue::Histogram { histogram, .. }) if histogram.count == 1.0)
        );
        assert_eq!(points[2], None);
        assert_eq!(points[3], Some(PointValue::Stale));
        assert_eq!(points[4], points[5]);
        assert_eq!(points[6], Some(PointValue::Float(2.0)));
        assert_eq!(points[7], Some(PointValue::Float(3.0)));
        assert!(matches!(
            parse_value(" {{count:2}} "),
            Some(PointValue::Histogram { .. })
        ));
        assert_eq!(parse_value("{{count:2}}x2"), None);
    }

    /// native_histograms.test: `incr_histogram` at 10m reads
    /// `{{count:14 sum:24 buckets:[1 12 1]}}`.
    #[test]
    fn increasing_histograms_as_upstream() {
        let values = histograms(
            "{{schema:0 sum:4 count:4 buckets:[1 2 1]}}+{{sum:2 count:1 buckets:[1] offset:1}}x10",
        );
        assert_eq!(values.len(), 11);
        assert_eq!(
            values[0].0,
            histogram("{{schema:0 sum:4 count:4 buckets:[1 2 1]}}")
        );
        assert_eq!(
            values[10].0,
            histogram("{{count:14 sum:24 buckets:[1 12 1]}}")
        );
        assert!(values.iter().all(|(_, given)| !given));
        // `{{a}}xN` repeats.
        let repeated = histograms("{{count:3 counter_reset_hint:reset}}x2");
        assert_eq!(repeated.len(), 3);
        assert!(repeated.iter().all(|(h, given)| *given && h.count == 3.0));
    }

    /// Buckets only `b` has are inserted, zero counts included, so the
    /// layout is the union of both.
    #[test]
    fn layouts_merge() {
        let values = histograms("{{buckets:[1] offset:2}}+{{buckets:[0 1 0] offset:-1}}x2");
        assert_eq!(
            values[1].0.positive,
            vec![(-1, 0.0), (0, 1.0), (1, 0.0), (2, 1.0)]
        );
        assert_eq!(
            values[2].0.positive,
            vec![(-1, 0.0), (0, 2.0), (1, 0.0), (2, 1.0)]
        );
    }

    #[test]
    fn decreasing_histograms() {
        let values = histograms(
            "{{schema:0 count:10 sum:10 z_bucket:4 buckets:[5 5]}}-{{count:1 sum:2 z_bucket:1 buckets:[1] offset:2}}x2",
        );
        assert_eq!(values[2].0.count, 8.0);
        assert_eq!(values[2].0.sum, 6.0);
        assert_eq!(values[2].0.zero_count, 2.0);
        assert_eq!(values[2].0.positive, vec![(0, 5.0), (1, 5.0), (2, -2.0)]);
    }

    /// native_histograms.test's `low_res_histogram`: the increment's finer
    /// schema is reduced to the base's; a finer base is an error.
    #[test]
    fn schemas_reconcile_to_the_lower() {
        let values = histograms(
            "{{schema:-1 sum:4 count:1 buckets:[1] offset:1}}+{{schema:0 sum:4 count:4 buckets:[2 2] offset:1}}x1",
        );
        assert_eq!(
            values[1].0,
            histogram("{{schema:-1 count:5 sum:8 offset:1 buckets:[5]}}")
        );
        let err = expand_points("{{schema:1}}+{{schema:0}}x1").unwrap_err();
        assert!(err.contains("cannot merge from schema 0 to 1"), "{err}");
        assert!(expand_points("{{schema:-53}}+{{schema:0}}x1").is_err());
        assert!(expand_points("{{schema:0}}+{{schema:-53}}x1").is_err());
        // Zero steps: nothing is combined, so nothing fails.
        assert_eq!(histograms("{{schema:1}}+{{schema:0}}x0").len(), 1);
    }

    /// Hints combine as `adjustCounterReset`; whether the hint counts for
    /// an expectation is the increment's say, for every value.
    #[test]
    fn counter_reset_hints_in_expansions() {
        let values = histograms("{{count:1 counter_reset_hint:gauge}}+{{count:1}}x1");
        assert_eq!(values[1].0.reset_hint, CounterResetHint::Gauge);
        assert!(values.iter().all(|(_, given)| !given));
        let values = histograms("{{count:1}}+{{count:1 counter_reset_hint:gauge}}x1");
        assert_eq!(values[0].0.reset_hint, CounterResetHint::Unknown);
        assert_eq!(values[1].0.reset_hint, CounterResetHint::Gauge);
        assert!(values.iter().all(|(_, given)| *given));
        let values = histograms(
            "{{count:1 counter_reset_hint:reset}}+{{count:1 counter_reset_hint:not_reset}}x1",
        );
        assert_eq!(values[1].0.reset_hint, CounterResetHint::Unknown);
        let values = histograms(
            "{{count:1 counter_reset_hint:not_reset}}+{{count:1 counter_reset_hint:not_reset}}x1",
        );
        assert_eq!(values[1].0.reset_hint, CounterResetHint::NotReset);
    }

    /// A wider zero bucket takes in the buckets below its threshold, and
    /// the compaction upstream does then drops every empty bucket.
    #[test]
    fn zero_buckets_reconcile() {
        let values =
            histograms("{{count:7 buckets:[1 2 0 4]}}+{{count:2 z_bucket:2 z_bucket_w:1}}x1");
        let h = &values[1].0;
        assert_eq!(h.zero_threshold, 1.0);
        assert_eq!(h.zero_count, 3.0);
        assert_eq!(h.positive, vec![(1, 2.0), (3, 4.0)]);
        assert_eq!(h.count, 9.0);
        // A threshold inside a populated bucket moves to its upper bound.
        let values = histograms("{{count:1 buckets:[0 1]}}+{{z_bucket_w:1.5}}x1");
        assert_eq!(values[1].0.zero_threshold, 2.0);
        assert_eq!(values[1].0.zero_count, 1.0);
        assert!(values[1].0.positive.is_empty());
        // The increment's buckets inside the zero bucket are left out.
        let values = histograms(
            "{{z_bucket_w:1 buckets:[1] offset:3}}+{{z_bucket_w:1 buckets:[1 1 1] offset:-1}}x1",
        );
        assert_eq!(values[1].0.positive, vec![(1, 1.0), (3, 1.0)]);
    }

    #[test]
    fn custom_buckets_combine() {
        let values = histograms(
            "{{schema:-53 count:4 custom_values:[1 2] buckets:[1 0 1]}}+{{schema:-53 count:1 custom_values:[1 2] buckets:[1] offset:1}}x1",
        );
        assert_eq!(values[1].0.positive, vec![(0, 1.0), (1, 1.0), (2, 1.0)]);
        // Different bounds: both mapped onto the common ones, empty
        // buckets dropped.
        let values = histograms(
            "{{schema:-53 count:4 custom_values:[1 2 3] buckets:[1 1 1 1]}}+{{schema:-53 count:2 custom_values:[2 3] buckets:[1 -1 1]}}x1",
        );
        let h = &values[1].0;
        assert_eq!(h.custom_values, vec![2.0, 3.0]);
        assert_eq!(h.positive, vec![(0, 3.0), (2, 2.0)]);
        assert_eq!(h.count, 6.0);
    }

    #[test]
    fn notation_round_trips() {
        let h = histogram(
            "{{schema:1 count:5 sum:3 z_bucket:1 z_bucket_w:0.5 counter_reset_hint:gauge \
             offset:-1 buckets:[1 0 2] n_buckets:[1]}}",
        );
        let text = histogram_notation(&h);
        assert_eq!(
            text,
            "{{schema:1 count:5 sum:3 z_bucket:1 z_bucket_w:0.5 counter_reset_hint:gauge \
             offset:-1 buckets:[1 0 2] n_buckets:[1]}}"
        );
        assert_eq!(histogram(&text), h);
        let sparse = Histogram {
            positive: vec![(0, 0.0), (2, 1.0), (5, 2.0), (6, 0.0)],
            ..Histogram::default()
        };
        assert_eq!(
            histogram_notation(&sparse),
            "{{offset:2 buckets:[1 0 0 2]}}"
        );
        let custom = histogram("{{schema:-53 custom_values:[5 10] buckets:[1]}}");
        assert_eq!(
            histogram_notation(&custom),
            "{{schema:-53 custom_values:[5 10] buckets:[1]}}"
        );
    }

    #[test]
    fn start_timestamp_durations() {
        let points = expand_duration_points("_ -30s-1mx2 -1msx1").unwrap();
        let ms: Vec<Option<f64>> = points
            .into_iter()
            .map(|p| {
                p.map(|v| match v {
                    PointValue::Float(v) => v,
                    other => panic!("{other:?}"),
                })
            })
            .collect();
        assert_eq!(
            ms,
            vec![
                None,
                Some(-30_000.0),
                Some(-90_000.0),
                Some(-150_000.0),
                Some(-1.0),
                Some(-1.0)
            ]
        );
    }

    #[test]
    fn selectors() {
        let (labels, rest) = parse_series_selector(r#"up{job="a\"b", instance='x',} 1 2"#).unwrap();
        assert_eq!(
            labels,
            vec![
                ("__name__".into(), "up".into()),
                ("job".into(), "a\"b".into()),
                ("instance".into(), "x".into())
            ]
        );
        assert_eq!(rest.trim(), "1 2");
        let (labels, _) = parse_series_selector(r#"{"my.metric", "a.b"="c"} 1"#).unwrap();
        assert_eq!(
            labels,
            vec![
                ("__name__".into(), "my.metric".into()),
                ("a.b".into(), "c".into())
            ]
        );
        let (labels, rest) = parse_series_selector("{} 3").unwrap();
        assert!(labels.is_empty());
        assert_eq!(rest.trim(), "3");
        assert!(parse_series_selector(r#"up{job="a" 1"#).is_err());
    }
}
