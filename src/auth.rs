//! Optional authentication on the HTTP listener: HTTP basic auth against
//! bcrypt hashes (the format of Prometheus's web config `basic_auth_users`)
//! and bearer tokens checked against their SHA-256 digests. Comet stores no
//! secret in clear.
//!
//! When any user or token is configured, every request but `/-/healthy`
//! (liveness probes carry no credentials) needs one of them; the others get
//! 401 with `WWW-Authenticate`, as Prometheus answers.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prometheus::{IntCounterVec, Opts, Registry};
use ring::digest::{Context as Digest, SHA256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tracing::{debug, error};

/// The one path served without credentials.
pub const OPEN_PATH: &str = "/-/healthy";

/// Successful basic-auth checks remembered, so bcrypt (tens of ms by
/// design) runs once per client rather than once per request.
const CACHE_ENTRIES: u64 = 10_000;
const CACHE_TTL: Duration = Duration::from_secs(300);

/// Why a request was refused; the `reason` label of
/// `comet_http_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Basic <base64 user:password>` or
    /// `Bearer <token>`.
    Malformed,
    /// A scheme Comet does not take, or one with nothing configured for it.
    UnsupportedScheme,
    /// Unknown user or wrong password.
    InvalidPassword,
    /// A token whose digest is not configured.
    InvalidToken,
}

impl Failure {
    const ALL: [Failure; 5] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::UnsupportedScheme,
        Failure::InvalidPassword,
        Failure::InvalidToken,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Failure::Missing => "missing_credentials",
            Failure::Malformed => "malformed_credentials",
            Failure::UnsupportedScheme => "unsupported_scheme",
            Failure::InvalidPassword => "invalid_password",
            Failure::InvalidToken => "invalid_token",
        }
    }
}

/// Credentials as presented in an `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// The decoded `user:password`, split at the first colon (RFC 7617).
    Basic {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Bearer(&'a [u8]),
}

/// Parses an `Authorization` header value; schemes are case-insensitive.
pub fn parse_authorization(value: &[u8]) -> Result<Credentials<'_>, Failure> {
    let value = value.trim_ascii();
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(at) => (&value[..at], value[at..].trim_ascii_start()),
        None => (value, &[][..]),
    };
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = BASE64.decode(rest).map_err(|_| Failure::Malformed)?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or(Failure::Malformed)?;
        Ok(Credentials::Basic {
            user: decoded[..colon].to_vec(),
            password: decoded[colon + 1..].to_vec(),
        })
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        if rest.is_empty() || rest.contains(&b' ') {
            return Err(Failure::Malformed);
        }
        Ok(Credentials::Bearer(rest))
    } else {
        Err(Failure::UnsupportedScheme)
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut digest = Digest::new(&SHA256);
    for part in parts {
        digest.update(part);
    }
    let mut out = [0; 32];
    out.copy_from_slice(digest.finish().as_ref());
    out
}

/// A configured token digest: 64 hex digits, either case.
pub fn parse_token_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Checks that `hash` is a bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`,
/// as htpasswd, Python's bcrypt and Go's x/crypto/bcrypt write them).
pub fn check_bcrypt_hash(hash: &str) -> Result<(), bcrypt::BcryptError> {
    bcrypt::HashParts::from_str(hash).map(|_| ())
}

/// The configured users and tokens, and the cache of checks that passed.
pub struct Auth {
    /// user -> bcrypt hash.
    users: BTreeMap<String, Arc<str>>,
    /// SHA-256 digests of the accepted tokens.
    tokens: Vec<[u8; 32]>,
    /// Checked against when the user is unknown, so an unknown user costs
    /// what a wrong password costs and timing does not tell which users exist.
    decoy_hash: Arc<str>,
    /// SHA-256 of credentials that passed bcrypt.
    verified: moka::sync::Cache<[u8; 32], ()>,
    /// bcrypt is CPU-bound: at most one check per core at a time, so a
    /// flood of bad passwords queues here rather than filling the blocking
    /// thread pool.
    bcrypt_slots: Semaphore,
    challenges: Vec<HeaderValue>,
    failures: IntCounterVec,
}

impl Auth {
    /// `None` when neither users nor tokens are configured: then the
    /// listener is open.
    pub fn new(
        users: &BTreeMap<String, String>,
        token_digests: &[String],
        registry: &Registry,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        if users.is_empty() && token_digests.is_empty() {
            return Ok(None);
        }
        // The same checks, and messages, as the configuration's.
        validate(users, token_digests)?;
        let tokens: Vec<[u8; 32]> = token_digests
            .iter()
            .filter_map(|hex| parse_token_digest(hex))
            .collect();
        let cost = users
            .values()
            .filter_map(|hash| bcrypt::HashParts::from_str(hash).ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(0);
        let decoy_hash = if users.is_empty() {
            String::new()
        } else {
            // The highest configured cost, so the decoy is never cheaper.
            bcrypt::hash(b"comet-decoy", cost).context("cannot make the decoy bcrypt hash")?
        };
        let mut challenges = Vec::new();
        if !users.is_empty() {
            challenges.push(HeaderValue::from_static("Basic"));
        }
        if !tokens.is_empty() {
            challenges.push(HeaderValue::from_static("Bearer"));
        }
        let failures = IntCounterVec::new(
            Opts::new(
                "comet_http_auth_failures_total",
                "HTTP requests refused with 401, by reason.",
            ),
            &["reason"],
        )?;
        for failure in Failure::ALL {
            failures.with_label_values(&[failure.label()]);
        }
        registry.register(Box::new(failures.clone()))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Some(Arc::new(Self {
            users: users
                .iter()
                .map(|(u, h)| (u.clone(), Arc::from(h.as_str())))
                .collect(),
            tokens,
            decoy_hash: decoy_hash.into(),
            verified: moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(CACHE_TTL)
                .build(),
            bcrypt_slots: Semaphore::new(cores),
            challenges,
            failures,
        })))
    }

    /// Whether an `Authorization` header value holds configured credentials.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Result<(), Failure> {
        let value = authorization.ok_or(Failure::Missing)?;
        match parse_authorization(value.as_bytes())? {
            Credentials::Bearer(token) => {
                if self.tokens.is_empty() {
                    return Err(Failure::UnsupportedScheme);
                }
                self.check_token(token)
            }
            Credentials::Basic { user, password } => {
                if self.users.is_empty() {
                    return Err(Failure::UnsupportedScheme);
                }
                self.check_password(user, password).await
            }
        }
    }

    fn check_token(&self, token: &[u8]) -> Result<(), Failure> {
        let digest = sha256(&[token]);
        // Every digest is compared, in constant time, so timing tells nothing
        // about how close a guess came or which token matched.
        let matched = self
            .tokens
            .iter()
            .fold(subtle::Choice::from(0), |found, t| found | t.ct_eq(&digest));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Failure::InvalidToken)
        }
    }

    async fn check_password(&self, user: Vec<u8>, password: Vec<u8>) -> Result<(), Failure> {
        // The user name cannot hold a colon, so user:password is unambiguous.
        let key = sha256(&[b"basic\0", &user, b":", &password]);
        if self.verified.contains_key(&key) {
            return Ok(());
        }
        let known = std::str::from_utf8(&user)
            .ok()
            .and_then(|u| self.users.get(u));
        let hash = known.unwrap_or(&self.decoy_hash).clone();
        let _slot = self
            .bcrypt_slots
            .acquire()
            .await
            .map_err(|_| Failure::InvalidPassword)?;
        let matched = tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash))
            .await
            .map_err(|err| {
                error!(error = %err, "bcrypt check failed");
                Failure::InvalidPassword
            })?
            .unwrap_or(false);
        if matched && known.is_some() {
            self.verified.insert(key, ());
            Ok(())
        } else {
            Err(Failure::InvalidPassword)
        }
    }

    /// 401 as Prometheus words it, with one challenge per enabled scheme.
    fn unauthorized(&self) -> Response {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Unauthorized\n",
        )
            .into_response();
        for challenge in &self.challenges {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, challenge.clone());
        }
        response
    }
}

/// `router` behind `auth`, or as it is when `auth` is `None`.
pub fn protect(router: Router, auth: Option<Arc<Auth>>) -> Router {
    match auth {
        Some(auth) => router.layer(middleware::from_fn_with_state(auth, require)),
        None => router,
    }
}

async fn require(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    if request.uri().path() == OPEN_PATH {
        return next.run(request).await;
    }
    // A copy: the request itself cannot be held across an await (its body
    // is not Sync).
    let authorization = request.headers().get(header::AUTHORIZATION).cloned();
    match auth.check(authorization.as_ref()).await {
        Ok(()) => next.run(request).await,
        Err(failure) => {
            auth.failures.with_label_values(&[failure.label()]).inc();
            debug!(
                path = request.uri().path(),
                reason = failure.label(),
                "unauthorized request"
            );
            auth.unauthorized()
        }
    }
}

/// Checks the configured users and tokens, naming the bad entry (never its
/// value: a token pasted by mistake must not reach the logs).
pub fn validate(users: &BTreeMap<String, String>, token_digests: &[String]) -> anyhow::Result<()> {
    for (user, hash) in users {
        if user.is_empty() || user.contains(':') {
            bail!("http.basic_auth_users: user {user:?} must be non-empty and without ':'");
        }
        if let Err(err) = check_bcrypt_hash(hash) {
            bail!(
                "http.basic_auth_users.{user} is not a bcrypt hash ({err}); make one with \
                 htpasswd -nBC 10 \"\" | tr -d ':\\n'"
            );
        }
    }
    for (i, hex) in token_digests.iter().enumerate() {
        if parse_token_digest(hex).is_none() {
            bail!(
                "http.bearer_tokens[{i}] is not a SHA-256 hex digest (64 hex digits); configure \
                 the output of `printf %s TOKEN | sha256sum`, never the token"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf %s s3cret | sha256sum`
    const TOKEN_DIGEST: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";

    fn basic(user: &str, password: &str) -> Option<HeaderValue> {
        let value = format!("Basic {}", BASE64.encode(format!("{user}:{password}")));
        Some(value.parse().unwrap())
    }

    fn bearer(token: &str) -> Option<HeaderValue> {
        Some(format!("Bearer {token}").parse().unwrap())
    }

    fn auth(users: &[(&str, &str)], tokens: &[&str]) -> Arc<Auth> {
        let users = users
            .iter()
            .map(|(u, h)| (u.to_string(), h.to_string()))
            .collect();
        let tokens: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        Auth::new(&users, &tokens, &Registry::new())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn parses_authorization_headers() {
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U6cDpx"),
            Ok(Credentials::Basic {
                user: b"alice".to_vec(),
                password: b"p:q".to_vec()
            })
        );
        assert_eq!(
            parse_authorization(b"basic   YWxpY2U6"),
            Ok(Credentials::Basic {
                user: b"alice".to_vec(),
                password: vec![]
            })
        );
        assert_eq!(
            parse_authorization(b"BEARER abc.def"),
            Ok(Credentials::Bearer(b"abc.def"))
        );
        assert_eq!(parse_authorization(b"Basic"), Err(Failure::Malformed));
        assert_eq!(parse_authorization(b"Basic !!!"), Err(Failure::Malformed));
        // base64 of "alice", no colon.
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U="),
            Err(Failure::Malformed)
        );
        assert_eq!(parse_authorization(b"Bearer"), Err(Failure::Malformed));
        assert_eq!(parse_authorization(b"Bearer a b"), Err(Failure::Malformed));
        assert_eq!(
            parse_authorization(b"Digest x"),
            Err(Failure::UnsupportedScheme)
        );
        assert_eq!(parse_authorization(b""), Err(Failure::UnsupportedScheme));
    }

    #[test]
    fn token_digests() {
        let digest = parse_token_digest(TOKEN_DIGEST).unwrap();
        assert_eq!(digest, sha256(&[b"s3cret".as_slice()]));
        assert_eq!(
            parse_token_digest(&TOKEN_DIGEST.to_uppercase()),
            Some(digest)
        );
        assert_eq!(parse_token_digest("s3cret"), None);
        assert_eq!(parse_token_digest(&TOKEN_DIGEST[1..]), None);
        assert_eq!(
            parse_token_digest(&format!("{}g", &TOKEN_DIGEST[1..])),
            None
        );
        // Multi-byte characters must not be sliced into.
        assert_eq!(parse_token_digest(&"é".repeat(32)), None);
    }

    #[test]
    fn validation_names_the_entry_but_not_the_value() {
        let users = BTreeMap::from([("alice".to_string(), "plain".to_string())]);
        let err = validate(&users, &[]).unwrap_err().to_string();
        assert!(err.contains("http.basic_auth_users.alice"), "{err}");
        let users = BTreeMap::from([("a:b".to_string(), bcrypt::hash("x", 4).unwrap())]);
        assert!(validate(&users, &[]).is_err());
        let err = validate(&BTreeMap::new(), &["my-plain-token".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.bearer_tokens[0]"), "{err}");
        assert!(!err.contains("my-plain-token"), "{err}");
        validate(&BTreeMap::new(), &[TOKEN_DIGEST.into()]).unwrap();
        // Every bcrypt prefix that tools write.
        for hash in [
            "$2a$04$UuTkLRZZ6QofpDOlMz32MuuxEHA43WOemOYHPz6.SjsVsyO1tDU96",
            "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie",
            "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi",
        ] {
            check_bcrypt_hash(hash).unwrap();
        }
    }

    #[test]
    fn nothing_configured_means_open() {
        assert!(
            Auth::new(&BTreeMap::new(), &[], &Registry::new())
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn checks_passwords_and_tokens() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = auth(&[("alice", &hash)], &[TOKEN_DIGEST]);
        assert_eq!(auth.check(None).await, Err(Failure::Missing));
        auth.check(basic("alice", "pw").as_ref()).await.unwrap();
        // Second time from the cache.
        auth.check(basic("alice", "pw").as_ref()).await.unwrap();
        auth.verified.run_pending_tasks();
        assert_eq!(auth.verified.entry_count(), 1);
        assert_eq!(
            auth.check(basic("alice", "wrong").as_ref()).await,
            Err(Failure::InvalidPassword)
        );
        assert_eq!(
            auth.check(basic("bob", "pw").as_ref()).await,
            Err(Failure::InvalidPassword)
        );
        auth.check(bearer("s3cret").as_ref()).await.unwrap();
        assert_eq!(
            auth.check(bearer("s3cret2").as_ref()).await,
            Err(Failure::InvalidToken)
        );
        auth.verified.run_pending_tasks();
        assert_eq!(auth.verified.entry_count(), 1);
    }

    /// A hash made by `htpasswd -nbBC 10 "" test-password` ($2y$, Apache's
    /// and Prometheus's docs' tool).
    #[tokio::test]
    async fn htpasswd_hashes_work() {
        let hash = "$2y$10$SUKSkANSExuVWB9KRFqlSOi9IXBjjq98MYACZxaFON/lcJh7hCC/6";
        let auth = auth(&[("admin", hash)], &[]);
        auth.check(basic("admin", "test-password").as_ref())
            .await
            .unwrap();
        assert_eq!(
            auth.check(basic("admin", "test-passwore").as_ref()).await,
            Err(Failure::InvalidPassword)
        );
    }

    #[tokio::test]
    async fn a_scheme_with_nothing_configured_is_refused() {
        let auth_tokens = auth(&[], &[TOKEN_DIGEST]);
        assert_eq!(
            auth_tokens.check(basic("alice", "pw").as_ref()).await,
            Err(Failure::UnsupportedScheme)
        );
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth_users = auth(&[("alice", &hash)], &[]);
        assert_eq!(
            auth_users.check(bearer("s3cret").as_ref()).await,
            Err(Failure::UnsupportedScheme)
        );
        let response = auth_users.unauthorized();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges, ["Basic"]);
    }
}
