//! Prometheus rule files: reading, validation with Prometheus's messages
//! (`group "g", rule 1, "name": ...`), and expanding the configured paths
//! and globs into files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use comet_schema::labels::{NameValidation, is_valid_label_name, is_valid_metric_name};
use serde::Deserialize;
use thiserror::Error;

use crate::duration::parse_duration;

/// A rule file that cannot be used, with every problem found in it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}", .errors.iter().map(|e| format!("{}: {e}", .file)).collect::<Vec<_>>().join("; "))]
pub struct FileError {
    pub file: String,
    pub errors: Vec<String>,
}

/// A validated group of rules.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    /// The file it came from, as configured (after glob expansion).
    pub file: String,
    pub interval: Duration,
    /// Queries run this far before the evaluation time (Prometheus 2.53's
    /// `query_offset`).
    pub query_offset: Duration,
    /// Most series a recording rule, or alerts an alerting rule, may
    /// produce per evaluation; 0 = unlimited.
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// The `record` or `alert` name.
    pub name: String,
    pub expr: String,
    /// Labels added or replaced (templates, for alerting rules), in name
    /// order.
    pub labels: Vec<(String, String)>,
    pub kind: RuleKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Recording,
    Alerting {
        hold: Duration,
        keep_firing_for: Duration,
        annotations: Vec<(String, String)>,
    },
}

impl RuleSpec {
    pub fn is_alerting(&self) -> bool {
        matches!(self.kind, RuleKind::Alerting { .. })
    }
}

/// YAML scalars of any type read as text, as Go's YAML decoder does for
/// string fields (`expr: 1`, `severity: 2`).
#[derive(Debug, Clone, Default)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_norway::Value::deserialize(d)? {
            serde_norway::Value::String(s) => Ok(Text(s)),
            serde_norway::Value::Number(n) => Ok(Text(n.to_string())),
            serde_norway::Value::Bool(b) => Ok(Text(b.to_string())),
            serde_norway::Value::Null => Ok(Text(String::new())),
            other => Err(D::Error::custom(format!(
                "cannot unmarshal {} into a string",
                match other {
                    serde_norway::Value::Sequence(_) => "!!seq",
                    serde_norway::Value::Mapping(_) => "!!map",
                    _ => "a value",
                }
            ))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: Text,
    #[serde(default)]
    interval: Option<Text>,
    #[serde(default)]
    query_offset: Option<Text>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Text,
    #[serde(default)]
    alert: Text,
    #[serde(default)]
    expr: Text,
    #[serde(default, rename = "for")]
    hold: Option<Text>,
    #[serde(default)]
    keep_firing_for: Option<Text>,
    #[serde(default)]
    labels: BTreeMap<String, Text>,
    #[serde(default)]
    annotations: BTreeMap<String, Text>,
}

fn duration_field(value: &Option<Text>, errors: &mut Vec<String>) -> Duration {
    match value {
        None => Duration::ZERO,
        Some(Text(s)) if s.is_empty() => Duration::ZERO,
        Some(Text(s)) => parse_duration(s).unwrap_or_else(|_| {
            errors.push(format!("not a valid duration string: {s:?}"));
            Duration::ZERO
        }),
    }
}

/// Parses and validates one rule file's text. `default_interval` is the
/// global evaluation interval for groups without their own.
pub fn parse_rule_file(
    file: &str,
    text: &str,
    default_interval: Duration,
) -> Result<Vec<GroupSpec>, FileError> {
    let fail = |errors: Vec<String>| FileError {
        file: file.to_string(),
        errors,
    };
    // An empty file holds no groups (Go's decoder reads it as zero values).
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let raw: RawFile = serde_norway::from_str(text)
        .map_err(|e| fail(vec![format!("yaml: unmarshal errors:\n  {e}")]))?;
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    let mut groups = Vec::new();
    for g in raw.groups {
        let name = g.name.0;
        if name.is_empty() {
            errors.push("Groupname must not be empty".to_string());
        }
        if !names.insert(name.clone()) {
            errors.push(format!(
                "groupname: \"{name}\" is repeated in the same file"
            ));
        }
        let mut group_errors = Vec::new();
        let interval = match &g.interval {
            Some(_) => duration_field(&g.interval, &mut group_errors),
            None => default_interval,
        };
        let interval = if interval.is_zero() {
            default_interval
        } else {
            interval
        };
        let query_offset = duration_field(&g.query_offset, &mut group_errors);
        errors.extend(group_errors);
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let rule_name = if r.alert.0.is_empty() {
                r.record.0.clone()
            } else {
                r.alert.0.clone()
            };
            let mut problems = Vec::new();
            if let Some(rule) = validate_rule(r, &mut problems) {
                rules.push(rule);
            }
            for p in problems {
                errors.push(format!(
                    "group \"{name}\", rule {}, \"{rule_name}\": {p}",
                    i + 1
                ));
            }
        }
        groups.push(GroupSpec {
            name,
            file: file.to_string(),
            interval,
            query_offset,
            limit: g.limit.unwrap_or(0),
            rules,
        });
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(fail(errors))
    }
}

/// Prometheus's `RuleNode.Validate`, in its order and words.
fn validate_rule(r: RawRule, problems: &mut Vec<String>) -> Option<RuleSpec> {
    let (record, alert, expr) = (r.record.0, r.alert.0, r.expr.0);
    if !record.is_empty() && !alert.is_empty() {
        problems.push("only one of 'record' and 'alert' must be set".into());
    }
    if record.is_empty() && alert.is_empty() {
        problems.push("one of 'record' or 'alert' must be set".into());
    }
    if expr.is_empty() {
        problems.push("field 'expr' must be set in rule".into());
    } else if let Err(e) = crate::plan::parse(&expr) {
        problems.push(format!("could not parse expression: {e}"));
    }
    let mut duration_problems = Vec::new();
    let hold = duration_field(&r.hold, &mut duration_problems);
    let keep_firing_for = duration_field(&r.keep_firing_for, &mut duration_problems);
    if !record.is_empty() {
        if !r.annotations.is_empty() {
            problems.push("invalid field 'annotations' in recording rule".into());
        }
        if !hold.is_zero() {
            problems.push("invalid field 'for' in recording rule".into());
        }
        if !keep_firing_for.is_zero() {
            problems.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        if !is_valid_metric_name(&record, NameValidation::Legacy) {
            problems.push(format!("invalid recording rule name: {record}"));
        }
    }
    problems.extend(duration_problems);
    for name in r.labels.keys() {
        if !is_valid_label_name(name, NameValidation::Legacy) || name == "__name__" {
            problems.push(format!("invalid label name: {name}"));
        }
    }
    for name in r.annotations.keys() {
        if !is_valid_label_name(name, NameValidation::Legacy) {
            problems.push(format!("invalid annotation name: {name}"));
        }
    }
    let labels: Vec<(String, String)> = r.labels.into_iter().map(|(k, v)| (k, v.0)).collect();
    let annotations: Vec<(String, String)> =
        r.annotations.into_iter().map(|(k, v)| (k, v.0)).collect();
    if !alert.is_empty() {
        // Templates are checked at load time, as Prometheus does.
        for (_, text) in labels.iter().chain(&annotations) {
            if let Err(e) = super::template::check(&alert, text) {
                problems.push(e);
            }
        }
    }
    if !problems.is_empty() {
        return None;
    }
    let (name, kind) = if alert.is_empty() {
        (record, RuleKind::Recording)
    } else {
        (
            alert,
            RuleKind::Alerting {
                hold,
                keep_firing_for,
                annotations,
            },
        )
    };
    Some(RuleSpec {
        name,
        expr,
        labels,
        kind,
    })
}

/// The files the configured paths and globs name, in order, each once. A
/// pattern that matches nothing is not an error (as in Prometheus).
pub fn expand_patterns(patterns: &[String]) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for pattern in patterns {
        let paths = glob::glob(pattern).map_err(|e| FileError {
            file: pattern.clone(),
            errors: vec![format!("invalid rule file pattern: {e}")],
        })?;
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        matched.sort();
        for p in matched {
            if seen.insert(p.clone()) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// Reads and validates every file the patterns name; all problems of all
/// files are reported together.
pub fn load_files(
    patterns: &[String],
    default_interval: Duration,
) -> Result<Vec<GroupSpec>, Vec<FileError>> {
    let files = expand_patterns(patterns).map_err(|e| vec![e])?;
    load_paths(&files, default_interval)
}

/// Reads and validates the given files.
pub fn load_paths(
    files: &[PathBuf],
    default_interval: Duration,
) -> Result<Vec<GroupSpec>, Vec<FileError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        match read_file(path, default_interval) {
            Ok(g) => groups.extend(g),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// Reads and validates one file.
pub fn read_file(path: &Path, default_interval: Duration) -> Result<Vec<GroupSpec>, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: file.clone(),
        errors: vec![e.to_string()],
    })?;
    parse_rule_file(&file, &text, default_interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_valid_file() {
        let text = r#"
groups:
  - name: g
    interval: 30s
    limit: 10
    query_offset: 1m
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {team: a}
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: 2}
        annotations:
          summary: "{{ $labels.instance }} is down ({{ $value }})"
  - name: h
    rules: []
"#;
        let groups = parse_rule_file("f.yml", text, MINUTE).unwrap();
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(g.interval, Duration::from_secs(30));
        assert_eq!(g.query_offset, MINUTE);
        assert_eq!(g.limit, 10);
        assert_eq!(g.rules[0].kind, RuleKind::Recording);
        assert_eq!(g.rules[1].labels, [("severity".into(), "2".into())]);
        match &g.rules[1].kind {
            RuleKind::Alerting {
                hold,
                keep_firing_for,
                annotations,
            } => {
                assert_eq!(*hold, 5 * MINUTE);
                assert_eq!(*keep_firing_for, MINUTE);
                assert_eq!(annotations.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(groups[1].interval, MINUTE);
    }

    #[test]
    fn prometheus_messages() {
        let text = r#"
groups:
  - name: g
    rules:
      - record: "bad-name"
        expr: up
        for: 1m
      - alert: A
        record: b
        expr: up
      - expr: up
      - alert: B
        expr: "sum(("
      - alert: C
        expr: up
        labels: {"__name__": x}
        annotations: {"bad-name": y}
      - alert: D
  - name: g
"#;
        let err = parse_rule_file("f.yml", text, MINUTE).unwrap_err();
        let want = [
            "group \"g\", rule 1, \"bad-name\": invalid field 'for' in recording rule",
            "group \"g\", rule 1, \"bad-name\": invalid recording rule name: bad-name",
            "group \"g\", rule 2, \"A\": only one of 'record' and 'alert' must be set",
            "group \"g\", rule 3, \"\": one of 'record' or 'alert' must be set",
            "group \"g\", rule 5, \"C\": invalid label name: __name__",
            "group \"g\", rule 5, \"C\": invalid annotation name: bad-name",
            "group \"g\", rule 6, \"D\": field 'expr' must be set in rule",
            "groupname: \"g\" is repeated in the same file",
        ];
        for w in want {
            assert!(err.errors.iter().any(|e| e == w), "{w}\n{:#?}", err.errors);
        }
        assert!(
            err.errors
                .iter()
                .any(|e| e.starts_with("group \"g\", rule 4, \"B\": could not parse expression")),
            "{:#?}",
            err.errors
        );
        assert!(err.to_string().starts_with("f.yml: "));
    }

    #[test]
    fn unknown_fields_and_bad_templates_are_refused() {
        let err =
            parse_rule_file("f.yml", "groups:\n  - name: g\n    rulez: []\n", MINUTE).unwrap_err();
        assert!(err.errors[0].contains("rulez"), "{err}");
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations: {a: '{{ $value'}\n";
        let err = parse_rule_file("f.yml", text, MINUTE).unwrap_err();
        assert!(
            err.errors[0].starts_with("group \"g\", rule 1, \"A\": "),
            "{err}"
        );
    }

    #[test]
    fn globs_expand_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.yml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join(name), "groups: []\n").unwrap();
        }
        let pattern = format!("{}/*.yml", dir.path().display());
        let exact = format!("{}/a.yml", dir.path().display());
        let files = expand_patterns(&[pattern, exact]).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
    }
}
