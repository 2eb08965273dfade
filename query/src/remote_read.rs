//! `POST /api/v1/read`: Prometheus remote-read with the SAMPLES response
//! type, so a Prometheus server with `remote_read` pointed at Comet answers
//! PromQL from Comet's data, native histograms included.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use clickhouse::Row;
use comet_schema::Store;
use comet_schema::histogram::StoredHistograms;
use comet_schema::prompb::v1;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use prost::Message;
use serde::Deserialize;
use tracing::{debug, warn};

use crate::matchers::{MatchOp, Matcher, SqlCondition, to_sql};

/// Limits of the remote-read endpoint.
#[derive(Debug, Clone)]
pub struct RemoteReadSettings {
    pub max_request_bytes: usize,
    /// Most samples one request may return (Prometheus's
    /// `--storage.remote.read-sample-limit`).
    pub max_samples: usize,
}

impl Default for RemoteReadSettings {
    fn default() -> Self {
        Self {
            max_request_bytes: 4 << 20,
            max_samples: 50_000_000,
        }
    }
}

#[derive(Clone)]
struct RemoteRead {
    store: Store,
    settings: RemoteReadSettings,
    requests: IntCounterVec,
    duration: HistogramVec,
}

/// The router serving `/api/v1/read`.
pub fn router(
    store: Store,
    settings: RemoteReadSettings,
    registry: &Registry,
) -> prometheus::Result<Router> {
    let requests = IntCounterVec::new(
        Opts::new(
            "comet_remote_read_requests_total",
            "Remote-read requests by status.",
        ),
        &["status"],
    )?;
    let duration = HistogramVec::new(
        HistogramOpts::new(
            "comet_remote_read_duration_seconds",
            "Time to answer one remote-read request.",
        ),
        &["status"],
    )?;
    registry.register(Box::new(requests.clone()))?;
    registry.register(Box::new(duration.clone()))?;
    Ok(Router::new()
        .route("/api/v1/read", post(handle))
        .with_state(RemoteRead {
            store,
            settings,
            requests,
            duration,
        }))
}

/// A failed read: status and one-line message.
struct ReadError(StatusCode, String);

async fn handle(State(rr): State<RemoteRead>, body: Body) -> Response {
    let started = Instant::now();
    let result = rr.read(body).await;
    let response = match result {
        Ok(body) => {
            let mut response = body.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            );
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
            response
        }
        Err(ReadError(status, message)) => {
            debug!(%status, %message, "remote-read refused");
            (status, format!("{message}\n")).into_response()
        }
    };
    let status = response.status();
    rr.requests.with_label_values(&[status.as_str()]).inc();
    rr.duration
        .with_label_values(&[status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// One series of a query's result, as ClickHouse returns it.
#[derive(Debug, Row, Deserialize)]
struct SeriesPoints {
    labels: Vec<(String, String)>,
    points: Vec<(i64, f64)>,
}

impl RemoteRead {
    async fn read(&self, body: Body) -> Result<Vec<u8>, ReadError> {
        let bad = |m: String| ReadError(StatusCode::BAD_REQUEST, m);
        let body = axum::body::to_bytes(body, self.settings.max_request_bytes)
            .await
            .map_err(|_| {
                ReadError(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body is over the limit of {} bytes",
                        self.settings.max_request_bytes
                    ),
                )
            })?;
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&body)
            .map_err(|e| bad(format!("body is not valid snappy: {e}")))?;
        let request = v1::ReadRequest::decode(raw.as_slice())
            .map_err(|e| bad(format!("body is not a valid prometheus.ReadRequest: {e}")))?;
        let samples_ok = request.accepted_response_types.is_empty()
            || request
                .accepted_response_types
                .contains(&(v1::ResponseType::Samples as i32));
        if !samples_ok {
            return Err(bad(
                "only the SAMPLES response type is supported; STREAMED_XOR_CHUNKS is not".into(),
            ));
        }
        let mut results = Vec::with_capacity(request.queries.len());
        let mut total = 0usize;
        for query in &request.queries {
            let series = self.run(query).await?;
            total += series.iter().map(|s| s.samples.len()).sum::<usize>();
            if total > self.settings.max_samples {
                return Err(ReadError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "exceeded sample limit ({}); narrow the time range or the matchers",
                        self.settings.max_samples
                    ),
                ));
            }
            results.push(v1::QueryResult { timeseries: series });
        }
        let response = v1::ReadResponse { results }.encode_to_vec();
        snap::raw::Encoder::new()
            .compress_vec(&response)
            .map_err(|e| ReadError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    }

    /// One query as one SQL statement: matching series from `series` (by
    /// day), their samples in the range, deduplicated by timestamp.
    async fn run(&self, query: &v1::Query) -> Result<Vec<v1::TimeSeries>, ReadError> {
        let matchers: Vec<Matcher> = query
            .matchers
            .iter()
            .map(|m| {
                let op = match v1::MatchType::try_from(m.r#type) {
                    Ok(v1::MatchType::Eq) => MatchOp::Equal,
                    Ok(v1::MatchType::Neq) => MatchOp::NotEqual,
                    Ok(v1::MatchType::Re) => MatchOp::Regex,
                    Ok(v1::MatchType::Nre) => MatchOp::NotRegex,
                    Err(_) => return Err(format!("unknown matcher type {}", m.r#type)),
                };
                Ok(Matcher::new(&m.name, op, &m.value))
            })
            .collect::<Result<_, _>>()
            .map_err(|m| ReadError(StatusCode::BAD_REQUEST, m))?;
        let condition =
            to_sql(&matchers).map_err(|e| ReadError(StatusCode::BAD_REQUEST, e.to_string()))?;
        let matched = format!(
            "WITH matched AS (
                SELECT fingerprint, any(labels) AS series_labels FROM series
                WHERE date >= toDate(fromUnixTimestamp64Milli({{start:Int64}}, 'UTC'))
                  AND date <= toDate(fromUnixTimestamp64Milli({{end:Int64}}, 'UTC'))
                  AND {cond}
                GROUP BY fingerprint
            )",
            cond = condition.sql
        );
        let sql = format!(
            "{matched}
            SELECT any(m.series_labels) AS labels, arraySort(groupArray((s.timestamp_ms, s.value))) AS points
            FROM (
                SELECT fingerprint, timestamp_ms, any(value) AS value FROM samples
                WHERE fingerprint IN (SELECT fingerprint FROM matched)
                  AND timestamp_ms >= {{start:Int64}} AND timestamp_ms <= {{end:Int64}}
                GROUP BY fingerprint, timestamp_ms
            ) AS s
            INNER JOIN matched AS m ON m.fingerprint = s.fingerprint
            GROUP BY s.fingerprint
            ORDER BY labels"
        );
        // Histograms by series as columns in time order, one sample per
        // timestamp (a retried batch may have stored one twice).
        let columns = StoredHistograms::COLUMNS;
        let tuple = columns.join(", ");
        let by_time = columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("arrayMap(x -> x.{}, _sorted) AS {c}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let histogram_sql = format!(
            "{matched}
            SELECT labels, {by_time} FROM (
                SELECT any(m.series_labels) AS labels, arraySort(x -> x.1, groupArray(tuple({tuple}))) AS _sorted
                FROM (
                    SELECT fingerprint, {tuple} FROM (
                        SELECT fingerprint, timestamp_ms, start_timestamp_ms, float_histogram, schema,
                          CAST(reset_hint, 'Int8') AS reset_hint, zero_threshold, zero_count, count,
                          zero_count_float, count_float, sum, positive_index, positive_counts,
                          positive_counts_float, negative_index, negative_counts, negative_counts_float,
                          custom_values
                        FROM histograms
                        WHERE fingerprint IN (SELECT fingerprint FROM matched)
                          AND timestamp_ms >= {{start:Int64}} AND timestamp_ms <= {{end:Int64}}
                    ) LIMIT 1 BY fingerprint, timestamp_ms
                ) AS s
                INNER JOIN matched AS m ON m.fingerprint = s.fingerprint
                GROUP BY s.fingerprint
            )"
        );
        let rows: Vec<SeriesPoints> = self.fetch(&sql, query, &condition).await?;
        let histograms: Vec<StoredHistograms> =
            self.fetch(&histogram_sql, query, &condition).await?;
        let mut series: BTreeMap<Vec<(String, String)>, v1::TimeSeries> = BTreeMap::new();
        for row in rows {
            series.entry(row.labels).or_default().samples = row
                .points
                .into_iter()
                .map(|(timestamp, value)| v1::Sample { value, timestamp })
                .collect();
        }
        for row in histograms {
            let labels = row.labels.clone();
            series.entry(labels).or_default().histograms =
                row.into_histograms().iter().map(|h| h.to_wire()).collect();
        }
        Ok(series
            .into_iter()
            .map(|(labels, mut s)| {
                s.labels = labels
                    .into_iter()
                    .map(|(name, value)| v1::Label { name, value })
                    .collect();
                s.labels.sort_by(|a, b| a.name.cmp(&b.name));
                s
            })
            .collect())
    }

    /// The rows of one of a query's statements, its matchers bound.
    async fn fetch<T>(
        &self,
        sql: &str,
        query: &v1::Query,
        condition: &SqlCondition,
    ) -> Result<Vec<T>, ReadError>
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        let mut q = self
            .store
            .client()
            .query(sql)
            .param("start", query.start_timestamp_ms)
            .param("end", query.end_timestamp_ms);
        for (name, value) in &condition.params {
            q = q.param(name, value);
        }
        self.store
            .fetch_all(q, "remote-read query")
            .await
            .map_err(|e| {
                warn!(error = %e, "remote-read query failed");
                let status = if e.is_transient() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                ReadError(status, e.to_string())
            })
    }
}
