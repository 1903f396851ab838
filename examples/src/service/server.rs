//! The HTTP server loop of a node: accepts connections and serves the API
//! router on each with hyper's HTTP/1.1 server, over plain TCP or, when the
//! node runs with `--tls-dir`, over TLS ([`super::https`]). Either way a
//! connection is closed when its request headers (or, over TLS, its
//! handshake) do not arrive within a bound (slow or half-sent requests,
//! idle keep-alive connections), and every request carries the
//! [`ClientIdentity`] its connection proved. Request bodies are bounded by
//! the handlers ([`ApiSettings::body_read_timeout`](super::api::ApiSettings)).
//!
//! A plain HTTP request sent to an HTTPS port is answered, in plain HTTP,
//! `400` with code `https_required` (and the connection closed) instead
//! of a failed TLS handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::https::rustls::{self, ServerConfig};
use super::https::{identity_of, ClientIdentity};

/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;
/// How long the `400 https_required` answer to a plain request on the
/// HTTPS port may take to send (and its connection may linger).
const PLAIN_ANSWER_LINGER: Duration = Duration::from_secs(2);

/// Serves `app` over plain HTTP on `listener` until `stop` fires (or is
/// dropped), then asks every open connection to finish its current request
/// and close, and returns once they have. A connection that takes longer
/// than `header_read_timeout` to send a request's headers is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    stop: oneshot::Receiver<()>,
) {
    serve_with_tls(listener, app, header_read_timeout, None, stop).await
}

/// [`serve`], over TLS with `tls` if given: each connection's handshake
/// must finish within `header_read_timeout`, and its requests carry
/// [`ClientIdentity::Verified`] if the client presented a certificate the
/// configuration verified, [`ClientIdentity::NoCertificate`] if none
/// (plain connections: [`ClientIdentity::PlainHttp`]).
pub async fn serve_with_tls(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    tls: Option<Arc<ServerConfig>>,
    stop: oneshot::Receiver<()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let (app, closing, acceptor) = (app.clone(), closing.clone(), acceptor.clone());
                    connections.spawn(async move {
                        match acceptor {
                            None => {
                                let io = TokioIo::new(stream);
                                serve_connection(io, ClientIdentity::PlainHttp, app, header_read_timeout, closing, peer)
                                    .await
                            }
                            Some(acceptor) => {
                                serve_tls_connection(stream, acceptor, app, header_read_timeout, closing, peer).await
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed; retrying in 100ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Completes the TLS handshake on `stream` (within `header_read_timeout`,
/// abandoned if the server stops meanwhile), then serves it. A client that
/// speaks plain HTTP instead gets a plain `400 https_required`.
async fn serve_tls_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    app: Router,
    header_read_timeout: Duration,
    mut closing: watch::Receiver<bool>,
    peer: SocketAddr,
) {
    let deadline = tokio::time::Instant::now() + header_read_timeout;
    // The first byte tells a TLS client from one speaking plain HTTP.
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout_at(deadline, stream.peek(&mut first)) => peeked,
        _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => return,
    };
    match peeked {
        Ok(Ok(0)) => return,
        Ok(Ok(_)) if first[0] != TLS_HANDSHAKE => {
            tracing::debug!(%peer, "plain HTTP on the HTTPS port; answering 400 https_required");
            return refuse_plain_http(stream).await;
        }
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "HTTPS connection failed"),
        Err(_) => {
            return tracing::debug!(%peer, "nothing received within the header timeout; connection closed")
        }
    }
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => accepted,
        _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => return,
    };
    match accepted {
        Ok(Ok(tls)) => {
            let identity = identity_of(tls.get_ref().1);
            tracing::trace!(%peer, ?identity, "TLS connection established");
            serve_connection(TokioIo::new(tls), identity, app, header_read_timeout, closing, peer).await
        }
        Ok(Err(e)) => {
            let bad_certificate = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
            if bad_certificate {
                // An authentication failure, like a wrong join token.
                tracing::warn!(%peer, error = %e, "refused a client certificate the cluster CA (ca.pem) does not verify");
            } else {
                tracing::debug!(%peer, error = %e, "TLS handshake failed; connection closed");
            }
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake not done within the header timeout; connection closed")
        }
    }
}

/// Writes the plain-HTTP answer to a plain request on the HTTPS port.
async fn refuse_plain_http(mut stream: TcpStream) {
    let body = r#"{"error":"this port serves HTTPS (the node runs with --tls-dir): use https://","code":"https_required"}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let refuse = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes: closing a socket with
        // unread data resets it, and the client could lose the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(PLAIN_ANSWER_LINGER, refuse).await;
}

/// Serves HTTP/1.1 on one connection until it closes, the client is too
/// slow to send a request's headers, or the server stops (`closing`: the
/// request in progress is finished first). Every request gets `identity`
/// as an extension.
async fn serve_connection<I>(
    io: TokioIo<I>,
    identity: ClientIdentity,
    app: Router,
    header_read_timeout: Duration,
    mut closing: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let app = tower::util::MapRequest::new(app, move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(identity);
        request
    });
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let done = tokio::select! {
        done = conn.as_mut() => done,
        _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = done {
        tracing::debug!(%peer, error = %e, "HTTP connection closed with an error");
    }
}
