//! The daemon's HTTP listener (`[http] listen`, 127.0.0.1:8083 by default: Kafka Connect's port,
//! loopback only unless configured): `GET /metrics` (Prometheus text), `GET /health`, Kafka
//! Connect's REST API (`connect_api`), and `GET /macklake/status` (what `macklake status` prints).
//!
//! It runs on its own thread with a small single-threaded tokio runtime, so that a slow or
//! hostile client can never take time from the connectors' threads. Hostile clients are bounded
//! here too: at most `MAX_CONNECTIONS` at once, 16 KiB of request head, 10 s to send it, 30 s per
//! connection, request bodies never read (no endpoint takes one), and a `Host` header that is not
//! the listener's own address or a configured name is refused (DNS rebinding: a browser page
//! from elsewhere must not reach a loopback API). No CORS headers are ever sent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::kafka_props::KafkaProps;
use crate::control::Request;
use crate::status::Registry;

pub mod client;
pub mod connect_api;

/// What the handlers share.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Pause/resume/stop/restart, applied by the supervisor loop.
    pub requests: std::sync::Mutex<std::sync::mpsc::Sender<Request>>,
    /// The listener's address, which Connect calls the worker id.
    pub addr: SocketAddr,
    /// Names besides the listener's address that `Host` may carry (`http.allowed_hosts`).
    allowed_hosts: Vec<String>,
    kafka: KafkaProps,
    cluster_id: tokio::sync::Mutex<Option<String>>,
}

impl AppState {
    pub fn worker_id(&self) -> String {
        self.addr.to_string()
    }

    /// The listener's own address (as IP, or `localhost` for a loopback one), with or without
    /// its port, or a configured name.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let port = self.addr.port().to_string();
        let name = match host.rsplit_once(':') {
            Some((name, p)) if p == port && !name.ends_with(':') => name.to_string(),
            Some((name, _)) if name.starts_with('[') && !host.ends_with(']') => return false,
            _ => host.clone(),
        };
        let ip = self.addr.ip();
        let own = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
        name == own
            || (ip.is_loopback() && (name == "localhost" || name == "127.0.0.1" || name == "[::1]"))
            || self.allowed_hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }

    /// Kafka's cluster id, asked once Kafka answers (null until then).
    pub async fn cluster_id(&self) -> Option<String> {
        let mut cached = self.cluster_id.lock().await;
        if cached.is_none() {
            let props = self.kafka.clone();
            *cached = tokio::task::spawn_blocking(move || {
                let config = crate::kafka::client::base(&props);
                crate::kafka::admin::cluster_id(&config, std::time::Duration::from_secs(5))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state(addr: &str, allowed: &[&str]) -> AppState {
        AppState {
            registry: Default::default(),
            requests: std::sync::Mutex::new(std::sync::mpsc::channel().0),
            addr: addr.parse().expect("address"),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            kafka: Default::default(),
            cluster_id: tokio::sync::Mutex::new(None),
        }
    }

    #[test]
    fn only_the_listeners_own_names_are_accepted_as_host() {
        let s = state("127.0.0.1:8083", &["macklake.internal"]);
        for ok in [
            "127.0.0.1:8083",
            "localhost:8083",
            "LOCALHOST:8083",
            "127.0.0.1",
            "[::1]:8083",
            "macklake.internal:8083",
        ] {
            assert!(s.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example:8083", "127.0.0.1:9999", "", "127.0.0.1.evil.example", "localhost.:8083"] {
            assert!(!s.host_allowed(bad), "{bad}");
        }
        let public = state("10.0.0.5:8083", &[]);
        assert!(public.host_allowed("10.0.0.5:8083"));
        assert!(
            !public.host_allowed("localhost:8083"),
            "localhost is not this listener when it is not on loopback"
        );
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
    allowed_hosts: Vec<String>,
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
        allowed_hosts,
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
                tokio::select! {
                    _ = serve(listener, app) => {}
                    _ = rx => {}
                }
            });
        })
        .map_err(HttpError::Thread)?;
    tracing::info!(addr = %local, "HTTP listener: /metrics, /health, Kafka Connect REST API");
    Ok(Server { addr: local, shutdown: Some(tx), thread: Some(thread) })
}

/// At most this many connections are served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;
/// Request line and headers, together.
const MAX_HEAD_BYTES: usize = 16 * 1024;
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const CONNECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn serve(listener: tokio::net::TcpListener, app: Router) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(error) => {
                // Out of descriptors, for instance: wait instead of spinning.
                tracing::warn!(%error, "HTTP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(true);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%peer, %error, "HTTP connection closed on an error"),
                Err(_) => tracing::info!(%peer, "HTTP connection closed: it took longer than 30 s"),
            }
            drop(permit);
        });
    }
}

/// Refuses requests whose `Host` is not this listener (DNS rebinding) with 421.
async fn check_host(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if state.host_allowed(host) {
        return next.run(request).await;
    }
    tracing::warn!(host = %host.chars().take(100).collect::<String>(), "HTTP request refused: its Host is not this listener (DNS rebinding?)");
    connect_api::error(
        StatusCode::MISDIRECTED_REQUEST,
        "this listener answers only to its own address (or a name in http.allowed_hosts)",
    )
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/macklake/status", get(status))
        .merge(connect_api::routes())
        .fallback(|| async { connect_api::error(StatusCode::NOT_FOUND, "HTTP 404 Not Found") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), check_host))
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
        if let crate::status::Stats::Source(s) = &c.stats {
            // What grouping and filters did (issue 16): records sent whole, cut, not sent.
            let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            entry["records"] = serde_json::json!({
                "multiline": get(&s.multiline_records),
                "cut": get(&s.records_cut_max_lines) + get(&s.records_cut_max_bytes)
                    + get(&s.records_cut_timeout) + get(&s.records_cut_rotation),
                "filtered": get(&s.records_not_included) + get(&s.records_excluded),
            });
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
