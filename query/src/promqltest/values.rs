//! Series and point notation of test scripts: `metric{a="b"}` selectors and
//! the expanding value syntax (`1 2+3x4 _ _x2 stale {{schema:1 ...}}`).

/// Label pairs in the order written.
pub type LabelPairs = Vec<(String, String)>;

/// One value of a series.
#[derive(Debug, Clone, PartialEq)]
pub enum PointValue {
    Float(f64),
    /// The staleness marker.
    Stale,
    /// A native histogram: `spec + times * increment` in the notation of
    /// the scripts (`{{schema:1 sum:3 count:22 buckets:[5 10 7]}}`), kept as
    /// text until histograms are stored.
    Histogram {
        spec: String,
        increment: Option<String>,
        times: u32,
    },
}

/// A single value token, or `None` when the line is not one.
pub fn parse_value(text: &str) -> Option<PointValue> {
    let text = text.trim();
    if text == "stale" {
        return Some(PointValue::Stale);
    }
    if text.starts_with("{{") && text.ends_with("}}") && !text.contains("}}+") {
        return Some(PointValue::Histogram {
            spec: text.to_string(),
            increment: None,
            times: 0,
        });
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
/// N+1 times; `_xN` is N missing points; `stale` a staleness marker.
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
        // `axn` is always a repetition here (`0x59` is 0 sixty times, not
        // hexadecimal), so it is tried before plain numbers.
        let repeat = !token.starts_with("{{")
            && token.rsplit_once('x').is_some_and(|(body, n)| {
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
        if body.starts_with("{{") {
            let (spec, increment) = match body.find("}}+") {
                Some(at) => (&body[..at + 2], Some(body[at + 3..].to_string())),
                None => (body, None),
            };
            for k in 0..=times {
                out.push(Some(PointValue::Histogram {
                    spec: spec.to_string(),
                    increment: increment.clone(),
                    times: if increment.is_some() { k } else { 0 },
                }));
            }
            continue;
        }
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

    #[test]
    fn stale_and_histograms() {
        let points =
            expand_points("stale {{schema:1 sum:3 buckets:[5 10 7]}} {{count:1}}+{{count:2}}x2")
                .unwrap();
        assert_eq!(points[0], Some(PointValue::Stale));
        assert_eq!(
            points[1],
            Some(PointValue::Histogram {
                spec: "{{schema:1 sum:3 buckets:[5 10 7]}}".into(),
                increment: None,
                times: 0
            })
        );
        assert_eq!(points.len(), 5);
        assert_eq!(
            points[4],
            Some(PointValue::Histogram {
                spec: "{{count:1}}".into(),
                increment: Some("{{count:2}}".into()),
                times: 2
            })
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
