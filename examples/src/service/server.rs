//! The HTTP server loop of a node: accepts connections and serves the API
//! router on each with hyper's HTTP/1.1 server, closing connections whose
//! request headers do not arrive within a bound (slow or half-sent
//! requests, idle keep-alive connections). Request bodies are bounded by
//! the handlers ([`ApiSettings::body_read_timeout`](super::api::ApiSettings)).

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

/// Serves `app` on `listener` until `stop` fires (or is dropped), then
/// asks every open connection to finish its current request and close,
/// and returns once they have. A connection that takes longer than
/// `header_read_timeout` to send a request's headers is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    stop: oneshot::Receiver<()>,
) {
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(app.clone());
                    let mut closing = closing.clone();
                    connections.spawn(async move {
                        let mut builder = hyper::server::conn::http1::Builder::new();
                        builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
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
