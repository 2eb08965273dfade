//! Authentication and TLS on the HTTP listener, against the real `comet
//! serve`: 401 without or with wrong credentials, basic auth against a hash
//! made by `htpasswd`, bearer tokens by their SHA-256, `/-/healthy` open,
//! and HTTPS with a certificate from a CA made here (server certificate
//! only, and with client certificates required).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{CometProcess, serve_new_database};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const START: Duration = Duration::from_secs(120);

/// `htpasswd -nbBC 10 "" test-password | tr -d ':\n'`
const HASH: &str = "$2y$10$SUKSkANSExuVWB9KRFqlSOi9IXBjjq98MYACZxaFON/lcJh7hCC/6";
const PASSWORD: &str = "test-password";
/// `printf %s s3cret | sha256sum`
const TOKEN_DIGEST: &str = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";
const TOKEN: &str = "s3cret";

fn serve(extra: &[&str]) -> CometProcess {
    serve_new_database("comet_auth", extra).0
}

/// Polls `ready` (a request to `/-/ready`) until it says yes.
async fn wait_until<F, Fut>(comet: &mut CometProcess, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = comet.child.try_wait() {
            panic!("comet exited ({status}):\n{}", comet.log_text());
        }
        if ready().await {
            return;
        }
        assert!(
            started.elapsed() < START,
            "comet not ready:\n{}",
            comet.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn basic_auth_and_bearer_tokens() {
    let users = format!("admin:{HASH}");
    let mut comet = serve(&[
        "--http-basic-auth-users",
        &users,
        "--http-bearer-tokens",
        TOKEN_DIGEST,
    ]);
    let client = reqwest::Client::new();
    let ready = comet.url("/-/ready");
    wait_until(&mut comet, || {
        let request = client.get(&ready).basic_auth("admin", Some(PASSWORD));
        async move { request.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;

    // Liveness probes carry no credentials.
    let healthy = client.get(comet.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);

    // No credentials: 401 everywhere else, as Prometheus words it.
    for (method, path) in [
        ("GET", "/-/ready"),
        ("GET", "/metrics"),
        ("POST", "/api/v1/write"),
        ("POST", "/api/v1/read"),
        ("GET", "/no/such/path"),
    ] {
        let method = method.parse().unwrap();
        let response = client
            .request(method, comet.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(challenges, ["Basic", "Bearer"], "{path}");
        assert_eq!(response.text().await.unwrap(), "Unauthorized\n");
    }

    // Wrong credentials.
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    let metrics = comet.url("/metrics");
    let get = || client.get(&metrics);
    assert_eq!(status(get().basic_auth("admin", Some("wrong"))).await, 401);
    assert_eq!(
        status(get().basic_auth("nobody", Some(PASSWORD))).await,
        401
    );
    assert_eq!(status(get().bearer_auth("wrong-token")).await, 401);
    // The digest itself is not a token.
    assert_eq!(status(get().bearer_auth(TOKEN_DIGEST)).await, 401);
    assert_eq!(
        status(get().header("authorization", "Basic not-base64")).await,
        401
    );
    assert_eq!(
        status(get().header("authorization", "Digest x=y")).await,
        401
    );

    // Right credentials.
    assert_eq!(status(get().basic_auth("admin", Some(PASSWORD))).await, 200);
    assert_eq!(status(get().bearer_auth(TOKEN)).await, 200);
    assert_eq!(
        status(client.get(&ready).bearer_auth(TOKEN)).await,
        200,
        "/-/ready"
    );
    // Scheme names are case-insensitive.
    assert_eq!(
        status(get().header("authorization", format!("bearer {TOKEN}"))).await,
        200
    );

    let body = get().bearer_auth(TOKEN).send().await.unwrap();
    let body = body.text().await.unwrap();
    for line in [
        "comet_http_auth_failures_total{reason=\"missing_credentials\"} 5",
        "comet_http_auth_failures_total{reason=\"invalid_password\"} 2",
        "comet_http_auth_failures_total{reason=\"invalid_token\"} 2",
        "comet_http_auth_failures_total{reason=\"malformed_credentials\"} 1",
        "comet_http_auth_failures_total{reason=\"unsupported_scheme\"} 1",
    ] {
        assert!(body.contains(line), "{line} missing from\n{body}");
    }

    let status = comet.terminate().await;
    assert!(status.success(), "{status}\n{}", comet.log_text());
}

/// A CA, and a server and a client certificate it signed, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Comet test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, sans, usage) in [
            (
                "server",
                vec!["localhost".to_string(), "127.0.0.1".to_string()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            (
                "client",
                vec!["client.test".to_string()],
                ExtendedKeyUsagePurpose::ClientAuth,
            ),
        ] {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(
                dir.path().join(format!("{name}-key.pem")),
                key.serialize_pem(),
            )
            .unwrap();
        }
        Self {
            ca: ca.der().clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// A client that trusts the test CA, with the client certificate or not.
    fn client(&self, with_certificate: bool) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots);
        let config = if with_certificate {
            let chain = CertificateDer::pem_file_iter(self.dir.path().join("client.pem"))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(self.dir.path().join("client-key.pem")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(config)
    }
}

/// One HTTP/1.1 GET over TLS to 127.0.0.1:`port` as `localhost`; the status
/// and body, or why there was none.
async fn https_get(
    config: Arc<ClientConfig>,
    port: u16,
    path: &str,
    authorization: Option<&str>,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test]
async fn https_with_a_certificate_from_a_private_ca() {
    let pki = Pki::new();
    let (cert, key) = (pki.path("server.pem"), pki.path("server-key.pem"));
    let mut comet = serve(&["--http-tls-cert-file", &cert, "--http-tls-key-file", &key]);
    let client = pki.client(false);
    let port = comet.port;
    wait_until(&mut comet, || {
        let client = client.clone();
        async move { https_get(client, port, "/-/ready", None).await.map(|r| r.0) == Ok(200) }
    })
    .await;
    let (status, body) = https_get(client.clone(), port, "/metrics", None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("comet_build_info"), "{body}");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(comet.url("/-/healthy"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // Nor does a client that does not trust the CA.
    let untrusting = Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    );
    assert!(
        https_get(untrusting, port, "/-/healthy", None)
            .await
            .is_err()
    );
    // The listener survives both.
    assert_eq!(
        https_get(client, port, "/-/healthy", None).await,
        Ok((200, "Comet is Healthy.\n".into()))
    );

    let status = comet.terminate().await;
    assert!(status.success(), "{status}\n{}", comet.log_text());
    assert!(comet.log_text().contains("Comet stopped"));
}

#[tokio::test]
async fn client_certificates_and_a_token() {
    let pki = Pki::new();
    let (cert, key, ca) = (
        pki.path("server.pem"),
        pki.path("server-key.pem"),
        pki.path("ca.pem"),
    );
    let mut comet = serve(&[
        "--http-tls-cert-file",
        &cert,
        "--http-tls-key-file",
        &key,
        "--http-tls-client-ca-file",
        &ca,
        "--http-bearer-tokens",
        TOKEN_DIGEST,
    ]);
    let client = pki.client(true);
    let port = comet.port;
    let bearer = format!("Bearer {TOKEN}");
    wait_until(&mut comet, || {
        let (client, bearer) = (client.clone(), bearer.clone());
        async move {
            https_get(client, port, "/-/ready", Some(&bearer))
                .await
                .map(|r| r.0)
                == Ok(200)
        }
    })
    .await;
    // Certificate but no token.
    let (status, body) = https_get(client.clone(), port, "/-/ready", None)
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (401, "Unauthorized\n"));
    // A trusted server but no client certificate: no HTTP answer at all.
    let anonymous = https_get(pki.client(false), port, "/-/healthy", None).await;
    assert!(anonymous.is_err(), "{anonymous:?}");

    let status = comet.terminate().await;
    assert!(status.success(), "{status}\n{}", comet.log_text());
}
