//! Request parameters as Prometheus reads them: from the URL query and,
//! for POST, a form-encoded body (whose values come first, as Go's
//! `Request.FormValue` has it); times as RFC 3339 or unix seconds,
//! durations as Prometheus durations or float seconds.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};

use super::respond::ApiError;
use crate::duration::parse_duration;

/// Smallest and largest times Prometheus accepts (`minTime`/`maxTime`,
/// the range of Go's `time.Time` in ms that fits `int64`).
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974;
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974;

/// The parameters of one request, body first.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut pairs = Vec::new();
        let query = request.uri().query().map(str::to_string);
        let is_form = request.method() == Method::POST
            && request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            // Bounded by axum's default body limit (2 MiB): a runaway body
            // is refused, not buffered.
            let body = Bytes::from_request(request, state)
                .await
                .map_err(|e| ApiError::bad_data(format!("cannot read the form body: {e}")))?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        Ok(Self { pairs })
    }
}

impl Params {
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self {
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// The first value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of a repeated parameter (`match[]`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter, or `default` when absent.
    pub fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_time(text).map_err(|e| invalid(name, e)),
        }
    }

    /// A required time parameter.
    pub fn time(&self, name: &str) -> Result<i64, ApiError> {
        let text = self.get(name).unwrap_or_default();
        parse_time(text).map_err(|e| invalid(name, e))
    }

    /// An optional duration parameter.
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ApiError> {
        self.get(name)
            .map(|text| parse_api_duration(text).map_err(|e| invalid(name, e)))
            .transpose()
    }

    /// `limit`: absent or 0 means none.
    pub fn limit(&self) -> Result<Option<u64>, ApiError> {
        let Some(text) = self.get("limit") else {
            return Ok(None);
        };
        let limit: i64 = text
            .parse()
            .map_err(|_| invalid("limit", format!("cannot parse {text:?} to a valid limit")))?;
        if limit < 0 {
            return Err(invalid("limit", "limit must be non-negative".into()));
        }
        Ok((limit > 0).then_some(limit as u64))
    }

    /// `start`/`end` of the catalog endpoints: all time by default.
    pub fn time_range(&self) -> Result<(i64, i64), ApiError> {
        let start = self.time_or("start", MIN_TIME_MS)?;
        let end = self.time_or("end", MAX_TIME_MS)?;
        if end < start {
            return Err(ApiError::bad_data(
                "end timestamp must not be before start time",
            ));
        }
        Ok((start, end))
    }
}

fn invalid(name: &str, message: String) -> ApiError {
    ApiError::bad_data(format!("invalid parameter {name:?}: {message}"))
}

/// A time as Prometheus accepts it: unix seconds (fractions rounded to the
/// millisecond) or RFC 3339; in milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let error = || format!("cannot parse {text:?} to a valid timestamp");
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(error());
        }
        let ms = (seconds * 1000.0).round();
        if ms < MIN_TIME_MS as f64 || ms > MAX_TIME_MS as f64 {
            return Err(error());
        }
        return Ok(ms as i64);
    }
    // What Prometheus's own clients send for "all time".
    match text {
        "-292273086-05-16T16:47:06Z" => return Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(MAX_TIME_MS),
        _ => {}
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| error())
}

/// A duration as Prometheus's API accepts it: float seconds or a
/// Prometheus duration (`5m`, `1h30m`).
pub fn parse_api_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        let nanos = seconds * 1e9;
        if !nanos.is_finite() || nanos >= i64::MAX as f64 || nanos <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {text:?} to a valid duration. It overflows int64"
            ));
        }
        if seconds < 0.0 {
            // Only a step can be negative, and that is refused by its caller.
            return Ok(Duration::ZERO);
        }
        return Ok(Duration::from_secs_f64(seconds));
    }
    parse_duration(text).map_err(|_| format!("cannot parse {text:?} to a valid duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_prometheus_reads_them() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.781+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("-292273086-05-16T16:47:06Z"), Ok(MIN_TIME_MS));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("2015-07-01").is_err());
    }

    #[test]
    fn durations_as_prometheus_reads_them() {
        assert_eq!(parse_api_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_api_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_api_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(
            parse_api_duration("1e30")
                .unwrap_err()
                .contains("overflows")
        );
        assert!(parse_api_duration("fast").is_err());
    }

    #[test]
    fn body_values_come_first_and_repeat() {
        let p = Params::from_pairs(&[
            ("match[]", "up"),
            ("match[]", "down"),
            ("limit", "5"),
            ("limit", "7"),
        ]);
        assert_eq!(p.all("match[]"), vec!["up", "down"]);
        assert_eq!(p.limit().unwrap(), Some(5));
        assert!(Params::from_pairs(&[("limit", "-1")]).limit().is_err());
        assert_eq!(Params::from_pairs(&[("limit", "0")]).limit().unwrap(), None);
    }
}
