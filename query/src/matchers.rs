//! Prometheus label matchers as ClickHouse SQL conditions on the `series`
//! table. Names and values never enter the SQL text: each becomes a typed
//! query parameter (`{p0:String}`), so no label value or regex can change
//! the statement.

use promql_parser::label::MatchOp as ParserOp;
use promql_parser::parser::VectorSelector;
use thiserror::Error;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// `name op "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum MatcherError {
    #[error("selectors with `or` between matchers are not supported")]
    OrNotSupported,
    #[error("no matchers given")]
    Empty,
    #[error("{0}")]
    MatchesEverything(String),
    #[error("invalid regular expression {regex:?} for label {label:?}: {error}")]
    InvalidRegex {
        label: String,
        regex: String,
        error: String,
    },
}

/// SQL text with `{pN:String}` placeholders and the values to bind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlCondition {
    pub sql: String,
    pub params: Vec<(String, String)>,
}

impl SqlCondition {
    /// Adds `value` as the next parameter; returns its placeholder.
    pub fn param(&mut self, value: &str) -> String {
        let name = format!("p{}", self.params.len());
        self.params.push((name.clone(), value.to_string()));
        format!("{{{name}:String}}")
    }
}

impl Matcher {
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op,
            value: value.into(),
        }
    }

    /// Whether the empty string matches: such a matcher also selects series
    /// that do not have the label at all.
    pub fn matches_empty(&self) -> bool {
        match self.op {
            MatchOp::Equal => self.value.is_empty(),
            MatchOp::NotEqual => !self.value.is_empty(),
            // Decided by ClickHouse for regexes; here only the trivial cases.
            MatchOp::Regex => matches!(self.value.as_str(), "" | ".*"),
            MatchOp::NotRegex => !matches!(self.value.as_str(), "" | ".*"),
        }
    }
}

/// The matchers of a parsed selector in Comet's form, its metric name
/// included as a `__name__` matcher.
pub fn from_selector(vs: &VectorSelector) -> Result<Vec<Matcher>, MatcherError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(MatcherError::OrNotSupported);
    }
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::new("__name__", MatchOp::Equal, name));
    }
    for m in &vs.matchers.matchers {
        let m = Matcher::from(m);
        if m.name == "__name__"
            && m.op == MatchOp::Equal
            && vs.name.as_deref() == Some(m.value.as_str())
        {
            continue;
        }
        out.push(m);
    }
    Ok(out)
}

impl From<&promql_parser::label::Matcher> for Matcher {
    fn from(m: &promql_parser::label::Matcher) -> Self {
        let op = match &m.op {
            ParserOp::Equal => MatchOp::Equal,
            ParserOp::NotEqual => MatchOp::NotEqual,
            ParserOp::Re(_) => MatchOp::Regex,
            ParserOp::NotRe(_) => MatchOp::NotRegex,
        };
        Matcher::new(&m.name, op, &m.value)
    }
}

/// `m` as a condition on the SQL string `column` (which holds the value of
/// `m`'s label), adding its parameters to `cond`.
pub fn value_condition(m: &Matcher, column: &str, cond: &mut SqlCondition) -> String {
    match m.op {
        MatchOp::Equal => format!("{column} = {}", cond.param(&m.value)),
        MatchOp::NotEqual => format!("{column} != {}", cond.param(&m.value)),
        MatchOp::Regex => format!(
            "match({column}, {})",
            cond.param(&format!("^(?:{})$", m.value))
        ),
        MatchOp::NotRegex => format!(
            "NOT match({column}, {})",
            cond.param(&format!("^(?:{})$", m.value))
        ),
    }
}

/// ANDs `matchers` into one condition over `series` columns `metric_name`
/// and `labels`. Prometheus semantics: a missing label equals "", and
/// regexes are anchored at both ends.
pub fn to_sql(matchers: &[Matcher]) -> Result<SqlCondition, MatcherError> {
    let mut cond = SqlCondition::default();
    cond.sql = condition(matchers, &mut cond)?;
    Ok(cond)
}

/// Like [`to_sql`], adding the parameters to `cond` (shared by several
/// conditions of one statement) and returning the SQL.
pub fn condition(matchers: &[Matcher], cond: &mut SqlCondition) -> Result<String, MatcherError> {
    if matchers.is_empty() {
        return Err(MatcherError::Empty);
    }
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(MatcherError::MatchesEverything(
            "at least one matcher must not match the empty string".to_string(),
        ));
    }
    for m in matchers {
        if matches!(m.op, MatchOp::Regex | MatchOp::NotRegex) {
            // RE2 (ClickHouse) and Go (Prometheus) share this syntax; refuse
            // what neither would compile before it reaches ClickHouse.
            regex::Regex::new(&m.value).map_err(|e| MatcherError::InvalidRegex {
                label: m.name.clone(),
                regex: m.value.clone(),
                error: e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            })?;
        }
    }
    let mut parts = Vec::with_capacity(matchers.len());
    for m in matchers {
        let column = if m.name == "__name__" {
            "metric_name".to_string()
        } else {
            format!("labels[{}]", cond.param(&m.name))
        };
        parts.push(value_condition(m, &column, cond));
    }
    Ok(parts.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_parameters() {
        let cond = to_sql(&[
            Matcher::new("__name__", MatchOp::Equal, "up"),
            Matcher::new("job", MatchOp::Regex, "a'|b"),
            Matcher::new("x", MatchOp::NotEqual, "') OR 1=1 --"),
        ])
        .unwrap();
        assert_eq!(
            cond.sql,
            "metric_name = {p0:String} AND match(labels[{p1:String}], {p2:String}) AND labels[{p3:String}] != {p4:String}"
        );
        assert_eq!(cond.params[2].1, "^(?:a'|b)$");
        assert_eq!(cond.params[4].1, "') OR 1=1 --");
    }

    #[test]
    fn invalid_regexes_are_refused() {
        let err = to_sql(&[Matcher::new("job", MatchOp::Regex, "a(")]).unwrap_err();
        assert!(matches!(err, MatcherError::InvalidRegex { .. }), "{err}");
    }

    #[test]
    fn empty_matching_sets_are_refused() {
        assert_eq!(to_sql(&[]), Err(MatcherError::Empty));
        assert!(to_sql(&[Matcher::new("job", MatchOp::Regex, ".*")]).is_err());
        assert!(to_sql(&[Matcher::new("job", MatchOp::Equal, "")]).is_err());
    }
}
