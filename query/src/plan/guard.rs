//! What the parser and the planner must not be given. Both recurse once
//! per level of nesting (the parser's actions clone subexpressions), as do
//! the API's formatting and the AST's own drop, and a thread's stack (2 MiB
//! on the API's workers) holds only so many levels: `-` written 60,000
//! times overflowed it and killed the process. ClickHouse parses Comet's
//! SQL with a limit of its own (`max_parser_depth`, 1,000), which a PromQL
//! query reaches at a few dozen levels, so a deeper query is refused with a
//! message that says why: first by a bound read off the text (before the
//! parser recurses), then by the parsed expression's depth. The text is also
//! where a duration too long for the parser (`x[1e30]`, which it panics on)
//! is caught.

use promql_parser::parser::Expr;

/// The deepest expression Comet plans: levels of nesting, each
/// parenthesis, function call, aggregation, operator operand or subquery
/// counting one.
pub const MAX_NESTING: usize = 128;

/// The most levels the parser is given. The parser is tested at twice
/// this on a 2 MiB stack, unoptimised, and its time grows with the square
/// of a chain's length (600 ms for `up + up + ...` of 2,000 terms, 30 ms
/// at 512); a query of [`MAX_NESTING`] levels or fewer exceeds it only
/// with more than 512 operators and brackets along one path.
pub const MAX_TEXT_DEPTH: usize = 4 * MAX_NESTING;

/// The longest duration written as a number of seconds that the parser
/// takes (`std::time::Duration` holds 2^64 seconds); Prometheus's own limit
/// (nanoseconds in an int64) is far below it.
const MAX_DURATION_SECONDS: f64 = 1.8e19;

/// Why a query's text is refused before it is parsed.
#[derive(Debug, PartialEq)]
pub enum TextProblem {
    /// The text may nest deeper than [`MAX_TEXT_DEPTH`].
    TooDeep,
    /// A duration given in seconds that no duration holds.
    DurationOutOfRange(String),
}

/// Reads `query` for what the parser cannot take.
pub fn check_text(query: &str) -> Result<(), TextProblem> {
    let scan = scan(query);
    if let Some(number) = scan.oversized_duration {
        return Err(TextProblem::DurationOutOfRange(number));
    }
    if scan.depth_bound > MAX_TEXT_DEPTH {
        return Err(TextProblem::TooDeep);
    }
    Ok(())
}

struct Scan {
    /// An upper bound of the depth of the expression the text parses into:
    /// along the deepest path of brackets, each bracket and each operator
    /// inside it may add a level (a `[...]` after an expression counts as
    /// an operator too: a subquery). Strings, comments and label matchers
    /// (`{...}`) add none.
    depth_bound: usize,
    /// The first number in a duration's place (in `[...]`, after `offset`)
    /// too large for one.
    oversized_duration: Option<String>,
}

fn scan(query: &str) -> Scan {
    // Per open bracket: its kind, the operators directly inside it and the
    // deepest bracket inside it.
    let mut open: Vec<(char, usize, usize)> = vec![(' ', 0, 0)];
    let mut chars = query.chars().peekable();
    let mut in_braces = 0usize;
    let mut after_offset = false;
    let mut oversized_duration = None;
    let close = |open: &mut Vec<(char, usize, usize)>| {
        if open.len() > 1 {
            let (_, operators, deepest) = open.pop().unwrap_or_default();
            if let Some(parent) = open.last_mut() {
                parent.2 = parent.2.max(operators + deepest + 1);
            }
        }
    };
    let operator = |open: &mut Vec<(char, usize, usize)>| {
        if let Some(top) = open.last_mut() {
            top.1 += 1;
        }
    };
    while let Some(c) = chars.next() {
        let offset_before = std::mem::take(&mut after_offset);
        match c {
            '"' | '\'' | '`' => {
                // A string ends at its unescaped quote (raw strings have no escapes).
                while let Some(s) = chars.next() {
                    if s == '\\' && c != '`' {
                        chars.next();
                    } else if s == c {
                        break;
                    }
                }
            }
            '#' => {
                for s in chars.by_ref() {
                    if s == '\n' {
                        break;
                    }
                }
            }
            '{' => in_braces += 1,
            '}' => in_braces = in_braces.saturating_sub(1),
            _ if in_braces > 0 => {}
            '[' => {
                operator(&mut open);
                open.push(('[', 0, 0));
            }
            '(' => open.push(('(', 0, 0)),
            ')' | ']' => close(&mut open),
            '+' | '-' => {
                operator(&mut open);
                // `offset -5m`
                after_offset = offset_before;
            }
            '*' | '/' | '%' | '^' | '<' | '>' | '=' | '!' => operator(&mut open),
            c if c.is_whitespace() => after_offset = offset_before,
            c if c.is_alphanumeric() || c == '.' || c == '_' => {
                let mut word = String::from(c);
                let number = c.is_ascii_digit() || c == '.';
                while let Some(&n) = chars.peek() {
                    // A metric name may hold `:`; `[5m:1m]` separates at it.
                    if !(n.is_alphanumeric() || n == '_' || n == '.' || (n == ':' && !number)) {
                        break;
                    }
                    word.push(n);
                    chars.next();
                    // The sign of an exponent: `1e+30`.
                    if number && matches!(n, 'e' | 'E') {
                        if let Some(&sign) = chars.peek().filter(|s| matches!(s, '+' | '-')) {
                            word.push(sign);
                            chars.next();
                        }
                    }
                }
                let keyword = |k: &str| word.eq_ignore_ascii_case(k);
                if ["and", "or", "unless", "atan2"].into_iter().any(keyword) {
                    operator(&mut open);
                }
                after_offset = keyword("offset");
                let in_duration = offset_before || open.last().is_some_and(|o| o.0 == '[');
                if in_duration
                    && oversized_duration.is_none()
                    && number
                    && word
                        .parse::<f64>()
                        .is_ok_and(|seconds| seconds >= MAX_DURATION_SECONDS)
                {
                    oversized_duration = Some(word);
                }
            }
            _ => {}
        }
    }
    while open.len() > 1 {
        close(&mut open);
    }
    let (_, operators, deepest) = open[0];
    Scan {
        depth_bound: operators + deepest + 1,
        oversized_duration,
    }
}

/// The deepest level of `expr`, counted without recursion.
pub fn depth(expr: &Expr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(expr, 1usize)];
    while let Some((e, level)) = pending.pop() {
        deepest = deepest.max(level);
        pending.extend(children(e).into_iter().map(|c| (c, level + 1)));
    }
    deepest
}

/// Drops `expr` level by level: the derived drop recurses once per level
/// and would overflow the stack on the expressions [`depth`] refuses.
pub fn drop_iteratively(expr: Expr) {
    let mut pending = vec![expr];
    while let Some(mut e) = pending.pop() {
        pending.extend(take_children(&mut e));
    }
}

/// The operands of `expr`, in Prometheus's order (an aggregation's
/// expression before its parameter).
pub(crate) fn children(expr: &Expr) -> Vec<&Expr> {
    match expr {
        Expr::Aggregate(a) => std::iter::once(a.expr.as_ref())
            .chain(a.param.as_deref())
            .collect(),
        Expr::Unary(u) => vec![u.expr.as_ref()],
        Expr::Binary(b) => vec![b.lhs.as_ref(), b.rhs.as_ref()],
        Expr::Paren(p) => vec![p.expr.as_ref()],
        Expr::Subquery(s) => vec![s.expr.as_ref()],
        Expr::Call(c) => c.args.args.iter().map(|a| a.as_ref()).collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => Vec::new(),
    }
}

/// Moves `expr`'s children out, leaving literals in their place.
fn take_children(expr: &mut Expr) -> Vec<Expr> {
    let take = |e: &mut Box<Expr>| *std::mem::replace(e, Box::new(Expr::from(0.0)));
    match expr {
        Expr::Aggregate(a) => {
            let mut taken = vec![take(&mut a.expr)];
            taken.extend(a.param.as_mut().map(take));
            taken
        }
        Expr::Unary(u) => vec![take(&mut u.expr)],
        Expr::Binary(b) => vec![take(&mut b.lhs), take(&mut b.rhs)],
        Expr::Paren(p) => vec![take(&mut p.expr)],
        Expr::Subquery(s) => vec![take(&mut s.expr)],
        Expr::Call(c) => c.args.args.iter_mut().map(take).collect(),
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Grid, PlanSettings, parse, plan};

    fn text_depth_bound(query: &str) -> usize {
        scan(query).depth_bound
    }

    fn nested(shape: &str, levels: usize) -> String {
        match shape {
            "unary" => format!("{}up", "-".repeat(levels)),
            "call" => format!("{}up{}", "abs(".repeat(levels), ")".repeat(levels)),
            "aggregation" => format!("{}up{}", "sum(".repeat(levels), ")".repeat(levels)),
            "parens" => format!("{}up{}", "(".repeat(levels), ")".repeat(levels)),
            "chain" => vec!["up"; levels].join(" + "),
            "power" => vec!["2"; levels].join("^"),
            "subquery" => format!(
                "{}up{}",
                "max_over_time(".repeat(levels),
                "[5m:1m])".repeat(levels)
            ),
            _ => unreachable!(),
        }
    }

    const SHAPES: [&str; 7] = [
        "unary",
        "call",
        "aggregation",
        "parens",
        "chain",
        "power",
        "subquery",
    ];

    /// Runs on the test harness's 2 MiB thread, as the API's workers do.
    #[test]
    fn the_parser_survives_twice_the_text_bound() {
        for shape in SHAPES {
            let query = nested(shape, 2 * MAX_TEXT_DEPTH);
            let expr = promql_parser::parser::parse(&query).expect(shape);
            assert!(text_depth_bound(&query) >= depth(&expr), "{shape}");
            drop_iteratively(expr);
        }
    }

    #[test]
    fn the_text_bound_is_never_below_the_depth() {
        let queries = [
            "up",
            "sum by (job) (rate(http_requests_total{job=~\"a|(b)\", x!=\"-\"}[5m])) / 2",
            "max_over_time(max_over_time(up[5m:1m])[5m:1m])",
            "a * b + c * d - -e ^ f ^ g and h or i unless j atan2 k",
            "count_values(\"((\", up) # ((((\n + 1",
            "histogram_quantile(0.9, sum by (le) (rate(x[5m] offset -1m)))",
        ];
        for query in queries {
            let expr = promql_parser::parser::parse(query).expect(query);
            assert!(text_depth_bound(query) >= depth(&expr), "{query}");
        }
        for shape in SHAPES {
            let query = nested(shape, 300);
            let expr = promql_parser::parser::parse(&query).expect(shape);
            assert!(text_depth_bound(&query) >= depth(&expr), "{shape}");
        }
    }

    #[test]
    fn durations_the_parser_cannot_hold_are_refused() {
        for query in [
            "x offset 1e30",
            "x offset -1e30",
            "x[1e30:1e30]",
            "x[5m:1e30]",
            "x[1e+30]",
            "rate(x[.5e31])",
            "deriv(t[1888888888888888888888888888888880]m8) and on (instance) up == 1",
        ] {
            assert!(
                matches!(check_text(query), Err(TextProblem::DurationOutOfRange(_))),
                "{query}"
            );
            parse(query).expect_err(query);
        }
        for query in [
            "x[1e18]",
            "x offset 1e18",
            "x @ 1e30",
            "x > 1e30",
            "max_over_time((x > 1e30)[5m:1m])",
            "x{a=\"[1e30]\"}",
        ] {
            assert!(check_text(query).is_ok(), "{query}");
        }
    }

    #[test]
    fn depth_counts_every_level() {
        assert_eq!(depth(&promql_parser::parser::parse("up").unwrap()), 1);
        assert_eq!(
            depth(&promql_parser::parser::parse("sum(rate(up[5m])) / 2").unwrap()),
            4
        );
        for shape in SHAPES {
            let expr = promql_parser::parser::parse(&nested(shape, 50)).unwrap();
            assert!(depth(&expr) >= 50, "{shape}: {}", depth(&expr));
        }
    }

    /// Runs on the test harness's 2 MiB thread, as the API's workers do.
    #[test]
    fn a_query_too_deep_is_refused_not_a_crash() {
        for shape in SHAPES {
            for levels in [MAX_NESTING + 1, MAX_TEXT_DEPTH + 1, 20_000] {
                let query = nested(shape, levels);
                let err = parse(&query).expect_err(shape);
                assert!(err.to_string().contains("levels deep"), "{shape}: {err}");
                let grid = Grid::range(1_000_000, 2_000_000, 15_000);
                assert!(plan(&query, grid, &PlanSettings::default()).is_err());
            }
        }
    }

    #[test]
    fn a_query_at_the_limit_is_planned() {
        for shape in SHAPES {
            // A subquery in a call is two levels.
            let levels = if shape == "subquery" {
                MAX_NESTING / 2 - 1
            } else {
                MAX_NESTING - 1
            };
            let query = nested(shape, levels);
            let depth = depth(&parse(&query).expect(shape));
            assert!(
                (MAX_NESTING - 2..=MAX_NESTING).contains(&depth),
                "{shape}: {depth}"
            );
            let grid = Grid::range(1_000_000, 2_000_000, 15_000);
            plan(&query, grid, &PlanSettings::default()).unwrap_or_else(|e| panic!("{shape}: {e}"));
        }
    }
}
