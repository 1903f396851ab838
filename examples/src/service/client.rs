//! [`ApiClient`]: a small HTTP/1.1 client (hyper-util, pooled connections)
//! for the service's own API. Nodes use it to forward requests to the
//! leader and to join a cluster; `kv demo` uses it to talk to its nodes.
//!
//! Addresses are `host:port` without a scheme: a client made with
//! [`ApiClient::with_tls`] speaks HTTPS to every address (a cluster runs
//! with `--tls-dir` on all its nodes or on none), one made with
//! [`ApiClient::new`] plain HTTP.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use bytes::Bytes;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::https::rustls::{self, pki_types::ServerName, ClientConfig};

/// How long a pooled connection may stay idle before it is closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per server; more are closed once their request ends.
pub const POOL_MAX_IDLE_PER_HOST: usize = 32;

/// Largest response body the client reads.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request could not be built (bad address or header).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No connection could be made: the request was certainly not sent.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        reason: String,
    },
    /// No complete response within the timeout: the request may have been
    /// processed.
    #[error("no response from {0} in time")]
    Timeout(String),
    /// The connection failed after the request may have been sent.
    #[error("request to {addr} failed: {reason}")]
    Failed {
        /// The address tried.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl ClientError {
    /// True if the request certainly never reached the server, so sending
    /// it again cannot apply it twice.
    pub fn not_sent(&self) -> bool {
        matches!(self, ClientError::Connect { .. } | ClientError::InvalidRequest(_))
    }
}

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl ApiResponse {
    /// The body parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A pooled HTTP/1.1 (or, [`ApiClient::with_tls`], HTTPS) client; cheap
/// to clone.
#[derive(Clone, Debug)]
pub struct ApiClient {
    inner: Client<Connector, Body>,
    https: bool,
}

impl Default for ApiClient {
    fn default() -> Self {
        Self::new()
    }
}

impl ApiClient {
    /// A client with a 2 s connect timeout whose idle pooled connections
    /// close after [`POOL_IDLE_TIMEOUT`] (at most
    /// [`POOL_MAX_IDLE_PER_HOST`] kept per server).
    pub fn new() -> Self {
        Self::with_idle_timeout(POOL_IDLE_TIMEOUT)
    }

    /// A client whose idle pooled connections close after `idle`.
    pub fn with_idle_timeout(idle: Duration) -> Self {
        Self::build(idle, None)
    }

    /// An HTTPS client: every address is reached over TLS with `tls`
    /// (which says which CA to trust and which certificate, if any, to
    /// present; see [`HttpsConfig`](super::https::HttpsConfig) and
    /// [`client_config`](super::https::client_config)); otherwise like
    /// [`ApiClient::new`].
    pub fn with_tls(tls: Arc<ClientConfig>) -> Self {
        Self::build(POOL_IDLE_TIMEOUT, Some(tls))
    }

    fn build(idle: Duration, tls: Option<Arc<ClientConfig>>) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        http.set_nodelay(true);
        // The connector sees `https://` URIs when TLS is on.
        http.enforce_http(false);
        let https = tls.is_some();
        let connector = Connector { http, tls: tls.map(TlsConnector::from) };
        // Without a timer the pool only drops expired connections when it
        // is next used for the same server: idle sockets would stay open.
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        Self { inner, https }
    }

    /// True if this client speaks HTTPS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Sends `method path` (path and query) to `addr` (`host:port`) with
    /// `headers` and `body`, and reads the whole response within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Result<ApiResponse, ClientError> {
        let scheme = if self.https { "https" } else { "http" };
        let uri = format!("{scheme}://{addr}{path}");
        let mut request = Request::builder()
            .method(method)
            .uri(&uri)
            .body(Body::from(body))
            .map_err(|e| ClientError::InvalidRequest(format!("{uri}: {e}")))?;
        request.headers_mut().extend(headers);
        let call = async {
            let response = self.inner.request(request).await.map_err(|e| {
                let reason = error_chain(&e);
                if e.is_connect() {
                    ClientError::Connect { addr: addr.to_owned(), reason }
                } else {
                    ClientError::Failed { addr: addr.to_owned(), reason }
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(Body::new(body), MAX_RESPONSE_BYTES)
                .await
                .map_err(|e| ClientError::Failed { addr: addr.to_owned(), reason: e.to_string() })?;
            Ok(ApiResponse { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(timeout, call).await.map_err(|_| ClientError::Timeout(addr.to_owned()))?
    }

    /// `GET path`.
    pub async fn get(&self, addr: &str, path: &str, timeout: Duration) -> Result<ApiResponse, ClientError> {
        self.send(Method::GET, addr, path, HeaderMap::new(), Bytes::new(), timeout).await
    }

    /// `PUT path` with a raw body.
    pub async fn put(
        &self,
        addr: &str,
        path: &str,
        body: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<ApiResponse, ClientError> {
        self.send(Method::PUT, addr, path, HeaderMap::new(), body.into(), timeout).await
    }

    /// `method path` with a JSON body.
    pub async fn send_json(
        &self,
        method: Method,
        addr: &str,
        path: &str,
        value: &impl serde::Serialize,
        timeout: Duration,
    ) -> Result<ApiResponse, ClientError> {
        let body = serde_json::to_vec(value).map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.send(method, addr, path, headers, body.into(), timeout).await
    }
}

/// Opens the client's connections: TCP, then TLS if configured.
#[derive(Clone)]
struct Connector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for Connector {
    type Response = ApiStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ApiStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.http.call(uri.clone());
        let tls = self.tls.clone();
        Box::pin(async move {
            let tcp = tcp.await?;
            let Some(tls) = tls else {
                return Ok(ApiStream::Plain(tcp));
            };
            let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))?;
            match tls.connect(name, tcp.into_inner()).await {
                Ok(stream) => Ok(ApiStream::Tls(Box::new(TokioIo::new(stream)))),
                Err(e) => Err(tls_failure(e).into()),
            }
        })
    }
}

/// Explains a failed TLS handshake; a server that does not speak TLS is
/// most likely a node started without `--tls-dir`.
fn tls_failure(e: std::io::Error) -> String {
    let plain = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidMessage(_)));
    if plain {
        format!(
            "TLS handshake failed ({e}): the server does not speak TLS; is it a node started without \
             --tls-dir? (every node of a TLS cluster needs --tls-dir)"
        )
    } else {
        format!("TLS handshake failed: {e}")
    }
}

/// A client connection: plain TCP or TLS over TCP.
enum ApiStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for ApiStream {
    fn connected(&self) -> Connected {
        match self {
            ApiStream::Plain(s) => s.connected(),
            ApiStream::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for ApiStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for ApiStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ApiStream::Plain(s) => s.is_write_vectored(),
            ApiStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ApiStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ApiStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

/// An error and its sources, joined with ": ".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Percent-encodes a key for use as one path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
