//! The daemon's HTTP listener (`[http] listen`, 127.0.0.1:8083 by default: Kafka Connect's port,
//! loopback only unless configured): `GET /metrics` (Prometheus text) and `GET /health`.
//!
//! It runs on its own thread with a small single-threaded tokio runtime, so that a slow or
//! hostile client can never take time from the connectors' threads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::daemon::status::Registry;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} (key `http.listen` in the daemon config): {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the HTTP listener's thread: {0}")]
    Thread(std::io::Error),
}

/// A running listener; stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr` now (so that a taken port is reported at start-up) and serves in the background.
pub fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<Server, HttpError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(registry);
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(error) => {
                    tracing::error!(%error, "cannot start the HTTP listener's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(error) => {
                        tracing::error!(%error, "cannot serve HTTP");
                        return;
                    }
                };
                let served = axum::serve(listener, app).with_graceful_shutdown(async {
                    let _ = rx.await;
                });
                if let Err(error) = served.await {
                    tracing::error!(%error, "the HTTP listener stopped");
                }
            });
        })
        .map_err(HttpError::Thread)?;
    tracing::info!(addr = %local, "HTTP listener: /metrics, /health");
    Ok(Server { addr: local, shutdown: Some(tx), thread: Some(thread) })
}

fn router(registry: Arc<Registry>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/health", get(health)).with_state(registry)
}

async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    match crate::metrics::render(&registry) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// 200 when every connector runs; 503 with the reasons when one is failed, stalled, or its file
/// was rejected.
async fn health(State(registry): State<Arc<Registry>>) -> Response {
    let mut connectors = serde_json::Map::new();
    let mut healthy = true;
    for c in registry.connectors() {
        let (state, _, since) = c.state();
        let problem = c.problem();
        healthy &= problem.is_none();
        let mut entry = serde_json::json!({
            "kind": c.kind,
            "state": state,
            "since_seconds": since.as_secs(),
        });
        if let Some(p) = problem {
            entry["reason"] = serde_json::Value::String(p);
        }
        connectors.insert(c.name.clone(), entry);
    }
    let rejected: serde_json::Map<String, serde_json::Value> = registry
        .rejected()
        .into_iter()
        .map(|(file, error)| (file.display().to_string(), serde_json::Value::String(error)))
        .collect();
    healthy &= rejected.is_empty();
    let body = serde_json::json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "connectors": connectors,
        "rejected_files": rejected,
    });
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, axum::Json(body)).into_response()
}
