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

/// Through `comet promqltest`: the data goes in by the ingest writer, the
/// queries through the engine and ClickHouse.
#[test]
fn adversarial_label_values_and_regexes_cannot_alter_the_sql() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("adversarial.test");
    std::fs::write(&script, ADVERSARIAL).expect("write script");
    let output = std::process::Command::new(COMET)
        .args([
            "promqltest",
            "-v",
            "--log-level",
            "warn",
            "--clickhouse-url",
        ])
        .arg(clickhouse_url())
        .arg(&script)
        .output()
        .expect("run comet promqltest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Every case passes; `-v` would list any failure with its reason.
    assert!(
        stdout.lines().any(|l| l == "13 passed, 0 failed"),
        "{stdout}\n{stderr}"
    );
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
