//! What is stored, rather than its values: `/api/v1/series`,
//! `/api/v1/labels`, `/api/v1/label/<name>/values`, `/api/v1/metadata`,
//! `/api/v1/query_exemplars` and `/api/v1/status/tsdb`.
//!
//! Series are found on the `series` table (one row per series per day) and
//! the time range is honoured to the hour's first and last sample through
//! `series_activity`, never rounded to days. Label values and regexes reach
//! SQL only as query parameters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::Response;
use clickhouse::Row;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::{Deserialize, Serialize};

use super::Api;
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params};
use super::respond::{
    ApiError, success, success_body, success_start, write_labels, write_list, write_time,
    write_value,
};
use crate::matchers::{Matcher, MatcherError, SqlCondition, condition, from_selector};
use crate::plan::{self, sorted_labels};

type Labels = Vec<(String, String)>;

/// Newest time a `Date` column can hold (2149-06-06), in ms.
const LAST_DATE_MS: i64 = 5_662_310_400_000;

/// A time range over the `series` table: days for the sort key, and the
/// hours of `series_activity` for the exact bounds.
fn time_filter(start: i64, end: i64) -> String {
    if start <= MIN_TIME_MS && end >= MAX_TIME_MS {
        return "1".into();
    }
    let (s, e) = (start.clamp(0, LAST_DATE_MS), end.clamp(0, LAST_DATE_MS));
    format!(
        "date >= toDate(fromUnixTimestamp64Milli(toInt64({s}), 'UTC')) \
         AND date <= toDate(fromUnixTimestamp64Milli(toInt64({e}), 'UTC')) \
         AND fingerprint IN (SELECT fingerprint FROM series_activity \
         WHERE hour >= toStartOfHour(fromUnixTimestamp64Milli(toInt64({s}), 'UTC')) \
         AND hour <= fromUnixTimestamp64Milli(toInt64({e}), 'UTC') \
         AND min_ts <= {end} AND max_ts >= {start})"
    )
}

/// The selectors of `match[]`, each a list of matchers.
fn parse_matches(values: &[&str]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    values
        .iter()
        .map(|text| match plan::parse(text) {
            Ok(Expr::VectorSelector(vs)) => {
                from_selector(&vs).map_err(|e| ApiError::bad_data(e.to_string()))
            }
            Ok(_) => Err(ApiError::bad_data(format!(
                "invalid parameter \"match[]\": {text:?} is not a series selector"
            ))),
            Err(e) => Err(ApiError::bad_data(format!(
                "invalid parameter \"match[]\": {e}"
            ))),
        })
        .collect()
}

/// `(sel1) OR (sel2) ...` over `series`, or `1` with no selectors.
fn match_filter(matches: &[Vec<Matcher>], cond: &mut SqlCondition) -> Result<String, ApiError> {
    if matches.is_empty() {
        return Ok("1".into());
    }
    let mut parts = Vec::with_capacity(matches.len());
    for m in matches {
        let sql = condition(m, cond).map_err(|e| match e {
            MatcherError::Empty | MatcherError::MatchesEverything(_) => {
                ApiError::bad_data("match[] must contain at least one non-empty matcher")
            }
            other => ApiError::bad_data(other.to_string()),
        })?;
        parts.push(format!("({sql})"));
    }
    Ok(parts.join(" OR "))
}

/// A cache key for a catalog request.
fn catalog_key(what: &str, matches: &[&str], start: i64, end: i64, limit: u64) -> String {
    let mut sorted: Vec<&str> = matches.to_vec();
    sorted.sort_unstable();
    format!(
        "{what}\u{0}{start}\u{0}{end}\u{0}{limit}\u{0}{}",
        sorted.join("\u{1}")
    )
}

/// The first `limit` results and whether more were cut off.
fn truncated<T>(mut items: Vec<T>, limit: u64) -> (Vec<T>, Vec<String>) {
    if items.len() as u64 > limit {
        items.truncate(limit as usize);
        (items, vec!["results truncated due to limit".into()])
    } else {
        (items, Vec::new())
    }
}

impl Api {
    /// The request's `limit`, bounded by `ApiLimits::max_catalog_results`.
    fn catalog_limit(&self, params: &Params) -> Result<u64, ApiError> {
        let max = self.settings.limits.max_catalog_results;
        Ok(params.limit()?.map_or(max, |l| l.min(max)))
    }

    /// `sql` with the parameters of `cond` bound.
    fn statement(&self, sql: &str, cond: &SqlCondition) -> clickhouse::query::Query {
        cond.params
            .iter()
            .fold(self.store.client().query(sql), |q, (name, value)| {
                q.param(name, value)
            })
    }

    async fn fetch_strings(&self, sql: &str, cond: &SqlCondition) -> Result<Vec<String>, ApiError> {
        #[derive(Row, Deserialize)]
        struct One {
            v: String,
        }
        let rows: Vec<One> = self
            .store
            .fetch_all(self.statement(sql, cond), "label lookup")
            .await?;
        Ok(rows.into_iter().map(|r| r.v).collect())
    }
}

/// `GET|POST /api/v1/series`.
pub async fn series(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = find_series(&api, &params).await;
    api.answer("series", started, answer)
}

async fn find_series(api: &Api, params: &Params) -> Result<Response, ApiError> {
    let raw = params.all("match[]");
    if raw.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let matches = parse_matches(&raw)?;
    let (start, end) = params.time_range()?;
    let limit = api.catalog_limit(params)?;
    let key = catalog_key("series", &raw, start, end, limit);
    let load = async {
        #[derive(Row, Deserialize)]
        struct One {
            l: Labels,
        }
        let mut cond = SqlCondition::default();
        let filter = match_filter(&matches, &mut cond)?;
        let sql = format!(
            "SELECT DISTINCT {} AS l FROM series \
             WHERE {} AND ({filter}) ORDER BY l LIMIT {}",
            sorted_labels("labels"),
            time_filter(start, end),
            limit.saturating_add(1)
        );
        let rows: Vec<One> = api
            .store
            .fetch_all(api.statement(&sql, &cond), "series lookup")
            .await?;
        Ok(Arc::new(rows.into_iter().map(|r| r.l).collect::<Vec<_>>()))
    };
    let found = api
        .caches
        .get_or_load(&api.caches.series, "series", key, load)
        .await?;
    let (list, warnings) = truncated(found.iter().collect::<Vec<_>>(), limit);
    let mut data = success_start(list.len() * 64);
    data.push('[');
    write_list(&mut data, &list, |out, labels| write_labels(out, labels));
    Ok(success_body(data, &warnings))
}

/// `GET|POST /api/v1/labels`.
pub async fn labels(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = label_lookup(&api, &params, None).await;
    api.answer("labels", started, answer)
}

/// `GET /api/v1/label/<name>/values`.
pub async fn label_values(
    State(api): State<Api>,
    Path(name): Path<String>,
    params: Params,
) -> Response {
    let started = Instant::now();
    let answer = label_lookup(&api, &params, Some(&name)).await;
    api.answer("label_values", started, answer)
}

/// Label names (`name` = None) or the values of one label.
async fn label_lookup(
    api: &Api,
    params: &Params,
    name: Option<&str>,
) -> Result<Response, ApiError> {
    let raw = params.all("match[]");
    let matches = parse_matches(&raw)?;
    let (start, end) = params.time_range()?;
    let limit = api.catalog_limit(params)?;
    let what = match name {
        Some(n) => format!("values\u{0}{n}"),
        None => "names".to_string(),
    };
    let key = catalog_key(&what, &raw, start, end, limit);
    let load = async {
        let mut cond = SqlCondition::default();
        let filter = match_filter(&matches, &mut cond)?;
        let time = time_filter(start, end);
        let fetch = limit.saturating_add(1);
        let sql = match name {
            None => format!(
                "SELECT DISTINCT arrayJoin(mapKeys(labels)) AS v FROM series \
                 WHERE {time} AND ({filter}) ORDER BY v LIMIT {fetch}"
            ),
            Some("__name__") => format!(
                "SELECT DISTINCT toString(metric_name) AS v FROM series \
                 WHERE {time} AND ({filter}) ORDER BY v LIMIT {fetch}"
            ),
            Some(n) => {
                let p = cond.param(n);
                format!(
                    "SELECT DISTINCT labels[{p}] AS v FROM series \
                     WHERE {time} AND ({filter}) AND v != '' ORDER BY v LIMIT {fetch}"
                )
            }
        };
        Ok(Arc::new(api.fetch_strings(&sql, &cond).await?))
    };
    let found = api
        .caches
        .get_or_load(&api.caches.labels, "labels", key, load)
        .await?;
    let (list, warnings) = truncated(found.iter().collect::<Vec<_>>(), limit);
    Ok(success(&list, &warnings))
}

#[derive(Serialize)]
struct MetadataEntry {
    #[serde(rename = "type")]
    metric_type: String,
    help: String,
    unit: String,
}

/// `GET /api/v1/metadata`: type, help and unit per metric family.
pub async fn metadata(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = find_metadata(&api, &params).await;
    api.answer("metadata", started, answer)
}

async fn find_metadata(api: &Api, params: &Params) -> Result<Response, ApiError> {
    #[derive(Row, Deserialize)]
    struct One {
        name: String,
        t: String,
        unit: String,
        help: String,
    }
    let limit = params.limit()?;
    let per_metric = match params.get("limit_per_metric") {
        None => None,
        Some(text) => {
            let n: i64 = text.parse().map_err(|_| {
                ApiError::bad_data(format!("cannot parse {text:?} to a valid limit_per_metric"))
            })?;
            (n > 0).then_some(n as usize)
        }
    };
    let mut cond = SqlCondition::default();
    let filter = match params.get("metric") {
        Some(metric) => format!("metric_family_name = {}", cond.param(metric)),
        None => "1".into(),
    };
    let sql = format!(
        "SELECT toString(metric_family_name) AS name, toString(type) AS t, toString(unit) AS unit, help \
         FROM metadata WHERE {filter} GROUP BY metric_family_name, type, unit, help \
         ORDER BY name, max(last_seen) DESC"
    );
    let rows: Vec<One> = api
        .store
        .fetch_all(api.statement(&sql, &cond), "metadata lookup")
        .await?;
    let mut out: BTreeMap<String, Vec<MetadataEntry>> = BTreeMap::new();
    for r in rows {
        if limit.is_some_and(|l| out.len() as u64 >= l && !out.contains_key(&r.name)) {
            break;
        }
        let entries = out.entry(r.name).or_default();
        if per_metric.is_some_and(|n| entries.len() >= n) {
            continue;
        }
        entries.push(MetadataEntry {
            metric_type: r.t,
            help: r.help,
            unit: r.unit,
        });
    }
    Ok(success(&out, &[]))
}

/// `GET|POST /api/v1/query_exemplars`: the exemplars of every series the
/// query's selectors match, within `start..=end`.
pub async fn exemplars(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = find_exemplars(&api, &params).await;
    api.answer("query_exemplars", started, answer)
}

/// The matchers of every selector in an expression.
struct SelectorMatchers(Vec<Vec<Matcher>>);

impl ExprVisitor for SelectorMatchers {
    type Error = MatcherError;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, MatcherError> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(from_selector(vs)?),
            Expr::MatrixSelector(ms) => self.0.push(from_selector(&ms.vs)?),
            _ => {}
        }
        Ok(true)
    }
}

async fn find_exemplars(api: &Api, params: &Params) -> Result<Response, ApiError> {
    #[derive(Row, Deserialize)]
    struct One {
        series_labels: Labels,
        ts: i64,
        value: f64,
        exemplar_labels: Labels,
    }
    let expr = plan::parse(params.get("query").unwrap_or_default())?;
    let (start, end) = params.time_range()?;
    let mut found = SelectorMatchers(Vec::new());
    walk_expr(&mut found, &expr).map_err(|e| ApiError::bad_data(e.to_string()))?;
    if found.0.is_empty() {
        return Ok(success(&serde_json::json!([]), &[]));
    }
    let mut cond = SqlCondition::default();
    let filter = match_filter(&found.0, &mut cond)?;
    let sql = format!(
        "SELECT m.l AS series_labels, x.timestamp_ms AS ts, x.value AS value, \
         {} AS exemplar_labels \
         FROM exemplars AS x \
         INNER JOIN (SELECT fingerprint, any({}) AS l FROM series \
                     WHERE {} AND ({filter}) GROUP BY fingerprint) AS m ON x.fingerprint = m.fingerprint \
         WHERE x.timestamp_ms >= {start} AND x.timestamp_ms <= {end} \
         ORDER BY series_labels, ts LIMIT 1 BY m.l, ts, exemplar_labels",
        sorted_labels("x.labels"),
        sorted_labels("labels"),
        time_filter(start, end)
    );
    let rows: Vec<One> = api
        .store
        .fetch_all(api.statement(&sql, &cond), "exemplar lookup")
        .await?;
    // Rows come ordered by series: one group per series.
    let groups: Vec<&[One]> = rows
        .chunk_by(|a, b| a.series_labels == b.series_labels)
        .collect();
    let mut data = success_start(rows.len() * 96);
    data.push('[');
    write_list(&mut data, &groups, |out, group| {
        out.push_str(r#"{"seriesLabels":"#);
        write_labels(out, &group[0].series_labels);
        out.push_str(r#","exemplars":["#);
        write_list(out, group, |out, r| {
            out.push_str(r#"{"labels":"#);
            write_labels(out, &r.exemplar_labels);
            out.push_str(r#","value":"#);
            write_value(out, r.value);
            out.push_str(r#","timestamp":"#);
            write_time(out, r.ts);
            out.push('}');
        });
        out.push('}');
    });
    Ok(success_body(data, &[]))
}

/// One `{name, value}` entry of the status page's lists.
#[derive(Row, Deserialize, Serialize)]
struct Stat {
    name: String,
    value: u64,
}

/// `GET /api/v1/status/tsdb`: cardinality of the series active today (UTC),
/// as Prometheus reports its head block.
pub async fn tsdb(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = tsdb_stats(&api, &params).await;
    api.answer("tsdb", started, answer)
}

/// The `limit` largest of `stats` by value (then name).
fn top(mut stats: Vec<Stat>, limit: usize) -> Vec<Stat> {
    stats.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    stats.truncate(limit);
    stats
}

async fn tsdb_stats(api: &Api, params: &Params) -> Result<Response, ApiError> {
    #[derive(Row, Deserialize)]
    struct Times {
        min_time: i64,
        max_time: i64,
    }
    #[derive(Row, Deserialize)]
    struct LabelName {
        name: String,
        values: u64,
        bytes: u64,
    }
    let limit = params.limit()?.unwrap_or(10) as usize;
    let pairs =
        "FROM series ARRAY JOIN mapKeys(labels) AS k, mapValues(labels) AS v WHERE date = today()";
    // Every metric and every label name (few), so the totals follow from
    // them; only label pairs, which are many, are cut in ClickHouse.
    let by_metric = api.store.fetch_all::<Stat>(
        api.store.client().query(
            "SELECT toString(metric_name) AS name, uniqExact(fingerprint) AS value \
             FROM series WHERE date = today() GROUP BY metric_name",
        ),
        "tsdb status",
    );
    let by_name = api.store.fetch_all::<LabelName>(
        api.store.client().query(&format!(
            "SELECT name, count() AS values, sum(length(v)) AS bytes \
             FROM (SELECT DISTINCT toString(k) AS name, v {pairs}) GROUP BY name"
        )),
        "tsdb status",
    );
    let by_pair = api.store.fetch_all::<Stat>(
        api.store.client().query(&format!(
            "SELECT concat(k, '=', v) AS name, uniqExact(fingerprint) AS value {pairs} \
             GROUP BY name ORDER BY value DESC, name LIMIT {limit}"
        )),
        "tsdb status",
    );
    let times = api.store.fetch_one::<Times>(
        api.store.client().query(
            "SELECT if(count() = 0, 0, min(min_ts)) AS min_time, if(count() = 0, 0, max(max_ts)) AS max_time \
             FROM series_activity WHERE hour >= toStartOfDay(now('UTC'))",
        ),
        "tsdb status",
    );
    let (by_metric, by_name, by_pair, times) = tokio::join!(by_metric, by_name, by_pair, times);
    let (by_metric, by_name, times) = (by_metric?, by_name?, times?);
    // A series has one metric name; a label pair is one value of one name.
    let series: u64 = by_metric.iter().map(|s| s.value).sum();
    let label_pairs: u64 = by_name.iter().map(|n| n.values).sum();
    let stat = |name: &LabelName, value: u64| Stat {
        name: name.name.clone(),
        value,
    };
    let values_by_name = by_name.iter().map(|n| stat(n, n.values)).collect();
    let bytes_by_name = by_name.iter().map(|n| stat(n, n.bytes)).collect();
    let data = serde_json::json!({
        "headStats": {
            "numSeries": series,
            "numLabelPairs": label_pairs,
            "chunkCount": 0,
            "minTime": times.min_time,
            "maxTime": times.max_time,
        },
        "seriesCountByMetricName": top(by_metric, limit),
        "labelValueCountByLabelName": top(values_by_name, limit),
        "memoryInBytesByLabelName": top(bytes_by_name, limit),
        "seriesCountByLabelValuePair": by_pair?,
    });
    Ok(success(&data, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_time_needs_no_time_filter() {
        assert_eq!(time_filter(MIN_TIME_MS, MAX_TIME_MS), "1");
        let f = time_filter(1_000_000, 2_000_000);
        assert!(f.contains("series_activity"), "{f}");
        assert!(f.contains("min_ts <= 2000000 AND max_ts >= 1000000"), "{f}");
    }

    #[test]
    fn match_sets_are_ored_and_parameterised() {
        let m = parse_matches(&["up{job=\"a'b\"}", "{__name__=~\"x.*\"}"]).unwrap();
        let mut cond = SqlCondition::default();
        let sql = match_filter(&m, &mut cond).unwrap();
        assert!(sql.contains(") OR ("), "{sql}");
        assert!(!sql.contains("a'b"), "{sql}");
        assert!(parse_matches(&["rate(x[5m])"]).is_err());
        let err = parse_matches(&["{job=\"\"}"]).unwrap_err();
        assert!(
            err.message.contains("at least one non-empty matcher"),
            "{}",
            err.message
        );
    }
}
