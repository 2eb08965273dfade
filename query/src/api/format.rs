//! The text of `/api/v1/format_query`: `promql-parser`'s prettifier, which
//! follows Prometheus's, with what Prometheus 3.5 prints differently put
//! right. `tests/exactness.rs` compares the result with Prometheus 3.5 on
//! every query of the upstream PromQL test suite.

use promql_parser::parser::Expr;

/// `expr` pretty-printed as Prometheus 3.5 prints it.
pub fn format_query(expr: &Expr) -> String {
    unindented_subqueries(&signed_infinity(&expr.prettify()))
}

/// Prometheus prints a subquery that fits on its line without the
/// indentation of its level (its `Pretty` returns the bare `String()`);
/// `promql-parser` indents it like any other operand.
fn unindented_subqueries(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let body = line.trim_start();
            let (expr, comma) = match body.strip_suffix(',') {
                Some(expr) => (expr, ","),
                None => (body, ""),
            };
            match crate::plan::parse(expr) {
                Ok(Expr::Subquery(_)) => format!("{expr}{comma}"),
                _ => line.to_string(),
            }
        })
        .collect();
    lines.join("\n")
}

/// Prometheus writes positive infinity as `+Inf`, `promql-parser` as
/// `Inf`: each `Inf` number outside strings and label matchers that no
/// sign is written against gains its `+`.
fn signed_infinity(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    let mut in_braces = 0usize;
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                out.push(c);
                while let Some(s) = chars.next() {
                    out.push(s);
                    if s == '\\' && c != '`' {
                        if let Some(escaped) = chars.next() {
                            out.push(escaped);
                        }
                    } else if s == c {
                        break;
                    }
                }
            }
            '{' => {
                in_braces += 1;
                out.push(c);
            }
            '}' => {
                in_braces = in_braces.saturating_sub(1);
                out.push(c);
            }
            c if c.is_alphanumeric() || c == '_' || c == ':' => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if !(n.is_alphanumeric() || n == '_' || n == ':' || n == '.') {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                if word == "Inf" && in_braces == 0 && !matches!(previous, '-' | '+') {
                    out.push('+');
                }
                out.push_str(&word);
                previous = word.chars().last().unwrap_or(c);
                continue;
            }
            _ => out.push(c),
        }
        previous = c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(query: &str) -> String {
        format_query(&crate::plan::parse(query).expect(query))
    }

    #[test]
    fn positive_infinity_is_written_with_its_sign() {
        assert_eq!(formatted("+Inf"), "+Inf");
        assert_eq!(formatted("inF"), "+Inf");
        assert_eq!(formatted("-Inf"), "-Inf");
        assert_eq!(formatted("x - Inf"), "x - +Inf");
        assert_eq!(
            formatted("histogram_fraction(-Inf, +Inf, x)"),
            "histogram_fraction(-Inf, +Inf, x)"
        );
        assert_eq!(
            formatted("label_replace(x, \"Inf\", \"Inf\", \"a\", \"Inf\")"),
            "label_replace(x, \"Inf\", \"Inf\", \"a\", \"Inf\")"
        );
        assert_eq!(formatted("x{le=\"+Inf\"}"), "x{le=\"+Inf\"}");
        assert_eq!(formatted("Info"), "Info");
    }

    #[test]
    fn a_subquery_on_its_own_line_is_not_indented() {
        let long = "sum_over_time(sum_over_time(sum_over_time(metric{job=\"1\"}[100s] @ 100)[100s:25s] @ 50)[3s:1s] @ 3000)";
        assert_eq!(
            formatted(long),
            "sum_over_time(\nsum_over_time(sum_over_time(metric{job=\"1\"}[1m40s] @ 100.000)[1m40s:25s] @ 50.000)[3s:1s] @ 3000.000\n)"
        );
        assert_eq!(formatted("rate(x[5m])"), "rate(x[5m])");
    }
}
