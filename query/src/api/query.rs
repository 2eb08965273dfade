//! `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query` and
//! `/api/v1/parse_query`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Response;
use promql_parser::parser::{Expr, Offset};
use promql_parser::util::{ExprVisitor, walk_expr};
use tracing::{debug, warn};

use comet_schema::recent_writes::{self, WrittenSince};

use super::Api;
use super::cache::{Extent, merge, up_to};
use super::format::format_query;
use super::params::Params;
use super::respond::{
    ApiError, json_size_hint, success, success_body, success_start, write_query_data,
};
use crate::engine::{QueryLimits, QueryRange, QueryStats};
use crate::plan::{self, Plan, PlanSettings};
use crate::value::QueryValue;

/// `GET|POST /api/v1/query`.
pub async fn instant(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = run_instant(&api, &params).await;
    api.answer("query", started, answer)
}

/// `GET|POST /api/v1/query_range`.
pub async fn range(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = run_range(&api, &params).await;
    api.answer("query_range", started, answer)
}

/// `GET|POST /api/v1/format_query`: the query, pretty-printed as
/// Prometheus prints it.
pub async fn format(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = parse_param(&params).map(|expr| success(&format_query(&expr), &[]));
    api.answer("format_query", started, answer)
}

/// `GET|POST /api/v1/parse_query`: the query's syntax tree as JSON.
pub async fn parse(State(api): State<Api>, params: Params) -> Response {
    let started = Instant::now();
    let answer = parse_param(&params).map(|expr| success(&expr, &[]));
    api.answer("parse_query", started, answer)
}

fn parse_param(params: &Params) -> Result<Expr, ApiError> {
    Ok(plan::parse(params.get("query").unwrap_or_default())?)
}

/// The plan settings and limits of one request: `lookback_delta` and
/// `timeout` may narrow the configured ones.
fn request_options(api: &Api, params: &Params) -> Result<(PlanSettings, QueryLimits), ApiError> {
    let mut plan = api.settings.plan.clone();
    if let Some(lookback) = params.duration("lookback_delta")? {
        if !lookback.is_zero() {
            plan.lookback_delta = lookback;
        }
    }
    let limits = &api.settings.limits;
    let timeout = match params.duration("timeout")? {
        Some(t) if !t.is_zero() => t.min(limits.query_timeout),
        _ => limits.query_timeout,
    };
    Ok((
        plan,
        QueryLimits {
            timeout: Some(timeout),
            max_samples: Some(limits.max_samples),
            max_series: Some(limits.max_series),
            max_memory_bytes: Some(limits.max_memory_bytes),
        },
    ))
}

async fn run_instant(api: &Api, params: &Params) -> Result<Response, ApiError> {
    let query = params.get("query").unwrap_or_default();
    let t = params.time_or("time", plan::system_time_ms(std::time::SystemTime::now()))?;
    let (settings, limits) = request_options(api, params)?;
    let settings = api.engine.settings_now(&settings).await?;
    let range = QueryRange::instant(t);
    let plan = plan::plan(query, range.grid(), &settings)?;
    let (value, stats, elapsed) = api.execute("query", query, &plan, range, &limits).await?;
    Ok(respond(&value, params, &stats, elapsed))
}

async fn run_range(api: &Api, params: &Params) -> Result<Response, ApiError> {
    let query = params.get("query").unwrap_or_default();
    let start = params.time("start")?;
    let end = params.time("end")?;
    let step = params.duration("step")?.ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"step\": cannot parse \"\" to a valid duration")
    })?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let step_ms = step.as_millis() as i64;
    if step_ms <= 0 {
        return Err(ApiError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step_ms > api.settings.limits.max_points_per_series {
        return Err(ApiError::bad_data(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            group_thousands(api.settings.limits.max_points_per_series)
        )));
    }
    let (settings, limits) = request_options(api, params)?;
    let expr = plan::parse(query)?;
    let settings = api.engine.settings_now(&settings).await?;
    let key = cacheable(&expr).then(|| {
        format!(
            "{}\u{0}{step_ms}\u{0}{}\u{0}{expr}",
            settings.lookback_delta.as_millis(),
            start.rem_euclid(step_ms)
        )
    });
    // Before the lookup: what is written from here on is not in the cache.
    let asked_at = recent_writes::mark(api.engine.store());
    let look_ahead = look_ahead_ms(&expr);
    let cached = match &key {
        Some(k) => api.caches.results.get(k).await,
        None => None,
    };
    // Reuse a cached extent that starts at or before this range and reaches
    // into it, as far as it is still right; compute only the steps after it.
    let usable = cached
        .and_then(|e| api.still_right(e, step_ms, look_ahead))
        .filter(|e| e.start <= start && e.end >= start - step_ms);
    let (fresh_start, result) = match &usable {
        Some(extent) if extent.end >= end => (None, "hit"),
        Some(extent) => (Some(extent.end + step_ms), "partial"),
        None => (Some(start), "miss"),
    };
    if key.is_some() {
        api.caches.count("results", result);
    }
    let (fresh, stats, elapsed) = match fresh_start {
        Some(from) => {
            let range = QueryRange {
                start_ms: from,
                end_ms: end,
                step_ms,
            };
            let plan = plan::plan_expr(&expr, query, range.grid(), &settings)?;
            api.execute("query_range", query, &plan, range, &limits)
                .await?
        }
        None => (
            QueryValue::Matrix(Vec::new()),
            QueryStats::default(),
            Duration::ZERO,
        ),
    };
    let cached_end = usable.as_ref().map(|extent| extent.end);
    let value = match (usable, fresh) {
        (Some(extent), QueryValue::Matrix(fresh)) => {
            QueryValue::Matrix(up_to(&merge(&extent.series, start, fresh), end))
        }
        (_, value) => value,
    };
    if let (Some(key), QueryValue::Matrix(series)) = (key, &value) {
        // Steps after now have no samples yet; without the sole writer's
        // notes, neither steps that late samples may still reach.
        let mut cutoff = plan::system_time_ms(std::time::SystemTime::now()) - look_ahead;
        if !api.caches.results_sole_writer {
            cutoff -= api.caches.results_freshness.as_millis() as i64;
        }
        let last_old_step = start + (cutoff.min(end) - start).div_euclid(step_ms) * step_ms;
        // Only when this answer caches more steps than the entry it used.
        if last_old_step >= start && cached_end.is_none_or(|e| last_old_step > e) {
            api.caches
                .results
                .insert(
                    key,
                    std::sync::Arc::new(Extent {
                        start,
                        end: last_old_step,
                        series: up_to(series, last_old_step),
                        as_of: asked_at,
                    }),
                )
                .await;
        }
    }
    Ok(respond(&value, params, &stats, elapsed))
}

/// Whether a range result may be cached by step: not when its values
/// depend on the request's range, which a later request with more steps
/// does not share: `@` pinning a selector or subquery to a time (`@
/// start()`, `@ end()`), the `start()`, `end()` and `range()` functions,
/// and durations written with `range()` (or `step()`).
fn cacheable(expr: &Expr) -> bool {
    struct FindRangeDependent(bool);
    impl ExprVisitor for FindRangeDependent {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            self.0 |= match expr {
                Expr::VectorSelector(vs) => vs.at.is_some(),
                Expr::MatrixSelector(ms) => ms.vs.at.is_some(),
                Expr::Subquery(sq) => sq.at.is_some(),
                Expr::Call(call) => matches!(call.func.name, "start" | "end" | "range"),
                _ => false,
            };
            Ok(!self.0)
        }
    }
    if promql_parser::parser::has_duration_params(expr) {
        return false;
    }
    let mut found = FindRangeDependent(false);
    let _ = walk_expr(&mut found, expr);
    !found.0
}

/// How far after a step the samples its answer reads may lie: the
/// negative offsets of `expr` added up (an upper bound over its nesting).
fn look_ahead_ms(expr: &Expr) -> i64 {
    struct NegativeOffsets(i64);
    impl ExprVisitor for NegativeOffsets {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let offset = match expr {
                Expr::VectorSelector(vs) => vs.offset.as_ref(),
                Expr::MatrixSelector(ms) => ms.vs.offset.as_ref(),
                Expr::Subquery(sq) => sq.offset.as_ref(),
                _ => None,
            };
            if let Some(Offset::Neg(d)) = offset {
                self.0 = self.0.saturating_add(d.as_millis() as i64);
            }
            Ok(true)
        }
    }
    let mut found = NegativeOffsets(0);
    let _ = walk_expr(&mut found, expr);
    found.0
}

/// `11000` as `11,000`, as Prometheus writes the point limit.
fn group_thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The success answer, with `stats` when the request asked for them.
fn respond(value: &QueryValue, params: &Params, stats: &QueryStats, elapsed: Duration) -> Response {
    let mut data = success_start(json_size_hint(value));
    write_query_data(&mut data, value);
    if params.get("stats").is_some() {
        data.pop();
        let seconds = elapsed.as_secs_f64();
        let _ = write!(
            data,
            r#","stats":{{"timings":{{"evalTotalTime":{seconds},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{seconds},"execQueueTime":0,"execTotalTime":{seconds}}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}}}}}}"#,
            stats.rows_read, stats.result_rows
        );
    }
    success_body(data, &[])
}

impl Api {
    /// The part of a cached extent still right now. With every write going
    /// through this process, the steps before the oldest sample written
    /// since the extent was computed (less the query's `look_ahead`);
    /// otherwise all of it (only steps past `results_freshness` were kept).
    fn still_right(
        &self,
        extent: Arc<Extent>,
        step_ms: i64,
        look_ahead: i64,
    ) -> Option<Arc<Extent>> {
        if !self.caches.results_sole_writer {
            return Some(extent);
        }
        let first_changed = match recent_writes::since(self.engine.store(), extent.as_of) {
            WrittenSince::Nothing => return Some(extent),
            WrittenSince::Oldest(ms) => ms.saturating_sub(look_ahead),
            WrittenSince::Unknown => return None,
        };
        if first_changed > extent.end {
            return Some(extent);
        }
        // The last step before the first changed sample time.
        let end = extent.start + (first_changed - 1 - extent.start).div_euclid(step_ms) * step_ms;
        (end >= extent.start).then(|| {
            Arc::new(Extent {
                start: extent.start,
                end,
                series: up_to(&extent.series, end),
                as_of: extent.as_of,
            })
        })
    }

    /// Runs a plan within `limits`, counting what ClickHouse read and
    /// logging slow queries with their PromQL and SQL; also returns how
    /// long it took.
    async fn execute(
        &self,
        endpoint: &str,
        query: &str,
        plan: &Plan,
        range: QueryRange,
        limits: &QueryLimits,
    ) -> Result<(QueryValue, QueryStats, Duration), ApiError> {
        let started = Instant::now();
        let result = self.engine.execute_limited(plan, range, limits).await;
        let elapsed = started.elapsed();
        let stats = result.as_ref().map(|(_, s)| *s).unwrap_or_default();
        self.metrics
            .rows_read
            .with_label_values(&[endpoint])
            .inc_by(stats.rows_read);
        self.metrics
            .bytes_read
            .with_label_values(&[endpoint])
            .inc_by(stats.bytes_read);
        if elapsed >= self.settings.slow_query_threshold {
            warn!(
                endpoint,
                promql = query,
                sql = %plan.sql,
                elapsed_ms = elapsed.as_millis() as u64,
                rows_read = stats.rows_read,
                bytes_read = stats.bytes_read,
                start_ms = range.start_ms,
                end_ms = range.end_ms,
                step_ms = range.step_ms,
                error = result.as_ref().err().map(|e| e.to_string()),
                "slow query"
            );
        } else {
            debug!(
                endpoint,
                promql = query,
                elapsed_ms = elapsed.as_millis() as u64,
                rows_read = stats.rows_read,
                bytes_read = stats.bytes_read,
                "query"
            );
        }
        let (value, stats) = result?;
        Ok((value, stats, elapsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_limit_is_written_like_prometheus() {
        assert_eq!(group_thousands(11_000), "11,000");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn pinned_queries_are_not_cached() {
        assert!(cacheable(&plan::parse("rate(x[5m])").unwrap()));
        assert!(!cacheable(&plan::parse("x @ start()").unwrap()));
        assert!(!cacheable(&plan::parse("x @ 100").unwrap()));
        // Values that depend on the request's range.
        assert!(!cacheable(&plan::parse("x + range()").unwrap()));
        assert!(!cacheable(&plan::parse("x - start()").unwrap()));
        assert!(!cacheable(
            &plan::parse("count_over_time(x[range()])").unwrap()
        ));
        assert!(!cacheable(
            &plan::parse("x offset min_of(range(), 1h)").unwrap()
        ));
        assert!(cacheable(
            &plan::parse("rate(x[5m] anchored) * step()").unwrap()
        ));
    }
}
