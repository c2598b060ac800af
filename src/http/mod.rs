//! The daemon's HTTP listener (`[http] listen`, 127.0.0.1:8083 by default: Kafka Connect's port,
//! loopback only unless configured): `GET /metrics` (Prometheus text), `GET /health`, Kafka
//! Connect's REST API (`connect_api`), and `GET /macklake/status` (what `macklake status` prints).
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

use crate::config::kafka_props::KafkaProps;
use crate::daemon::status::Registry;
use crate::daemon::supervisor::Request;

pub mod client;
pub mod connect_api;

/// What the handlers share.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Pause/resume/stop/restart, applied by the supervisor loop.
    pub requests: std::sync::Mutex<std::sync::mpsc::Sender<Request>>,
    /// The listener's address, which Connect calls the worker id.
    pub addr: SocketAddr,
    kafka: KafkaProps,
    cluster_id: tokio::sync::Mutex<Option<String>>,
}

impl AppState {
    pub fn worker_id(&self) -> String {
        self.addr.to_string()
    }

    /// Kafka's cluster id, asked once Kafka answers (null until then).
    pub async fn cluster_id(&self) -> Option<String> {
        let mut cached = self.cluster_id.lock().await;
        if cached.is_none() {
            let props = self.kafka.clone();
            *cached = tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::Consumer;
                let consumer: rdkafka::consumer::BaseConsumer =
                    crate::kafka::client::base(&props).create().ok()?;
                consumer.client().fetch_cluster_id(std::time::Duration::from_secs(5))
            })
            .await
            .ok()
            .flatten();
        }
        cached.clone()
    }

    fn send(&self, request: Request) -> Result<(), ()> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).send(request).map_err(|_| ())
    }
}

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
pub fn start(
    addr: SocketAddr,
    registry: Arc<Registry>,
    requests: std::sync::mpsc::Sender<Request>,
    kafka: KafkaProps,
) -> Result<Server, HttpError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| HttpError::Bind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| HttpError::Bind { addr, source })?;
    let local = listener.local_addr().map_err(|source| HttpError::Bind { addr, source })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = Arc::new(AppState {
        registry,
        requests: std::sync::Mutex::new(requests),
        addr: local,
        kafka,
        cluster_id: tokio::sync::Mutex::new(None),
    });
    let app = router(state);
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
    tracing::info!(addr = %local, "HTTP listener: /metrics, /health, Kafka Connect REST API");
    Ok(Server { addr: local, shutdown: Some(tx), thread: Some(thread) })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/macklake/status", get(status))
        .merge(connect_api::routes())
        .fallback(|| async { connect_api::error(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .with_state(state)
}

async fn status(State(state): State<Arc<AppState>>) -> Response {
    let connectors: Vec<serde_json::Value> =
        state.registry.connectors().iter().map(|c| connect_api::detail(c)).collect();
    axum::Json(serde_json::json!({"connectors": connectors, "rejected_files": state.registry.rejected()}))
        .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match crate::metrics::render(&state.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n").into_response(),
    }
}

/// 200 when every connector runs; 503 with the reasons when one is failed, stalled, or its file
/// was rejected.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let registry = &state.registry;
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
