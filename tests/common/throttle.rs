//! A TCP proxy on 127.0.0.1 whose client-to-server direction can be
//! slowed to a given rate: put in front of a real ClickHouse, it makes
//! every insert crawl (a saturated disk or network, as a client sees it)
//! while the server itself stays healthy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Bytes read at once when the proxy is not throttled.
const CHUNK: usize = 64 * 1024;

pub struct ThrottledProxy {
    port: u16,
    /// Client-to-server bytes per second; 0 is unlimited.
    rate: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl ThrottledProxy {
    /// Listens on a free port and forwards every connection to `upstream`
    /// (`host:port`), unthrottled until [`ThrottledProxy::throttle`].
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.parse().expect("upstream host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let rate = Arc::new(AtomicU64::new(0));
        let shared = Arc::clone(&rate);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let rate = Arc::clone(&shared);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let zero = Arc::new(AtomicU64::new(0));
                    tokio::join!(
                        pump(client_read, server_write, rate),
                        pump(server_read, client_write, zero),
                    );
                });
            }
        });
        Self { port, rate, accept }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Limits what clients send to `bytes_per_second` (0: no limit), for
    /// connections open now and later.
    pub fn throttle(&self, bytes_per_second: u64) {
        self.rate.store(bytes_per_second, Ordering::Relaxed);
    }
}

impl Drop for ThrottledProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to` until either side closes, at most `rate` bytes
/// per second when that is not 0.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, rate: Arc<AtomicU64>) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let limit = rate.load(Ordering::Relaxed);
        // A tenth of a second's worth at a time keeps the rate smooth.
        let want = if limit == 0 {
            CHUNK
        } else {
            (limit as usize / 10).clamp(1, CHUNK)
        };
        let n = match from.read(&mut buffer[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if limit > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / limit as f64)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
