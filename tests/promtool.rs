//! `promtool query` (Debian's `prometheus` package) against Comet and
//! against a real Prometheus holding the same data: every command must
//! succeed on both and print the same answer.

mod common;

use std::process::Command;

use common::api::{ApiComet, POINTS, SCRAPE_MS, fixture, now_ms, write_to};
use common::peers::Prometheus;

/// Runs promtool; returns its stdout, failing on a non-zero exit.
fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .output()
        .expect("run promtool (scripts/install-peers.sh installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "promtool {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Output lines in a stable order (Prometheus does not sort aggregations).
fn lines(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text.lines().map(str::to_string).collect();
    out.sort();
    out
}

/// Both answers say the same: the same text, except that numbers may
/// differ in the last bits (Prometheus's own test suite allows 1e-6
/// relative; floating-point sums in another order differ by ~1e-16).
fn assert_agree(comet: &[String], prometheus: &[String], what: &str) {
    assert_eq!(
        comet.len(),
        prometheus.len(),
        "{what}:\n{comet:#?}\n{prometheus:#?}"
    );
    for (a, b) in comet.iter().zip(prometheus) {
        let (ta, tb): (Vec<&str>, Vec<&str>) = (
            a.split_whitespace().collect(),
            b.split_whitespace().collect(),
        );
        let same = ta.len() == tb.len()
            && ta.iter().zip(&tb).all(|(x, y)| {
                x == y
                    || match (x.parse::<f64>(), y.parse::<f64>()) {
                        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                        _ => false,
                    }
            });
        assert!(same, "{what}: Comet says {a:?}, Prometheus says {b:?}");
    }
}

#[tokio::test]
async fn promtool_queries_agree_with_prometheus() {
    let comet = ApiComet::start(&[]).await;
    let mut prometheus = Prometheus::start_with_args(
        "global:\n  scrape_interval: 15s\n",
        &["--web.enable-remote-write-receiver"],
    );
    prometheus.wait_ready().await;

    let end = now_ms() - 5_000;
    let data = fixture(end);
    comet.write(&data).await;
    write_to(
        &comet.client,
        &format!("{}/api/v1/write", prometheus.url()),
        &data,
    )
    .await;
    let end = end - end % 1000;
    let time = format!("{}", end / 1000);
    let start = format!("{}", (end - (POINTS - 1) * SCRAPE_MS) / 1000);
    let recent = format!("{}", (end - 10 * 60_000) / 1000);
    let servers = [comet.url(""), prometheus.url()];

    let instant = [
        "http_requests_total",
        "sum by (code) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        "temperature_celsius > 20",
        "topk(2, http_requests_total)",
        "1 + 1",
    ];
    let mut compared = 0;
    for query in instant {
        let answers: Vec<String> = servers
            .iter()
            .map(|s| promtool(&["query", "instant", "--time", &time, s, query]))
            .collect();
        assert!(!answers[0].trim().is_empty(), "{query}: empty answer");
        assert_agree(
            &lines(&answers[0]),
            &lines(&answers[1]),
            &format!("query instant {query}"),
        );
        compared += 1;
    }
    let ranges = [
        "rate(http_requests_total[2m])",
        "avg_over_time(temperature_celsius[5m])",
        "sum(increase(request_duration_seconds_count[1m]))",
    ];
    for query in ranges {
        let answers: Vec<String> = servers
            .iter()
            .map(|s| {
                promtool(&[
                    "query", "range", "--start", &recent, "--end", &time, "--step", "1m", s, query,
                ])
            })
            .collect();
        assert!(!answers[0].trim().is_empty(), "{query}: empty answer");
        let unsorted = |t: &str| t.lines().map(str::to_string).collect::<Vec<_>>();
        assert_agree(
            &unsorted(&answers[0]),
            &unsorted(&answers[1]),
            &format!("query range {query}"),
        );
        compared += 1;
    }
    for matcher in [
        "http_requests_total",
        "{job=\"api\"}",
        "{__name__=~\"temp.*\"}",
    ] {
        let answers: Vec<String> = servers
            .iter()
            .map(|s| {
                promtool(&[
                    "query", "series", "--match", matcher, "--start", &start, "--end", &time, s,
                ])
            })
            .collect();
        assert!(!answers[0].trim().is_empty(), "{matcher}: no series");
        assert_eq!(
            lines(&answers[0]),
            lines(&answers[1]),
            "query series {matcher}"
        );
        compared += 1;
    }
    for name in ["job", "__name__", "le"] {
        let answers: Vec<String> = servers
            .iter()
            .map(|s| {
                promtool(&[
                    "query", "labels", "--start", &start, "--end", &time, s, name,
                ])
            })
            .collect();
        assert!(!answers[0].trim().is_empty(), "{name}: no values");
        assert_eq!(answers[0], answers[1], "query labels {name}");
        compared += 1;
    }
    assert_eq!(compared, 15);
}
