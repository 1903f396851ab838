//! The HTTP/JSON API of a node.
//!
//! | request | answer |
//! |---|---|
//! | `PUT /kv/{key}` (body: the value) | `200 {"key","index","previous"}` once committed and applied |
//! | `GET /kv/{key}?consistency=stale\|lease\|linearizable` | `200` with the raw value; `404` if absent; `400 bad_request` for another consistency |
//! | `DELETE /kv/{key}` | `200 {"key","index","deleted","previous"}` |
//! | `POST /kv/{key}/cas` `{"expected": string\|null, "new": string}` | `200 {"swapped": true, ..}`; `409 {"current", ..}` on mismatch |
//! | `GET /status` | this node's id, role, term, leader, indexes, configuration and read counts (`reads`) |
//! | `POST /cluster/join[?replace_address=true]` `{"id","raft_addr","api_addr"}` | registers the node's API address and adds it as a voter; `409 server_exists` if the id is a member at another raft address, unless `replace_address=true` moves it there |
//! | `PUT /cluster/nodes/{id}` `{"api_addr"}` | registers (or updates) a node's API address |
//!
//! # Authentication of cluster changes
//! `/cluster/join` and `/cluster/nodes/*` change who is a member and where
//! clients are sent, so they require the cluster's shared secret (`kv serve
//! --join-token TOKEN`, [`ApiSettings::join_token`]) as `Authorization:
//! Bearer TOKEN`: without it they answer `401 unauthorized`, with another
//! token `403 forbidden` (compared in constant time). A node started
//! without a token refuses them with `403 join_token_not_set`: secure by
//! default. Nodes send their token on their own calls (joining,
//! registering their API address, forwarding to the leader).
//!
//! With TLS on (`kv serve --tls-dir DIR`, see [`super::https`]) the API is
//! served over HTTPS and a client certificate that verifies against the
//! cluster CA (`DIR/ca.pem`) serves instead of the token: such a request
//! is authenticated whatever its `Authorization` header says, even on a
//! node started without a token. Nodes present their own certificate on
//! their calls, so a TLS cluster needs no token between its nodes. A
//! client without a certificate still needs the token (`401`/`403` as
//! above); one presenting a certificate the CA did not sign fails the TLS
//! handshake. Which of the two a request carries reaches the handlers as
//! a [`ClientIdentity`] request extension, set per connection.
//!
//! Reads are served by the node asked, never forwarded
//! ([`Raft::read`](raft::Raft::read)):
//! - `stale`: this node's state as it is (may lag, even far behind);
//! - `lease`: linearizable while clocks drift less than the configured
//!   bound: the leader answers from its lease, without a quorum round;
//!   `leader` (this parameter's old value) is an alias;
//! - `linearizable` (the default): the leader confirms its leadership with
//!   a quorum round (ReadIndex) first.
//!
//! On a follower, `lease` and `linearizable` are follower reads: the node
//! asks the leader for a read index, waits until it has applied it, and
//! answers from its own state. While no leader is known such a read waits
//! for one up to the request timeout (`503 no_leader` after it).
//!
//! Writes and cluster changes that reach a follower are proxied to the leader's API (see the [module
//! docs](super)); the proxied request carries [`FORWARDED_HEADER`] and is
//! never forwarded again: a node that gets one and is not the leader
//! answers `503 not_leader`, and the forwarding node waits for the next
//! leader and retries. While no leader is known a request waits for one up
//! to the request timeout. Every answer names the node that served it in
//! [`NODE_HEADER`].
//!
//! Errors are JSON `{"error": message, "code": code}`: `400
//! bad_request`/`invalid_json`, `404 not_found`, `409 cas_mismatch`, `409
//! server_exists` (a join with an id that is a member at another address),
//! `409 stale_prev_index`, `401 unauthorized`, `403 forbidden`, `403
//! join_token_not_set` (see above), `400 https_required` (a plain HTTP
//! request to a node serving HTTPS, answered in plain HTTP by the
//! server loop), `408 request_timeout` (the body did not
//! arrive within [`ApiSettings::body_read_timeout`]), `413 value_too_large` (over `max_value_bytes`, or a
//! command larger than one raft message can carry), `504 catch_up_timeout`
//! (a joining node did not catch up in time: it stays a non-voter), `409
//! server_removed` (a joining node was removed earlier and kept its data:
//! wipe its data directory and join again), `503 no_leader` (election in progress or no quorum),
//! `503 outcome_unknown` (leadership lost with a write in flight: it may
//! or may not be applied), `503 unavailable`, `503 overloaded` (the node's
//! raft queue is full, it already forwards
//! [`ApiSettings::max_forwards`] requests, or the leader did not take a
//! forwarded request in time: retry after the `Retry-After` seconds),
//! `503 leader_unreachable` (the known leader refuses connections, e.g.
//! it just died: an election follows), `504 timeout` (a write may
//! still be applied), `500 internal`. Every `503` carries `Retry-After`.
//!
//! A forwarded request carries the time left to it ([`DEADLINE_HEADER`]),
//! so the leader gives up when the forwarding node does and the caller
//! hears within `request_timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use raft::{Raft, RaftState, ReadPolicy, Suffrage};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::client::{ApiClient, ClientError};
use super::https::ClientIdentity;
use crate::kv::{KvCommand, KvFsm, KvMap, KvResponse};

/// Header a node adds when it proxies a request to the leader; its value
/// is the forwarding node's id.
pub const FORWARDED_HEADER: &str = "x-kv-forwarded-by";
/// Header of a forwarded request: the milliseconds left before the
/// forwarding node answers its caller; the leader's deadline is the
/// smaller of this and its own `request_timeout`.
pub const DEADLINE_HEADER: &str = "x-kv-deadline-ms";
/// Seconds a `503` answer asks the caller to wait (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";
/// Time a forwarding node gives the leader past the forwarded deadline to
/// deliver its answer.
const FORWARD_GRACE: Duration = Duration::from_millis(200);
/// Header naming the node that produced a response.
pub const NODE_HEADER: &str = "x-kv-node";
/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// Largest body of a cluster request (join, register).
const MAX_CLUSTER_BODY: usize = 64 * 1024;
/// How long a waiting request sleeps at most between looks at the leader.
const POLL: Duration = Duration::from_millis(50);

/// A request the API refuses or could not complete; rendered as JSON
/// `{"error", "code"}` with the matching status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (bad key, bad query, bad field).
    #[error("{0}")]
    BadRequest(String),
    /// The body is not the JSON expected.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// The value (or body) is over the configured limit.
    #[error("{what} is too large: the limit is {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// The key does not exist.
    #[error("key {0:?} not found")]
    KeyNotFound(String),
    /// No such endpoint or server.
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this endpoint.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No leader could be found within the request timeout.
    #[error("no leader is available ({0}); an election may be in progress, retry later")]
    NoLeader(String),
    /// A forwarded request reached a node that is no longer the leader.
    #[error("this node is not the leader")]
    NotLeader,
    /// A write may or may not have been applied.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The operation did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// The node cannot serve the request right now.
    #[error("{0}")]
    Unavailable(String),
    /// The node, its forwarding or the leader is saturated: retry later.
    #[error("{0}")]
    Overloaded(String),
    /// The known leader refuses connections.
    #[error("{0}")]
    LeaderUnreachable(String),
    /// An unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
    /// The id is already a member at another raft address
    /// ([`raft::Error::ServerExists`]).
    #[error("{0}")]
    ServerExists(String),
    /// A membership change was based on an older configuration
    /// ([`raft::Error::StalePrevIndex`]).
    #[error("{0}")]
    StalePrevIndex(String),
    /// A joining server did not catch up in time and stays a non-voter
    /// ([`raft::Error::CatchUpTimeout`]).
    #[error("{0}")]
    CatchUpTimeout(String),
    /// A joining server was removed from the cluster earlier and its data
    /// directory still says so ([`raft::Error::ServerRemoved`]).
    #[error("{0}")]
    ServerRemoved(String),
    /// A cluster request without credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A cluster request with wrong credentials.
    #[error("{0}")]
    Forbidden(String),
    /// A cluster request to a node started without a join token.
    #[error("{0}")]
    JoinTokenNotSet(String),
    /// The request body did not arrive in time.
    #[error("{0}")]
    RequestTimeout(String),
}

impl ApiError {
    /// The HTTP status and the machine-readable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
            ApiError::KeyNotFound(_) | ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::NoLeader(_) => (StatusCode::SERVICE_UNAVAILABLE, "no_leader"),
            ApiError::NotLeader => (StatusCode::SERVICE_UNAVAILABLE, "not_leader"),
            ApiError::OutcomeUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::LeaderUnreachable(_) => (StatusCode::SERVICE_UNAVAILABLE, "leader_unreachable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::ServerExists(_) => (StatusCode::CONFLICT, "server_exists"),
            ApiError::StalePrevIndex(_) => (StatusCode::CONFLICT, "stale_prev_index"),
            ApiError::CatchUpTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "catch_up_timeout"),
            ApiError::ServerRemoved(_) => (StatusCode::CONFLICT, "server_removed"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::JoinTokenNotSet(_) => (StatusCode::FORBIDDEN, "join_token_not_set"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Overloaded(reason) = &self {
            super::shedding::note_shed(reason);
        } else if status.is_server_error() {
            tracing::debug!(%status, code, error = %self, "request failed");
        }
        let mut response = (status, Json(json!({ "error": self.to_string(), "code": code }))).into_response();
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may never come: do not wait for it.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        response
    }
}

impl From<raft::Error> for ApiError {
    fn from(err: raft::Error) -> Self {
        use raft::Error as E;
        match err {
            E::NotLeader { .. } => ApiError::NotLeader,
            E::LeadershipLost => ApiError::OutcomeUnknown(
                "leadership was lost while the request was in flight: it may or may not have been applied"
                    .into(),
            ),
            E::Timeout => {
                ApiError::Timeout("the operation did not finish in time; a write may still be applied".into())
            }
            E::LeadershipTransferInProgress => {
                ApiError::Unavailable("a leadership transfer is in progress; retry".into())
            }
            E::EnqueueTimeout => ApiError::Overloaded(
                "the node's request queue stayed full (raft max_queued_requests or max_uncommitted_bytes); retry later"
                    .into(),
            ),
            E::Shutdown => ApiError::Unavailable("the node is shutting down".into()),
            E::ConfigurationChangeInProgress { pending } => ApiError::Unavailable(format!(
                "another membership change is in progress ({pending}); retry once it is done"
            )),
            E::UnknownServer(id) => ApiError::NotFound(format!("unknown server {id}")),
            E::InvalidConfig(msg) => ApiError::BadRequest(msg),
            e @ E::ServerExists { .. } => ApiError::ServerExists(format!(
                "{e}; to replace that member's address on purpose, join with replace_address=true \
                 (kv serve --replace-address)"
            )),
            e @ E::StalePrevIndex { .. } => ApiError::StalePrevIndex(e.to_string()),
            e @ E::CatchUpTimeout { .. } => ApiError::CatchUpTimeout(e.to_string()),
            e @ E::ServerRemoved { .. } => ApiError::ServerRemoved(e.to_string()),
            e @ E::NotAVoter(_) => ApiError::BadRequest(e.to_string()),
            // Larger than one raft message can carry: the same answer as a
            // value over `max_value_bytes`, naming raft's limit.
            E::CommandTooLarge { max, .. } => ApiError::TooLarge { what: "the command", limit: max },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// Limits and timeouts of the API. Its `Debug` output hides the join token.
#[derive(Clone)]
pub struct ApiSettings {
    /// Largest value accepted by `PUT` and `cas`, in bytes.
    pub max_value_bytes: usize,
    /// How long a request may take, including waiting for a leader.
    pub request_timeout: Duration,
    /// The cluster's shared secret, required of `/cluster/*` requests (see
    /// the [module docs](self)). `None`: those routes are refused.
    pub join_token: Option<String>,
    /// How long a client may take to send a request's headers (also how
    /// long an idle keep-alive connection stays open); then the connection
    /// is closed.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request's body; then it gets
    /// `408 request_timeout` and the connection is closed.
    pub body_read_timeout: Duration,
    /// Requests this node forwards to the leader at once; more are
    /// answered `503 overloaded` at once (so a saturated node sheds load
    /// instead of piling up connections).
    pub max_forwards: usize,
}

impl std::fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiSettings")
            .field("max_value_bytes", &self.max_value_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("join_token", &self.join_token.as_ref().map(|_| "<redacted>"))
            .field("header_read_timeout", &self.header_read_timeout)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("max_forwards", &self.max_forwards)
            .finish()
    }
}

impl Default for ApiSettings {
    /// 1 MiB values, 5 s requests, no join token, 10 s to send headers or
    /// a body, 512 forwards at once.
    fn default() -> Self {
        Self {
            max_value_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(5),
            join_token: None,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_forwards: 512,
        }
    }
}

/// The header a cluster request carries its credentials in:
/// `Authorization: Bearer TOKEN`, or `None` if `token` cannot be a header
/// value (see [`check_join_token`]).
pub fn auth_header(token: &str) -> Option<(header::HeaderName, HeaderValue)> {
    let value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    Some((header::AUTHORIZATION, value))
}

/// Checks that `token` can serve as a join token: not empty, printable
/// ASCII without spaces (it travels in an HTTP header).
pub fn check_join_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("the join token must not be empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the join token must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Compares two byte strings in time that depends only on their lengths
/// (never on where they differ).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Checks a `/cluster/*` request's credentials against `expected`.
fn authorize(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Err(ApiError::JoinTokenNotSet(
            "this node has no join token, so it refuses cluster changes: start every node with \
             --join-token TOKEN (or KV_JOIN_TOKEN=TOKEN), the same secret on all of them"
                .into(),
        ));
    };
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::Unauthorized(
            "cluster requests need the join token: send `Authorization: Bearer TOKEN`".into(),
        ));
    };
    let token = given.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
    if constant_time_eq(token, expected.as_bytes()) {
        Ok(())
    } else {
        tracing::warn!("refused a cluster request with a wrong join token");
        Err(ApiError::Forbidden("the join token is wrong".into()))
    }
}

/// Checks a `/cluster/*` request's credentials: a client certificate the
/// connection verified ([`ClientIdentity::Verified`]) is enough; otherwise
/// the join token is required as by [`authorize`], and the error says a
/// certificate would do too when the request came over HTTPS.
fn authorize_cluster(parts: &axum::http::request::Parts, expected: Option<&str>) -> Result<(), ApiError> {
    let identity = parts.extensions.get::<ClientIdentity>().copied().unwrap_or_default();
    if identity == ClientIdentity::Verified {
        tracing::debug!(path = %parts.uri.path(), "cluster request authenticated by its client certificate");
        return Ok(());
    }
    match authorize(&parts.headers, expected) {
        Err(ApiError::Unauthorized(_)) if identity == ClientIdentity::NoCertificate => {
            Err(ApiError::Unauthorized(
                "cluster requests need the join token (`Authorization: Bearer TOKEN`) or a client \
                 certificate signed by the cluster CA (the ca.pem of --tls-dir)"
                    .into(),
            ))
        }
        Err(ApiError::JoinTokenNotSet(_)) if identity == ClientIdentity::NoCertificate => {
            Err(ApiError::JoinTokenNotSet(
                "this node has no join token: over HTTPS, cluster requests need a client certificate \
                 signed by the cluster CA (the ca.pem of --tls-dir); or start every node with \
                 --join-token TOKEN (or KV_JOIN_TOKEN=TOKEN) and send it"
                    .into(),
            ))
        }
        other => other,
    }
}

/// What the handlers share; cheap to clone.
#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

struct Inner {
    id: String,
    raft: Raft<KvFsm>,
    map: KvMap,
    nodes: KvMap,
    client: ApiClient,
    settings: ApiSettings,
    /// One permit per request being forwarded to the leader.
    forwards: Arc<tokio::sync::Semaphore>,
}

/// Where a leader-only operation runs.
enum Route {
    Local,
    Forward { leader: String, api_addr: String },
    NoLeader(String),
}

/// The result of a leader-only operation: run here, or the leader's answer.
enum Done<T> {
    Local(T),
    Forwarded(Response),
}

/// The parts of a request needed to proxy it.
struct Forward {
    method: Method,
    path: String,
    content_type: Option<HeaderValue>,
    body: Bytes,
    /// Already forwarded once: never forward again.
    forwarded: bool,
    /// May be resent after an ambiguous failure (reads).
    retry_ambiguous: bool,
    /// The forwarding node's time left ([`DEADLINE_HEADER`]), if forwarded.
    time_left: Option<Duration>,
}

impl Forward {
    fn from_parts(parts: &axum::http::request::Parts, body: Bytes) -> Self {
        Self {
            method: parts.method.clone(),
            path: parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default(),
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            body,
            forwarded: parts.headers.contains_key(FORWARDED_HEADER),
            retry_ambiguous: parts.method == Method::GET,
            time_left: parts
                .headers
                .get(DEADLINE_HEADER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_millis),
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, raft::Error>> + Send + 'a>>;

impl ApiState {
    /// State for the node `id` with its raft handle and FSM.
    pub fn new(id: impl Into<String>, raft: Raft<KvFsm>, fsm: &KvFsm, settings: ApiSettings) -> Self {
        Self::with_client(id, raft, fsm, settings, ApiClient::new())
    }

    /// [`ApiState::new`] with the client the node forwards requests to the
    /// leader with (and registers its API address through): an
    /// [`ApiClient::with_tls`] one when the cluster runs HTTPS.
    pub fn with_client(
        id: impl Into<String>,
        raft: Raft<KvFsm>,
        fsm: &KvFsm,
        settings: ApiSettings,
        client: ApiClient,
    ) -> Self {
        Self(Arc::new(Inner {
            id: id.into(),
            raft,
            map: fsm.handle(),
            nodes: fsm.nodes(),
            client,
            forwards: Arc::new(tokio::sync::Semaphore::new(settings.max_forwards.max(1))),
            settings,
        }))
    }

    fn api_addr_of(&self, id: &str) -> Option<String> {
        self.0.nodes.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    fn route(&self) -> Route {
        if self.0.raft.state() == RaftState::Leader {
            return Route::Local;
        }
        // The metrics, not `Raft::leader()`: the latter can stay `None` on a
        // node that heard from the leader before its configuration named it.
        let leader = self.0.raft.metrics().borrow().current_leader.as_ref().map(|(id, _)| id.clone());
        match leader {
            Some(leader) => match self.api_addr_of(leader.as_str()) {
                Some(api_addr) => Route::Forward { leader: leader.to_string(), api_addr },
                None => Route::NoLeader(format!("leader {leader} has not registered its API address yet")),
            },
            None => Route::NoLeader("no leader is known".into()),
        }
    }

    /// Runs `op` on this node if it leads, else proxies the request to the
    /// leader; waits for a leader (up to the request timeout) when there is
    /// none or it changes under the request.
    async fn on_leader<T, F>(&self, fwd: &Forward, op: F) -> Result<Done<T>, ApiError>
    where
        F: for<'a> Fn(&'a Raft<KvFsm>, Duration) -> BoxFuture<'a, T>,
    {
        let timeout = fwd
            .time_left
            .map_or(self.0.settings.request_timeout, |left| left.min(self.0.settings.request_timeout));
        let deadline = Instant::now() + timeout;
        let mut metrics = self.0.raft.metrics();
        let mut reason: String;
        // How the last forward to a known leader failed, if it did: at the
        // deadline this, not "no leader", is the answer.
        let mut forward_failure: Option<ApiError>;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.route() {
                Route::Local => match op(&self.0.raft, remaining).await {
                    Ok(v) => return Ok(Done::Local(v)),
                    // Refused before being queued: safe to try again.
                    Err(raft::Error::NotLeader { .. }) | Err(raft::Error::LeadershipTransferInProgress)
                        if !fwd.forwarded =>
                    {
                        reason = "leadership changed".into();
                        forward_failure = None;
                    }
                    Err(e) => return Err(e.into()),
                },
                _ if fwd.forwarded => return Err(ApiError::NotLeader),
                Route::Forward { leader, api_addr } => {
                    let Ok(_permit) = self.0.forwards.clone().try_acquire_owned() else {
                        return Err(ApiError::Overloaded(format!(
                            "this node is already forwarding {} requests to the leader; retry later or send \
                             requests to the leader ({leader}) directly",
                            self.0.settings.max_forwards
                        )));
                    };
                    let mut headers = HeaderMap::new();
                    if let Ok(v) = HeaderValue::from_str(&remaining.as_millis().to_string()) {
                        headers.insert(DEADLINE_HEADER, v);
                    }
                    if let Some(ct) = &fwd.content_type {
                        headers.insert(header::CONTENT_TYPE, ct.clone());
                    }
                    if let Ok(v) = HeaderValue::from_str(&self.0.id) {
                        headers.insert(FORWARDED_HEADER, v);
                    }
                    // The leader checks cluster requests against the same secret.
                    if let Some((name, value)) = self.0.settings.join_token.as_deref().and_then(auth_header) {
                        headers.insert(name, value);
                    }
                    // Let the leader answer (or time out) first.
                    let timeout = remaining + FORWARD_GRACE;
                    let sent = self
                        .0
                        .client
                        .send(fwd.method.clone(), &api_addr, &fwd.path, headers, fwd.body.clone(), timeout)
                        .await;
                    match sent {
                        Ok(resp)
                            if resp.status == StatusCode::SERVICE_UNAVAILABLE
                                && resp.json()["code"] == "not_leader" =>
                        {
                            reason = format!("{leader} is no longer the leader");
                            forward_failure = None;
                        }
                        Ok(resp) => {
                            let mut out = (resp.status, resp.body).into_response();
                            for name in [header::CONTENT_TYPE, header::HeaderName::from_static(NODE_HEADER)] {
                                if let Some(v) = resp.headers.get(&name) {
                                    out.headers_mut().insert(name, v.clone());
                                }
                            }
                            return Ok(Done::Forwarded(out));
                        }
                        Err(e) if e.not_sent() || fwd.retry_ambiguous => {
                            tracing::debug!(%leader, error = %e, "forwarding to the leader failed; retrying");
                            reason = format!("leader {leader} unreachable: {e}");
                            forward_failure = Some(if e.to_string().contains("refused") {
                                ApiError::LeaderUnreachable(format!(
                                    "the leader {leader} refuses connections ({e}); an election should follow"
                                ))
                            } else {
                                ApiError::Overloaded(format!(
                                    "the leader {leader} did not take the request in time ({e}); retry later"
                                ))
                            });
                        }
                        Err(ClientError::Timeout(addr)) => {
                            return Err(ApiError::Timeout(format!(
                                "the leader at {addr} did not answer in time; a write may still be applied"
                            )))
                        }
                        Err(e) => {
                            return Err(ApiError::OutcomeUnknown(format!(
                                "forwarding to the leader failed after sending ({e}); the write may or may not have been applied"
                            )))
                        }
                    }
                }
                Route::NoLeader(why) => {
                    forward_failure = None;
                    reason = why;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(forward_failure.unwrap_or(ApiError::NoLeader(reason)));
            }
            let pause = (deadline - now).min(POLL);
            if let Ok(Err(_)) = tokio::time::timeout(pause, metrics.changed()).await {
                // The node is shutting down: no leader will appear here.
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Replicates `cmd` through the leader.
    async fn write(&self, fwd: &Forward, cmd: KvCommand) -> Result<Done<(u64, KvResponse)>, ApiError> {
        let data = cmd.encode();
        self.on_leader(fwd, move |raft, timeout| {
            let data = data.clone();
            Box::pin(async move {
                let applied = raft.apply(data, timeout.max(Duration::from_millis(1))).await?;
                Ok((applied.index, applied.response))
            })
        })
        .await
    }

    /// Records this node's API address in the replicated directory (through
    /// the leader) unless it is already there.
    pub async fn register(&self, id: &str, api_addr: &str) -> Result<(), ApiError> {
        if self.api_addr_of(id).as_deref() == Some(api_addr) {
            return Ok(());
        }
        let body = serde_json::to_vec(&json!({ "api_addr": api_addr }))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let fwd = Forward {
            method: Method::PUT,
            path: format!("/cluster/nodes/{}", super::client::encode_key(id)),
            content_type: Some(HeaderValue::from_static("application/json")),
            body: body.into(),
            forwarded: false,
            retry_ambiguous: true,
            time_left: None,
        };
        let cmd = KvCommand::RegisterNode { id: id.to_owned(), api_addr: api_addr.to_owned() };
        match self.write(&fwd, cmd).await? {
            Done::Local(_) => Ok(()),
            Done::Forwarded(resp) if resp.status().is_success() => Ok(()),
            Done::Forwarded(resp) => {
                Err(ApiError::Unavailable(format!("the leader refused the registration: {}", resp.status())))
            }
        }
    }
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/kv/{key}", put(put_key).get(get_key).delete(delete_key))
        .route("/kv/{key}/cas", post(cas_key))
        .route("/status", get(status))
        .route("/cluster/join", post(join))
        .route("/cluster/nodes/{id}", put(register_node))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response_with_state(state.clone(), add_node_header))
        .with_state(state)
}

async fn add_node_header(State(state): State<ApiState>, mut response: Response) -> Response {
    if !response.headers().contains_key(NODE_HEADER) {
        if let Ok(v) = HeaderValue::from_str(&state.0.id) {
            response.headers_mut().insert(NODE_HEADER, v);
        }
    }
    response
}

/// Reads a whole body, refusing it with 413 past `limit` bytes.
async fn read_body(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    what: &'static str,
) -> Result<Bytes, ApiError> {
    let timeout = state.0.settings.body_read_timeout;
    match tokio::time::timeout(timeout, read_body_untimed(headers, body, limit, what)).await {
        Ok(read) => read,
        Err(_) => {
            Err(ApiError::RequestTimeout(format!("the request body did not arrive within {timeout:?}")))
        }
    }
}

async fn read_body_untimed(
    headers: &HeaderMap,
    mut body: Body,
    limit: usize,
    what: &'static str,
) -> Result<Bytes, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::TooLarge { what, limit });
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::TooLarge { what, limit });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn check_key(key: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(key) = key.map_err(|e| ApiError::BadRequest(format!("bad key: {e}")))?;
    if key.is_empty() {
        return Err(ApiError::BadRequest("the key must not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::BadRequest(format!("the key is longer than {MAX_KEY_BYTES} bytes")));
    }
    Ok(key)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))
}

fn applied_or_internal(response: KvResponse) -> Result<KvResponse, ApiError> {
    match response {
        KvResponse::Invalid(e) => {
            Err(ApiError::Internal(format!("the state machine rejected the command: {e}")))
        }
        other => Ok(other),
    }
}

fn previous(response: &KvResponse) -> Option<String> {
    match response {
        KvResponse::Previous(p) => p.clone(),
        KvResponse::Cas { current, .. } => current.clone(),
        KvResponse::Invalid(_) => None,
    }
}

async fn put_key(
    State(state): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = check_key(key)?;
    let (parts, body) = request.into_parts();
    let body = read_body(&state, &parts.headers, body, state.0.settings.max_value_bytes, "the value").await?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the value must be UTF-8 text".into()))?;
    let fwd = Forward::from_parts(&parts, body);
    match state.write(&fwd, KvCommand::Put { key: key.clone(), value }).await? {
        Done::Forwarded(resp) => Ok(resp),
        Done::Local((index, response)) => {
            let response = applied_or_internal(response)?;
            Ok(Json(json!({ "key": key, "index": index, "previous": previous(&response) })).into_response())
        }
    }
}

async fn delete_key(
    State(state): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = check_key(key)?;
    let (parts, _) = request.into_parts();
    let fwd = Forward::from_parts(&parts, Bytes::new());
    match state.write(&fwd, KvCommand::Delete { key: key.clone() }).await? {
        Done::Forwarded(resp) => Ok(resp),
        Done::Local((index, response)) => {
            let previous = previous(&applied_or_internal(response)?);
            Ok(Json(json!({
                "key": key, "index": index, "deleted": previous.is_some(), "previous": previous
            }))
            .into_response())
        }
    }
}

/// Body of `POST /kv/{key}/cas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    /// The value the key must have now; `null` (or absent): the key must not exist.
    #[serde(default)]
    pub expected: Option<String>,
    /// The value to set.
    pub new: String,
}

async fn cas_key(
    State(state): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = check_key(key)?;
    let limit = state.0.settings.max_value_bytes;
    let (parts, body) = request.into_parts();
    // JSON escaping can make a value up to six times longer.
    let body =
        read_body(&state, &parts.headers, body, limit.saturating_mul(12).saturating_add(4096), "the body")
            .await?;
    let cas: CasRequest = parse_json(&body)?;
    if cas.new.len() > limit || cas.expected.as_ref().is_some_and(|e| e.len() > limit) {
        return Err(ApiError::TooLarge { what: "the value", limit });
    }
    let fwd = Forward::from_parts(&parts, body);
    let expected = cas.expected.clone();
    let cmd = KvCommand::Cas { key: key.clone(), expected: cas.expected, new: cas.new };
    match state.write(&fwd, cmd).await? {
        Done::Forwarded(resp) => Ok(resp),
        Done::Local((index, response)) => match applied_or_internal(response)? {
            KvResponse::Cas { swapped: true, current } => {
                Ok(Json(json!({ "key": key, "index": index, "swapped": true, "previous": current }))
                    .into_response())
            }
            KvResponse::Cas { current, .. } => Ok((
                StatusCode::CONFLICT,
                Json(json!({
                    "error": "compare failed: the current value is not the expected one",
                    "code": "cas_mismatch",
                    "key": key,
                    "index": index,
                    "swapped": false,
                    "expected": expected,
                    "current": current,
                })),
            )
                .into_response()),
            other => Err(ApiError::Internal(format!("unexpected answer to a cas: {other:?}"))),
        },
    }
}

/// Query of `GET /kv/{key}`.
#[derive(Debug, Deserialize)]
pub struct ReadParams {
    /// `stale`, `lease`, `linearizable` (default), or `leader` (an alias
    /// of `lease`).
    pub consistency: Option<String>,
}

async fn get_key(
    State(state): State<ApiState>,
    key: Result<Path<String>, PathRejection>,
    params: Result<Query<ReadParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = check_key(key)?;
    let Query(params) = params.map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
    let read_local = |map: &KvMap| map.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
    let policy = read_policy(params.consistency.as_deref())?;
    // Every policy is served by this node: `lease` and `linearizable` reads
    // on a follower are linearizable follower reads (a read index from the
    // leader, then this node's own state once it applied it).
    if policy != ReadPolicy::Stale {
        state.read_here(policy).await?;
    }
    match read_local(&state.0.map) {
        Some(value) => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], value).into_response()),
        None => Err(ApiError::KeyNotFound(key)),
    }
}

/// The read policy a `consistency` parameter names: `stale`, `lease`,
/// `linearizable` (the default) or `leader` (the name before leases, an
/// alias of `lease`).
fn read_policy(consistency: Option<&str>) -> Result<ReadPolicy, ApiError> {
    match consistency {
        None => Ok(ReadPolicy::ReadIndex),
        Some("leader") => Ok(ReadPolicy::Lease),
        Some(name) => name.parse::<ReadPolicy>().map_err(|e| {
            ApiError::BadRequest(format!("bad consistency: {e} (leader is accepted as an alias of lease)"))
        }),
    }
}

impl ApiState {
    /// Waits until reading this node's state is valid under `policy`
    /// ([`Raft::read`]); waits for a leader (up to the request timeout)
    /// when none is known or it changes under the read.
    async fn read_here(&self, policy: ReadPolicy) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.0.settings.request_timeout;
        let mut metrics = self.0.raft.metrics();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let reason = match tokio::time::timeout(remaining, self.0.raft.read(policy)).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(
                    e @ (raft::Error::NotLeader { .. }
                    | raft::Error::LeadershipLost
                    | raft::Error::LeadershipTransferInProgress
                    | raft::Error::Transport(_)),
                )) => e.to_string(),
                Ok(Err(raft::Error::Timeout)) | Err(_) => {
                    return Err(ApiError::NoLeader(format!(
                        "no {policy} read point in time: the leader could not confirm its leadership \
                         with a quorum, or this node did not catch up with it"
                    )))
                }
                Ok(Err(e)) => return Err(e.into()),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ApiError::NoLeader(reason));
            }
            tracing::debug!(%policy, %reason, "read not served yet; waiting for a leader");
            let pause = (deadline - now).min(POLL);
            if let Ok(Err(_)) = tokio::time::timeout(pause, metrics.changed()).await {
                tokio::time::sleep(pause).await;
            }
        }
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    let m = state.0.raft.metrics().borrow().clone();
    let leader = m.current_leader.as_ref().map(|(id, addr)| {
        json!({ "id": id.as_str(), "raft_addr": addr.as_str(), "api_addr": state.api_addr_of(id.as_str()) })
    });
    let servers: Vec<_> = m
        .configuration
        .servers
        .iter()
        .map(|s| {
            json!({
                "id": s.id.as_str(),
                "raft_addr": s.address.as_str(),
                "api_addr": state.api_addr_of(s.id.as_str()),
                "suffrage": s.suffrage.to_string(),
            })
        })
        .collect();
    Json(json!({
        "id": m.id.as_str(),
        "state": m.state.to_string(),
        "term": m.term,
        "leader": leader,
        "commit_index": m.commit_index,
        "applied_index": m.applied_index,
        "last_log_index": m.last_log_index,
        "snapshot_index": m.last_snapshot_index,
        "first_index": m.first_index,
        "log_compacted_through": m.log_compacted_through,
        "cluster_id": m.cluster_id.as_ref().map(|c| c.as_str()),
        "configuration": { "index": m.configuration_index, "servers": servers },
        "reads": {
            "stale": m.reads.stale,
            "lease": m.reads.lease,
            "linearizable": m.reads.read_index,
            "lease_served": m.reads.lease_served,
            "lease_fallbacks": m.reads.lease_fallbacks,
            "follower_reads": m.reads.follower_reads,
            "follower_read_failures": m.reads.follower_read_failures,
        },
    }))
    .into_response()
}

/// Body of `POST /cluster/join`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The new node's server id.
    pub id: String,
    /// Its raft (gRPC transport) address.
    pub raft_addr: String,
    /// Its HTTP API address.
    pub api_addr: String,
}

fn check_addr(field: &str, addr: &str) -> Result<(), ApiError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ApiError::BadRequest(format!("{field} must be host:port, got {addr:?}"))),
    }
}

/// Query of `POST /cluster/join`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinParams {
    /// The id may already be a member at another raft address: move it to
    /// the new one (the old process at the old address is cut off). Without
    /// it, such a join is refused with `409 server_exists`.
    #[serde(default)]
    pub replace_address: bool,
}

async fn join(
    State(state): State<ApiState>,
    params: Result<Query<JoinParams>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(format!("bad query: {e}")))?;
    let replace = params.replace_address;
    let (parts, body) = request.into_parts();
    authorize_cluster(&parts, state.0.settings.join_token.as_deref())?;
    let body = read_body(&state, &parts.headers, body, MAX_CLUSTER_BODY, "the body").await?;
    let req: JoinRequest = parse_json(&body)?;
    if req.id.is_empty() {
        return Err(ApiError::BadRequest("id must not be empty".into()));
    }
    check_addr("raft_addr", &req.raft_addr)?;
    check_addr("api_addr", &req.api_addr)?;
    let fwd = Forward::from_parts(&parts, body);
    let register = KvCommand::RegisterNode { id: req.id.clone(), api_addr: req.api_addr.clone() }.encode();
    let (id, raft_addr) = (req.id.clone(), req.raft_addr.clone());
    let done = state
        .on_leader(&fwd, move |raft, timeout| {
            let (register, id, raft_addr) = (register.clone(), id.clone(), raft_addr.clone());
            Box::pin(async move {
                let timeout = timeout.max(Duration::from_millis(1));
                let start = Instant::now();
                let left = || timeout.saturating_sub(start.elapsed()).max(Duration::from_millis(1));
                // Refuse a duplicate id before registering its API address,
                // which would otherwise redirect the member's clients.
                let (configuration, index) = raft.get_configuration().await?;
                let existing = configuration.server(&id.as_str().into()).map(|s| s.address.clone());
                let moved = existing.as_ref().is_some_and(|a| a.as_str() != raft_addr);
                if let (true, false, Some(address)) = (moved, replace, &existing) {
                    return Err(raft::Error::ServerExists { id: id.as_str().into(), address: address.clone() });
                }
                raft.apply(register, left()).await?;
                if moved {
                    tracing::warn!(%id, from = ?existing, to = %raft_addr, "join replaces a member's raft address");
                    raft.update_address(id.as_str().into(), raft_addr.as_str().into(), index, left()).await?;
                }
                let (configuration, index) = raft.get_configuration().await?;
                let already = configuration.servers.iter().any(|s| {
                    s.id.as_str() == id && s.address.as_str() == raft_addr && s.suffrage == Suffrage::Voter
                });
                if already {
                    return Ok(index);
                }
                raft.add_voter(id.as_str().into(), raft_addr.as_str().into(), 0, left()).await
            })
        })
        .await?;
    match done {
        Done::Forwarded(resp) => Ok(resp),
        Done::Local(index) => {
            tracing::info!(id = %req.id, raft_addr = %req.raft_addr, api_addr = %req.api_addr, "node joined");
            Ok(Json(json!({ "id": req.id, "configuration_index": index })).into_response())
        }
    }
}

/// Body of `PUT /cluster/nodes/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The node's HTTP API address.
    pub api_addr: String,
}

async fn register_node(
    State(state): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = check_key(id)?;
    let (parts, body) = request.into_parts();
    authorize_cluster(&parts, state.0.settings.join_token.as_deref())?;
    let body = read_body(&state, &parts.headers, body, MAX_CLUSTER_BODY, "the body").await?;
    let req: RegisterRequest = parse_json(&body)?;
    check_addr("api_addr", &req.api_addr)?;
    let fwd = Forward::from_parts(&parts, body);
    match state
        .write(&fwd, KvCommand::RegisterNode { id: id.clone(), api_addr: req.api_addr.clone() })
        .await?
    {
        Done::Forwarded(resp) => Ok(resp),
        Done::Local((index, _)) => {
            Ok(Json(json!({ "id": id, "api_addr": req.api_addr, "index": index })).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_too_large_for_raft_is_413_naming_the_limit() {
        let err = ApiError::from(raft::Error::CommandTooLarge { size: 70 << 20, max: 64 << 20 });
        assert_eq!(err.status_and_code(), (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"));
        assert!(err.to_string().contains(&(64usize << 20).to_string()), "{err}");
    }

    #[test]
    fn a_full_queue_is_503_overloaded_with_retry_after_not_no_leader() {
        let err = ApiError::from(raft::Error::EnqueueTimeout);
        assert_eq!(err.status_and_code(), (StatusCode::SERVICE_UNAVAILABLE, "overloaded"));
        let response = err.into_response();
        assert_eq!(response.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let bad_request = ApiError::BadRequest("x".into()).into_response();
        assert!(bad_request.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_forwarded_request_carries_its_time_left_to_the_leader() {
        let request = axum::http::Request::builder()
            .method(Method::PUT)
            .uri("/kv/a")
            .header(FORWARDED_HEADER, "n2")
            .header(DEADLINE_HEADER, "1234")
            .body(())
            .expect("a valid request");
        let (parts, ()) = request.into_parts();
        let fwd = Forward::from_parts(&parts, Bytes::new());
        assert!(fwd.forwarded);
        assert_eq!(fwd.time_left, Some(Duration::from_millis(1234)));
        let (plain, ()) =
            axum::http::Request::builder().uri("/kv/a").body(()).expect("a valid request").into_parts();
        assert_eq!(Forward::from_parts(&plain, Bytes::new()).time_left, None);
    }

    #[test]
    fn debug_output_hides_the_join_token() {
        let settings = ApiSettings { join_token: Some("s3cret-value".into()), ..ApiSettings::default() };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("s3cret-value") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn cluster_requests_need_the_right_bearer_token() {
        let mut headers = HeaderMap::new();
        let code = |r: Result<(), ApiError>| r.err().map(|e| e.status_and_code());
        assert_eq!(code(authorize(&headers, None)), Some((StatusCode::FORBIDDEN, "join_token_not_set")));
        assert_eq!(
            code(authorize(&headers, Some("s3cret"))),
            Some((StatusCode::UNAUTHORIZED, "unauthorized"))
        );
        for wrong in ["Bearer s3cre", "Bearer s3cret2", "Bearer S3cret", "s3cret", "Basic s3cret"] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(wrong));
            assert_eq!(
                code(authorize(&headers, Some("s3cret"))),
                Some((StatusCode::FORBIDDEN, "forbidden")),
                "{wrong}"
            );
        }
        let (name, value) = auth_header("s3cret").expect("a valid token");
        headers.insert(name, value);
        assert!(authorize(&headers, Some("s3cret")).is_ok());
        assert!(authorize(&headers, None).is_err(), "no token configured: refused even with a header");
        assert!(
            check_join_token("").is_err()
                && check_join_token("a b").is_err()
                && check_join_token("ok-1").is_ok()
        );
    }

    #[test]
    fn a_verified_client_certificate_replaces_the_token_and_nothing_else_does() {
        let parts = |identity: Option<ClientIdentity>, token: Option<&str>| {
            let mut request = axum::http::Request::builder().uri("/cluster/join");
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let (mut parts, ()) = request.body(()).expect("a valid request").into_parts();
            if let Some(identity) = identity {
                parts.extensions.insert(identity);
            }
            parts
        };
        let code = |r: Result<(), ApiError>| r.err().map(|e| e.status_and_code().1);
        let verified = Some(ClientIdentity::Verified);
        assert!(authorize_cluster(&parts(verified, None), None).is_ok(), "no token needed on either side");
        assert!(authorize_cluster(&parts(verified, Some("wrong")), Some("s3cret")).is_ok());
        for identity in [None, Some(ClientIdentity::PlainHttp), Some(ClientIdentity::NoCertificate)] {
            assert_eq!(code(authorize_cluster(&parts(identity, None), Some("s3cret"))), Some("unauthorized"));
            assert_eq!(
                code(authorize_cluster(&parts(identity, Some("nope")), Some("s3cret"))),
                Some("forbidden")
            );
            assert_eq!(code(authorize_cluster(&parts(identity, None), None)), Some("join_token_not_set"));
            assert!(authorize_cluster(&parts(identity, Some("s3cret")), Some("s3cret")).is_ok());
        }
        let over_https = authorize_cluster(&parts(Some(ClientIdentity::NoCertificate), None), Some("s3cret"));
        assert!(over_https.err().is_some_and(|e| e.to_string().contains("client certificate")));
    }
}
