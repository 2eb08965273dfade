//! The PromQL engine against a real ClickHouse: adversarial label values
//! and regexes reach ClickHouse only as parameters and cannot change the
//! statement; results still match what Prometheus returns.

mod common;

use comet_query::plan::{Grid, PlanSettings, plan};
use common::{COMET, clickhouse_url};

/// A script in the upstream promqltest format whose label values and
/// regexes would break a statement built by string concatenation.
const ADVERSARIAL: &str = r#"
load 1m
  m{v="it's"} 1+0x10
  m{v="back\\slash"} 2+0x10
  m{v="') OR 1=1 --"} 3+0x10
  m{v="{p0:String}"} 4+0x10
  m{v="new\nline"} 5+0x10
  other{v="x"} 6+0x10

eval instant at 5m m{v="it's"}
  m{v="it's"} 1

eval instant at 5m m{v="') OR 1=1 --"}
  m{v="') OR 1=1 --"} 3

eval instant at 5m m{v="{p0:String}"}
  m{v="{p0:String}"} 4

eval instant at 5m m{v="new\nline"}
  m{v="new\nline"} 5

eval instant at 5m m{v=~".*' OR '1'='1.*"}

eval instant at 5m m{v=~"'\\) OR 1=1 --"}
  m{v="') OR 1=1 --"} 3

eval instant at 5m count(m{v=~"it's|back.*"})
  {} 2

eval instant at 5m count(m{v!~"it's|back.*"})
  {} 3

eval instant at 5m sum by (v) (m{v="back\\slash"})
  {v="back\\slash"} 2

eval instant at 5m label_replace(m{v="it's"}, "dst", "$1'); DROP TABLE samples; --", "v", "(.*)")
  m{v="it's", dst="it's'); DROP TABLE samples; --"} 1

eval instant at 5m label_join(m{v="{p0:String}"}, "dst", "', '", "v", "v")
  m{v="{p0:String}", dst="{p0:String}', '{p0:String}"} 4

eval instant at 5m count(m)
  {} 5

eval instant at 5m other
  other{v="x"} 6
"#;

/// Runs `script` through `comet promqltest -v` (the data goes in by the
/// ingest writer, the queries through the engine and ClickHouse) and
/// returns its report, after checking that it succeeded.
fn promqltest(name: &str, script: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, script).expect("write script");
    let output = std::process::Command::new(COMET)
        .args([
            "promqltest",
            "-v",
            "--log-level",
            "warn",
            "--clickhouse-url",
        ])
        .arg(clickhouse_url())
        .arg(&path)
        .output()
        .expect("run comet promqltest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    format!("{stdout}\n{stderr}")
}

/// Runs `script` through [`promqltest`] and checks that all of its `cases`
/// pass (`-v` lists any failure with its reason).
fn all_pass(name: &str, script: &str, cases: usize) {
    let report = promqltest(name, script);
    let all = format!("{cases} passed, 0 failed");
    assert!(report.lines().any(|l| l == all), "{report}");
}

#[test]
fn adversarial_label_values_and_regexes_cannot_alter_the_sql() {
    all_pass("adversarial.test", ADVERSARIAL, 13);
}

/// Anchored and smoothed range vectors returned as such (Prometheus's
/// `extendFloats`): the cases of Prometheus's engine_test.go.
const EXTENDED_RANGE_VECTORS: &str = r#"
load 10s
  metric 1+1x10
  withreset 1+1x4 1+1x5
  notregular 0 5 100 2 8

eval instant at 15s metric[10s] smoothed
  expect range vector from 5s to 15s step 5s
  metric 1.5 2 2.5

eval instant at 105s metric[10s] smoothed
  expect range vector from 95s to 105s step 5s
  metric 10.5 11 11

eval instant at 45s withreset[10s] smoothed
  expect range vector from 35s to 45s step 5s
  withreset 4.5 5 3

eval instant at 10s metric[10s] anchored
  expect range vector from 0s to 10s step 10s
  metric 1 2

eval instant at 15s metric[10s] anchored
  expect range vector from 5s to 15s step 5s
  metric 1 2 2

eval instant at 105s metric[10s] anchored
  expect range vector from 95s to 105s step 5s
  metric 10 11 11

eval instant at 45s withreset[10s] anchored
  expect range vector from 35s to 45s step 5s
  withreset 4 5 5

eval instant at 30s notregular[20s] smoothed
  expect range vector from 10s to 30s step 10s
  notregular 5 100 2

eval instant at 30s notregular[20s] anchored
  expect range vector from 10s to 30s step 10s
  notregular 5 100 2
"#;

#[test]
fn anchored_and_smoothed_range_vectors_are_their_boundaries_and_inner_samples() {
    all_pass("extended.test", EXTENDED_RANGE_VECTORS, 9);
}

/// Range queries over selectors run ClickHouse's grid aggregates (instant
/// queries read rows), so these cases are evaluated over a range: the
/// line of `deriv` and `predict_linear` with an offset, a negative
/// duration and one repeated value.
const LINEAR_REGRESSION: &str = r#"
load 1m
  m 0+10x60
  c 5+0x60

eval range from 20m to 30m step 5m predict_linear(m[10m] offset 10m, 600)
  {} 300 350 400

eval range from 20m to 30m step 5m predict_linear(m[10m], -300)
  {} 150 200 250

eval range from 20m to 30m step 5m deriv(m[10m] offset 10m)
  {} 0.16666666666666666 0.16666666666666666 0.16666666666666666

eval range from 20m to 30m step 5m predict_linear(c[10m], 600)
  {} 5 5 5
"#;

#[test]
fn linear_regression_over_ranges_predicts_from_the_evaluation_time() {
    all_pass("regression.test", LINEAR_REGRESSION, 4);
}

#[test]
fn user_strings_are_parameters_not_sql() {
    let hostile = [
        "it's",
        "') OR 1=1 --",
        "back\\\\slash",
        "x'; DROP TABLE samples; --",
    ];
    for value in hostile {
        let queries = [
            format!(r#"m{{v="{value}"}}"#),
            format!(r#"m{{v=~"{value}"}}"#),
            format!(r#"label_replace(m, "dst", "{value}", "v", "(.*)")"#),
            format!(r#"count_values("{value}", m)"#),
            format!(r#"sum by (v) (m{{v!="{value}"}})"#),
        ];
        for q in &queries {
            // A value that is not a valid regex is refused before any SQL.
            let Ok(plan) = plan(q, Grid::instant(0), &PlanSettings::default()) else {
                assert!(q.contains("=~"), "{q} was refused");
                continue;
            };
            assert!(
                !plan.sql.contains(value),
                "{q}: the value reached the SQL text:\n{}",
                plan.sql
            );
            // The value travels as a parameter (possibly escaped for RE2).
            let head: String = value.chars().take(3).collect();
            assert!(
                plan.params.iter().any(|(_, p)| p.contains(&head)),
                "{q}: the value is not a parameter: {:?}",
                plan.params
            );
        }
    }
}
