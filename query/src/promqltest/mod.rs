//! Reader for Prometheus's PromQL test scripts (the `.test` files of the
//! upstream suite, format described in their FORMAT.md): `load`, `clear` and
//! `eval` commands with their series, expected results and `expect` lines.
//! The PromQL engine is judged by running these scripts.

pub(crate) mod histogram;
mod run;
mod values;

pub use run::{
    CaseFailure, FailureKind, FileReport, LoadSeries, Loader, RunError, Runner, Tier, almost_equal,
    load_series, summary,
};

use std::time::Duration;

pub use crate::duration::parse_duration;

use thiserror::Error;

pub use values::{
    PointValue, expand_duration_points, expand_points, histogram_notation, parse_histogram,
    parse_series_selector,
};

/// One command of a script, with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Load(Load),
    Clear,
    Eval(Eval),
}

/// `load <interval>` (or `load_with_nhcb`) and its series.
#[derive(Debug, Clone, PartialEq)]
pub struct Load {
    pub line: usize,
    pub interval: Duration,
    /// Also load classic histograms as native histograms with custom buckets.
    pub with_nhcb: bool,
    pub series: Vec<SeriesPoints>,
}

/// A series and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    /// Label pairs including `__name__` when the series has a name, in the
    /// order written.
    pub labels: Vec<(String, String)>,
    /// One entry per step; `None` is a missing point (`_`).
    pub points: Vec<Option<PointValue>>,
    /// A `metric@st` line: the points are start (created) timestamps, in
    /// milliseconds relative to each step, of the series loaded next to it.
    pub start_timestamps: bool,
}

/// When an `eval` runs.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalTime {
    Instant {
        at: Duration,
    },
    Range {
        start: Duration,
        end: Duration,
        step: Duration,
    },
}

/// An `expect` line.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Fail(Option<MessageMatch>),
    Warn(Option<MessageMatch>),
    Info(Option<MessageMatch>),
    NoWarn,
    NoInfo,
    Ordered,
    String(String),
    RangeVector {
        start: Duration,
        end: Duration,
        step: Duration,
    },
}

/// How an expected message is compared.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageMatch {
    Exact(String),
    Regex(String),
}

/// What an `eval` expects as its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Series with their values (instant: one value each; range: one per step).
    Series(Vec<SeriesPoints>),
    /// A bare value line: a scalar result.
    Scalar(PointValue),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Eval {
    pub line: usize,
    pub time: EvalTime,
    pub query: String,
    pub expects: Vec<Expect>,
    pub expected: Expected,
}

impl Eval {
    pub fn expects_failure(&self) -> bool {
        self.expects.iter().any(|e| matches!(e, Expect::Fail(_)))
    }

    pub fn is_ordered(&self) -> bool {
        self.expects.iter().any(|e| matches!(e, Expect::Ordered))
    }
}

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct ScriptError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> ScriptError {
    ScriptError {
        line,
        message: message.into(),
    }
}

/// Parses a whole script.
pub fn parse_script(text: &str) -> Result<Vec<Command>, ScriptError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut commands = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The lines belonging to this command: up to the next blank line or
        // the next command.
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() && !starts_command(lines[i]) {
            let l = lines[i].trim();
            if !l.starts_with('#') {
                body.push((i + 1, l));
            }
            i += 1;
        }
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match keyword {
            "clear" => commands.push(Command::Clear),
            "load" | "load_with_nhcb" => {
                let interval = parse_duration(rest).map_err(|m| error(line_no, m))?;
                let series = body
                    .iter()
                    .map(|(n, l)| parse_series_line(l).map_err(|m| error(*n, m)))
                    .collect::<Result<_, _>>()?;
                commands.push(Command::Load(Load {
                    line: line_no,
                    interval,
                    with_nhcb: keyword == "load_with_nhcb",
                    series,
                }));
            }
            "eval" | "eval_fail" | "eval_warn" | "eval_info" | "eval_ordered" => {
                let mut eval = parse_eval_head(line_no, rest)?;
                match keyword {
                    "eval_fail" => eval.expects.push(Expect::Fail(None)),
                    "eval_warn" => eval.expects.push(Expect::Warn(None)),
                    "eval_info" => eval.expects.push(Expect::Info(None)),
                    "eval_ordered" => eval.expects.push(Expect::Ordered),
                    _ => {}
                }
                parse_eval_body(&mut eval, &body)?;
                commands.push(Command::Eval(eval));
            }
            other => return Err(error(line_no, format!("unknown command {other:?}"))),
        }
    }
    Ok(commands)
}

const COMMANDS: &[&str] = &[
    "load",
    "load_with_nhcb",
    "clear",
    "eval",
    "eval_fail",
    "eval_warn",
    "eval_info",
    "eval_ordered",
];

fn starts_command(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or_default();
    COMMANDS.contains(&first)
}

/// `instant at <time> <query>` or `range from <t> to <t> step <d> <query>`.
fn parse_eval_head(line: usize, rest: &str) -> Result<Eval, ScriptError> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let duration = |w: Option<&&str>| -> Result<Duration, ScriptError> {
        let w = w.ok_or_else(|| error(line, "incomplete eval command"))?;
        parse_duration(w).map_err(|m| error(line, m))
    };
    // The query is what follows the fixed words, with its own spacing.
    let query_after = |n: usize| -> String {
        let mut remaining = rest;
        for _ in 0..n {
            remaining = remaining.trim_start();
            let end = remaining
                .find(char::is_whitespace)
                .unwrap_or(remaining.len());
            remaining = &remaining[end..];
        }
        remaining.trim().to_string()
    };
    let (time, query) = match words.as_slice() {
        ["instant", "at", ..] => (
            EvalTime::Instant {
                at: duration(words.get(2))?,
            },
            query_after(3),
        ),
        ["range", "from", _, "to", _, "step", ..] => (
            EvalTime::Range {
                start: duration(words.get(2))?,
                end: duration(words.get(4))?,
                step: duration(words.get(6))?,
            },
            query_after(7),
        ),
        _ => return Err(error(line, format!("invalid eval command {rest:?}"))),
    };
    if query.is_empty() {
        return Err(error(line, "eval without a query"));
    }
    Ok(Eval {
        line,
        time,
        query,
        expects: Vec::new(),
        expected: Expected::Series(Vec::new()),
    })
}

fn parse_eval_body(eval: &mut Eval, body: &[(usize, &str)]) -> Result<(), ScriptError> {
    let mut series = Vec::new();
    for &(n, l) in body {
        if let Some(expect) = l.strip_prefix("expect ") {
            eval.expects
                .push(parse_expect(expect.trim()).map_err(|m| error(n, m))?);
        } else if let Some(message) = l.strip_prefix("expected_fail_message ") {
            eval.expects.push(Expect::Fail(Some(MessageMatch::Exact(
                message.trim().to_string(),
            ))));
        } else if let Some(regex) = l.strip_prefix("expected_fail_regexp ") {
            eval.expects.push(Expect::Fail(Some(MessageMatch::Regex(
                regex.trim().to_string(),
            ))));
        } else if let Some(value) = values::parse_value(l) {
            eval.expected = Expected::Scalar(value);
        } else {
            series.push(parse_series_line(l).map_err(|m| error(n, m))?);
        }
    }
    if !series.is_empty() {
        eval.expected = Expected::Series(series);
    }
    Ok(())
}

fn parse_expect(text: &str) -> Result<Expect, String> {
    let (kind, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let rest = rest.trim();
    let message = || -> Result<Option<MessageMatch>, String> {
        if rest.is_empty() {
            return Ok(None);
        }
        let unquote = |s: &str| {
            let s = s.trim();
            let quoted = s.len() >= 2
                && ((s.starts_with('"') && s.ends_with('"'))
                    || (s.starts_with('`') && s.ends_with('`')));
            if quoted {
                s[1..s.len() - 1].to_string()
            } else {
                s.to_string()
            }
        };
        if let Some(m) = rest.strip_prefix("msg:") {
            Ok(Some(MessageMatch::Exact(unquote(m))))
        } else if let Some(r) = rest.strip_prefix("regex:") {
            Ok(Some(MessageMatch::Regex(unquote(r))))
        } else {
            Err(format!("invalid expect line {text:?}"))
        }
    };
    Ok(match kind {
        "fail" => Expect::Fail(message()?),
        "warn" => Expect::Warn(message()?),
        "info" => Expect::Info(message()?),
        "no_warn" => Expect::NoWarn,
        "no_info" => Expect::NoInfo,
        "ordered" => Expect::Ordered,
        "string" => {
            let s = rest;
            let quoted = s.len() >= 2
                && ((s.starts_with('"') && s.ends_with('"'))
                    || (s.starts_with('`') && s.ends_with('`')));
            if !quoted {
                return Err(format!("expect string needs a quoted string: {text:?}"));
            }
            Expect::String(s[1..s.len() - 1].to_string())
        }
        "range" => {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                ["vector", "from", start, "to", end, "step", step] => Expect::RangeVector {
                    start: parse_duration(start)?,
                    end: parse_duration(end)?,
                    step: parse_duration(step)?,
                },
                _ => return Err(format!("invalid expect range vector line {text:?}")),
            }
        }
        other => return Err(format!("unknown expectation {other:?}")),
    })
}

/// `metric{a="b"} 1 2+3x4 _ stale`.
fn parse_series_line(line: &str) -> Result<SeriesPoints, String> {
    let (labels, rest) = parse_series_selector(line)?;
    if let Some(rest) = rest.strip_prefix("@st") {
        return Ok(SeriesPoints {
            labels,
            points: expand_duration_points(rest)?,
            start_timestamps: true,
        });
    }
    Ok(SeriesPoints {
        labels,
        points: expand_points(rest)?,
        start_timestamps: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"
# comment
load 5m
    http_requests{job="api", instance="0"} 0+10x3 _ stale
    {"utf8.name", x="y"} 1 NaN -Inf

eval instant at 10m sum by (job) (http_requests)
    expect no_warn
    {job="api"} 20

eval range from 0 to 10m step 5m http_requests
  http_requests{job="api", instance="0"} 0 10 20

eval instant at 0m scalar(http_requests)
	NaN

eval_fail instant at 1m foo(

eval instant at 1m  1 +  "a"
    expect fail msg: "binary expression must contain only scalar and instant vector types"

eval instant at 50m ("Foo")
 expect string `Foo`

clear
"#;

    #[test]
    fn parses_every_command_kind() {
        let commands = parse_script(SCRIPT).unwrap();
        assert_eq!(commands.len(), 8);
        let Command::Load(load) = &commands[0] else {
            panic!("load")
        };
        assert_eq!(load.interval, Duration::from_secs(300));
        assert_eq!(
            load.series[0].labels[0],
            ("__name__".into(), "http_requests".into())
        );
        assert_eq!(load.series[0].points.len(), 6);
        assert_eq!(load.series[0].points[4], None);
        assert_eq!(load.series[0].points[5], Some(PointValue::Stale));
        assert_eq!(
            load.series[1].labels[0],
            ("__name__".into(), "utf8.name".into())
        );
        let Command::Eval(eval) = &commands[1] else {
            panic!("eval")
        };
        assert_eq!(eval.query, "sum by (job) (http_requests)");
        assert_eq!(eval.expects, vec![Expect::NoWarn]);
        let Command::Eval(range) = &commands[2] else {
            panic!("range")
        };
        assert_eq!(
            range.time,
            EvalTime::Range {
                start: Duration::ZERO,
                end: Duration::from_secs(600),
                step: Duration::from_secs(300)
            }
        );
        let Command::Eval(scalar) = &commands[3] else {
            panic!("scalar")
        };
        assert!(matches!(scalar.expected, Expected::Scalar(PointValue::Float(v)) if v.is_nan()));
        let Command::Eval(fail) = &commands[4] else {
            panic!("fail")
        };
        assert!(fail.expects_failure());
        let Command::Eval(msg) = &commands[5] else {
            panic!("msg")
        };
        assert_eq!(msg.query, r#"1 +  "a""#);
        assert_eq!(
            msg.expects,
            vec![Expect::Fail(Some(MessageMatch::Exact(
                "binary expression must contain only scalar and instant vector types".into()
            )))]
        );
        let Command::Eval(string) = &commands[6] else {
            panic!("string")
        };
        assert_eq!(string.expects, vec![Expect::String("Foo".into())]);
        assert_eq!(commands[7], Command::Clear);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("10s53ms").unwrap(),
            Duration::from_millis(10_053)
        );
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse_script("load 5m\n  metric{ 1 2\n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse_script("frobnicate\n").unwrap_err();
        assert_eq!(err.line, 1);
    }

    /// Every upstream script parses (when the suite is next to the
    /// checkout, as in the development workspace).
    #[test]
    fn upstream_suite_parses() {
        let dir = std::env::var("COMET_PROMQLTEST_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/promqltest").to_string()
        });
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("no PromQL test suite at {dir}; skipping");
            return;
        };
        let mut files = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "test") {
                let text = std::fs::read_to_string(&path).unwrap();
                let commands = match parse_script(&text) {
                    Ok(commands) => commands,
                    Err(err) => panic!("{}: {err}", path.display()),
                };
                // Every eval line became an eval command.
                let written = text
                    .lines()
                    .filter(|l| {
                        l.split_whitespace()
                            .next()
                            .is_some_and(|w| w.starts_with("eval"))
                    })
                    .count();
                let parsed = commands
                    .iter()
                    .filter(|c| matches!(c, Command::Eval(_)))
                    .count();
                assert_eq!(parsed, written, "{}", path.display());
                files += 1;
            }
        }
        assert!(files > 0, "no .test files in {dir}");
    }
}
