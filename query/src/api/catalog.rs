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
use promql_parser::parser::{Expr, VectorSelector};
use serde::{Deserialize, Serialize};

use super::Api;
use super::params::{MAX_TIME_MS, MIN_TIME_MS, Params};
use super::respond::{ApiError, success, success_raw, write_labels};
use crate::matchers::{Matcher, MatcherError, SqlCondition, condition, from_selector};
use crate::plan;

type Labels = Vec<(String, String)>;

/// The label array of a `series` row, sorted by name.
const SORTED_LABELS: &str = "CAST(arraySort(arrayZip(mapKeys(labels), mapValues(labels))), \
                             'Array(Tuple(String, String))')";

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
            Ok(Expr::VectorSelector(vs)) => selector_matchers(&vs),
            Ok(_) => Err(ApiError::bad_data(format!(
                "invalid parameter \"match[]\": {text:?} is not a series selector"
            ))),
            Err(e) => Err(ApiError::bad_data(format!(
                "invalid parameter \"match[]\": {e}"
            ))),
        })
        .collect()
}

fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>, ApiError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(ApiError::bad_data(
            "selectors with `or` between matchers are not supported",
        ));
    }
    Ok(from_selector(vs))
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
    /// The request's `limit`, bounded by `query.max_catalog_results`.
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
    let found = match api.caches.series.get(&key) {
        Some(found) => {
            api.caches.count("series", "hit");
            found
        }
        None => {
            api.caches.count("series", "miss");
            #[derive(Row, Deserialize)]
            struct One {
                l: Labels,
            }
            let mut cond = SqlCondition::default();
            let filter = match_filter(&matches, &mut cond)?;
            let sql = format!(
                "SELECT DISTINCT {SORTED_LABELS} AS l FROM series \
                 WHERE {} AND ({filter}) ORDER BY l LIMIT {}",
                time_filter(start, end),
                limit.saturating_add(1)
            );
            let rows: Vec<One> = api
                .store
                .fetch_all(api.statement(&sql, &cond), "series lookup")
                .await?;
            let found: Arc<Vec<Labels>> = Arc::new(rows.into_iter().map(|r| r.l).collect());
            api.caches.series.insert(key, found.clone());
            found
        }
    };
    let (list, warnings) = truncated(found.iter().collect::<Vec<_>>(), limit);
    let mut data = String::with_capacity(list.len() * 64 + 2);
    data.push('[');
    for (i, labels) in list.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_labels(&mut data, labels);
    }
    data.push(']');
    Ok(success_raw(&data, &warnings, &[]))
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
    if let Some(name) = name {
        if !valid_label_name(name) {
            return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
        }
    }
    let raw = params.all("match[]");
    let matches = parse_matches(&raw)?;
    let (start, end) = params.time_range()?;
    let limit = api.catalog_limit(params)?;
    let what = match name {
        Some(n) => format!("values\u{0}{n}"),
        None => "names".to_string(),
    };
    let key = catalog_key(&what, &raw, start, end, limit);
    let found = match api.caches.labels.get(&key) {
        Some(found) => {
            api.caches.count("labels", "hit");
            found
        }
        None => {
            api.caches.count("labels", "miss");
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
            let found = Arc::new(api.fetch_strings(&sql, &cond).await?);
            api.caches.labels.insert(key, found.clone());
            found
        }
    };
    let (list, warnings) = truncated(found.iter().collect::<Vec<_>>(), limit);
    Ok(success(&list, &warnings))
}

/// Prometheus's label-name rule (`[a-zA-Z_][a-zA-Z0-9_]*`), or any UTF-8
/// name as Prometheus 3 allows, as long as it is not empty.
fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
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

/// Every vector selector in an expression.
fn selectors<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
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
    let query = params.get("query").unwrap_or_default();
    let expr = plan::parse(query).map_err(|e| ApiError::bad_data(e.to_string()))?;
    let (start, end) = params.time_range()?;
    let mut found = Vec::new();
    selectors(&expr, &mut found);
    if found.is_empty() {
        return Ok(success_raw("[]", &[], &[]));
    }
    let matches = found
        .into_iter()
        .map(selector_matchers)
        .collect::<Result<Vec<_>, _>>()?;
    let mut cond = SqlCondition::default();
    let filter = match_filter(&matches, &mut cond)?;
    let (s, e) = (start.max(i64::MIN / 2), end.min(i64::MAX / 2));
    let sql = format!(
        "SELECT m.l AS series_labels, x.timestamp_ms AS ts, x.value AS value, \
         CAST(arraySort(arrayZip(mapKeys(x.labels), mapValues(x.labels))), 'Array(Tuple(String, String))') AS exemplar_labels \
         FROM exemplars AS x \
         INNER JOIN (SELECT fingerprint, any({SORTED_LABELS}) AS l FROM series \
                     WHERE {} AND ({filter}) GROUP BY fingerprint) AS m ON x.fingerprint = m.fingerprint \
         WHERE x.timestamp_ms >= {s} AND x.timestamp_ms <= {e} \
         ORDER BY series_labels, ts LIMIT 1 BY m.l, ts, exemplar_labels",
        time_filter(start, end)
    );
    let rows: Vec<One> = api
        .store
        .fetch_all(api.statement(&sql, &cond), "exemplar lookup")
        .await?;
    let mut data = String::from("[");
    let mut current: Option<&Labels> = None;
    for (i, r) in rows.iter().enumerate() {
        if current != Some(&r.series_labels) {
            if i > 0 {
                data.push_str("]},");
            }
            data.push_str(r#"{"seriesLabels":"#);
            write_labels(&mut data, &r.series_labels);
            data.push_str(r#","exemplars":["#);
            current = Some(&r.series_labels);
        } else {
            data.push(',');
        }
        data.push_str(r#"{"labels":"#);
        write_labels(&mut data, &r.exemplar_labels);
        data.push_str(r#","value":"#);
        super::respond::write_value(&mut data, r.value);
        data.push_str(r#","timestamp":"#);
        super::respond::write_time(&mut data, r.ts);
        data.push('}');
    }
    if !rows.is_empty() {
        data.push_str("]}");
    }
    data.push(']');
    Ok(success_raw(&data, &[], &[]))
}

#[derive(Serialize)]
struct Stat {
    name: String,
    value: u64,
}

#[derive(Row, Deserialize)]
struct StatRow {
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

async fn tsdb_stats(api: &Api, params: &Params) -> Result<Response, ApiError> {
    #[derive(Row, Deserialize)]
    struct Head {
        series: u64,
        pairs: u64,
    }
    #[derive(Row, Deserialize)]
    struct Times {
        min_time: i64,
        max_time: i64,
    }
    let limit = params.limit()?.unwrap_or(10);
    let today = "FROM series WHERE date = today()";
    let pairs =
        "FROM series ARRAY JOIN mapKeys(labels) AS k, mapValues(labels) AS v WHERE date = today()";
    let stat = |sql: String| {
        let q = api.store.client().query(&sql);
        async move { api.store.fetch_all::<StatRow>(q, "tsdb status").await }
    };
    let head = api.store.fetch_one::<Head>(
        api.store.client().query(&format!(
            "SELECT uniqExact(fingerprint) AS series, \
             (SELECT uniqExact(k, v) {pairs}) AS pairs {today}"
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
    let by_metric = stat(format!(
        "SELECT toString(metric_name) AS name, uniqExact(fingerprint) AS value {today} \
         GROUP BY metric_name ORDER BY value DESC, name LIMIT {limit}"
    ));
    let values_by_name = stat(format!(
        "SELECT toString(k) AS name, uniqExact(v) AS value {pairs} \
         GROUP BY k ORDER BY value DESC, name LIMIT {limit}"
    ));
    let bytes_by_name = stat(format!(
        "SELECT name, sum(length(v)) AS value FROM (SELECT DISTINCT toString(k) AS name, v {pairs}) \
         GROUP BY name ORDER BY value DESC, name LIMIT {limit}"
    ));
    let by_pair = stat(format!(
        "SELECT concat(k, '=', v) AS name, uniqExact(fingerprint) AS value {pairs} \
         GROUP BY name ORDER BY value DESC, name LIMIT {limit}"
    ));
    let (head, times, by_metric, values_by_name, bytes_by_name, by_pair) = tokio::join!(
        head,
        times,
        by_metric,
        values_by_name,
        bytes_by_name,
        by_pair
    );
    let (head, times) = (head?, times?);
    let list = |rows: Vec<StatRow>| -> Vec<Stat> {
        rows.into_iter()
            .map(|r| Stat {
                name: r.name,
                value: r.value,
            })
            .collect()
    };
    let data = serde_json::json!({
        "headStats": {
            "numSeries": head.series,
            "numLabelPairs": head.pairs,
            "chunkCount": 0,
            "minTime": times.min_time,
            "maxTime": times.max_time,
        },
        "seriesCountByMetricName": list(by_metric?),
        "labelValueCountByLabelName": list(values_by_name?),
        "memoryInBytesByLabelName": list(bytes_by_name?),
        "seriesCountByLabelValuePair": list(by_pair?),
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
