//! Kafka Connect's REST API over the daemon's connectors, with Connect's JSON shapes and status
//! codes, so that kcctl, Kafka UI and Redpanda Console can see macklake. Shapes are checked
//! against responses recorded from a real Connect 4.1 worker (tests/fixtures/connect-rest/).
//!
//! Connector configuration comes only from files: creating, changing or deleting a connector,
//! and changing offsets, answer 405 with Connect's error body naming the file to edit. Pause,
//! resume, stop and restart are requests to the supervisor (applied within ~100 ms).
//! Secrets are never returned: sensitive values are masked as Connect masks passwords.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::AppState;
use crate::config::ConnectorKind;
use crate::config::connector::Origin;
use crate::control::Request;
use crate::status::{ConnectorStatus, State as ConnState, Stats};

/// The Kafka version the FileStream connector classes are reported with (the one the local
/// cluster and the compatibility tests use).
const CONNECT_VERSION: &str = "4.1.1";
const SOURCE_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSourceConnector";
const SINK_CLASS: &str = "org.apache.kafka.connect.file.FileStreamSinkConnector";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(root))
        .route("/connectors", get(list).post(read_only))
        .route("/connectors/{name}", get(info).delete(read_only_named))
        .route("/connectors/{name}/config", get(config).put(read_only_named))
        .route("/connectors/{name}/status", get(status))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route("/connectors/{name}/tasks/{task}/restart", post(restart))
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(read_only_named))
        .route("/connectors/{name}/offsets", get(offsets).patch(read_only_named).delete(read_only_named))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connector-plugins", get(plugins))
}

/// Connect's error body.
pub fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({"error_code": code.as_u16(), "message": message.into()}))).into_response()
}

fn not_found(name: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("Connector {name} not found"))
}

fn find(state: &AppState, name: &str) -> Result<Arc<ConnectorStatus>, Box<Response>> {
    state.registry.get(name).ok_or_else(|| Box::new(not_found(name)))
}

async fn root(State(state): State<Arc<AppState>>) -> Response {
    let cluster_id = state.cluster_id().await;
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("MACKLAKE_COMMIT").unwrap_or("unknown"),
        "kafka_cluster_id": cluster_id,
    }))
    .into_response()
}

fn kind_type(c: &ConnectorStatus) -> &'static str {
    match c.stats {
        Stats::Source(_) => "source",
        Stats::Sink(_) => "sink",
    }
}

/// A config key whose value must not be shown: a sensitive librdkafka property (the reviewed
/// list in `kafka_props`), wherever it is written (`kafka.`, `producer.override.`, ...).
fn is_secret(key: &str) -> bool {
    let property = ["kafka.", "producer.override.", "consumer.override.", "admin.override."]
        .iter()
        .find_map(|p| key.strip_prefix(p))
        .unwrap_or(key);
    crate::config::kafka_props::is_sensitive_name(property)
}

/// The connector's config as Connect would show it: a Connect file's own map; for macklake's
/// TOML connectors the file's keys flattened to strings (tables as dotted keys), plus
/// `connector.class` and `name`. Secrets masked.
pub fn config_map(c: &ConnectorStatus) -> BTreeMap<String, String> {
    let config = c.config();
    let mut map = match &config.origin {
        Origin::Connect { config, .. } => config.clone(),
        Origin::Toml => {
            let mut map = BTreeMap::new();
            let text = std::fs::read_to_string(&config.file).unwrap_or_default();
            if let Ok(table) = text.parse::<toml::Table>() {
                flatten("", &toml::Value::Table(table), &mut map);
            }
            map.insert(
                "connector.class".into(),
                match config.kind {
                    ConnectorKind::Source(_) => "macklake.FileSource".into(),
                    ConnectorKind::Sink(_) => "macklake.FileSink".into(),
                },
            );
            map.insert("name".into(), config.name.clone());
            map
        }
    };
    for (k, v) in map.iter_mut() {
        if is_secret(k) || v.contains("${") {
            *v = "[hidden]".into();
        }
    }
    map
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        toml::Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.insert(prefix.to_string(), parts.join(","));
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

fn info_value(c: &ConnectorStatus) -> Value {
    json!({
        "name": c.name,
        "config": config_map(c),
        "tasks": [{"connector": c.name, "task": 0}],
        "type": kind_type(c),
    })
}

fn state_name(state: ConnState) -> &'static str {
    match state {
        ConnState::Running => "RUNNING",
        ConnState::Failed => "FAILED",
        ConnState::Paused => "PAUSED",
        ConnState::Stopped => "STOPPED",
    }
}

/// The connector's version, as Connect 4 reports a plugin's: Kafka's for the FileStream classes.
fn version(c: &ConnectorStatus) -> &'static str {
    match c.config().origin {
        Origin::Connect { .. } => CONNECT_VERSION,
        Origin::Toml => env!("CARGO_PKG_VERSION"),
    }
}

fn status_value(c: &ConnectorStatus, worker_id: &str) -> Value {
    let (state, error, _) = c.state();
    let version = version(c);
    let mut connector = json!({"state": state_name(state), "worker_id": worker_id, "version": version});
    let mut task = json!({"id": 0, "state": state_name(state), "worker_id": worker_id, "version": version});
    if let (ConnState::Failed, Some(trace)) = (state, error) {
        connector["trace"] = Value::String(trace.clone());
        task["trace"] = Value::String(trace);
    }
    // Connect shows a stopped connector with no tasks.
    let tasks = if state == ConnState::Stopped { json!([]) } else { json!([task]) };
    json!({"name": c.name, "connector": connector, "tasks": tasks, "type": kind_type(c)})
}

async fn list(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let expand: Vec<&str> = query.split('&').filter_map(|kv| kv.strip_prefix("expand=")).collect::<Vec<_>>();
    let connectors = state.registry.connectors();
    if expand.is_empty() {
        let names: Vec<&str> = connectors.iter().map(|c| c.name.as_str()).collect();
        return axum::Json(json!(names)).into_response();
    }
    let mut out = serde_json::Map::new();
    for c in &connectors {
        let mut entry = serde_json::Map::new();
        if expand.contains(&"status") {
            entry.insert("status".into(), status_value(c, &state.worker_id()));
        }
        if expand.contains(&"info") {
            entry.insert("info".into(), info_value(c));
        }
        out.insert(c.name.clone(), Value::Object(entry));
    }
    axum::Json(Value::Object(out)).into_response()
}

async fn info(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match find(&state, &name) {
        Ok(c) => axum::Json(info_value(&c)).into_response(),
        Err(r) => *r,
    }
}

async fn config(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match find(&state, &name) {
        Ok(c) => axum::Json(config_map(&c)).into_response(),
        Err(r) => *r,
    }
}

async fn status(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.registry.get(&name) {
        Some(c) => axum::Json(status_value(&c, &state.worker_id())).into_response(),
        // Connect's own wording for this one.
        None => error(StatusCode::NOT_FOUND, format!("No status found for connector {name}")),
    }
}

async fn tasks(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match find(&state, &name) {
        Ok(c) => axum::Json(json!([{"id": {"connector": c.name, "task": 0}, "config": config_map(&c)}]))
            .into_response(),
        Err(r) => *r,
    }
}

async fn task_status(
    State(state): State<Arc<AppState>>,
    Path((name, task)): Path<(String, String)>,
) -> Response {
    let c = match find(&state, &name) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if task != "0" {
        return error(StatusCode::NOT_FOUND, format!("No status found for task {name}-{task}"));
    }
    let status = status_value(&c, &state.worker_id());
    match status["tasks"].get(0) {
        Some(t) => axum::Json(t.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("No status found for task {name}-{task}")),
    }
}

async fn topics(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let c = match find(&state, &name) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let topics: Vec<String> = match c.config().kind {
        ConnectorKind::Source(s) => vec![s.topic.name],
        ConnectorKind::Sink(s) => s.topics,
    };
    axum::Json(json!({ name: {"topics": topics} })).into_response()
}

async fn offsets(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let c = match find(&state, &name) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let offsets: Vec<Value> = match &c.stats {
        Stats::Source(s) => s
            .positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(path, position)| {
                json!({"partition": {"filename": path.display().to_string()}, "offset": {"position": position}})
            })
            .collect(),
        Stats::Sink(s) => s
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((topic, partition), offset)| {
                json!({"partition": {"kafka_partition": partition, "kafka_topic": topic}, "offset": {"kafka_offset": offset}})
            })
            .collect(),
    };
    axum::Json(json!({ "offsets": offsets })).into_response()
}

async fn send(state: &AppState, name: &str, request: Request, ok: StatusCode) -> Response {
    if state.registry.get(name).is_none() {
        return error(StatusCode::NOT_FOUND, format!("Unknown connector {name}"));
    }
    match state.send(request) {
        Ok(()) => ok.into_response(),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

async fn pause(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    send(&state, &name, Request::Pause(name.clone()), StatusCode::ACCEPTED).await
}

async fn resume(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    send(&state, &name, Request::Resume(name.clone()), StatusCode::ACCEPTED).await
}

async fn stop(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    send(&state, &name, Request::Stop(name.clone()), StatusCode::NO_CONTENT).await
}

async fn restart(State(state): State<Arc<AppState>>, Path(params): Path<Vec<(String, String)>>) -> Response {
    let Some((_, name)) = params.into_iter().find(|(k, _)| k == "name") else {
        return error(StatusCode::NOT_FOUND, "no connector named");
    };
    send(&state, &name, Request::Restart(name.clone()), StatusCode::NO_CONTENT).await
}

async fn plugins() -> Response {
    axum::Json(json!([
        {"class": SINK_CLASS, "type": "sink", "version": CONNECT_VERSION},
        {"class": SOURCE_CLASS, "type": "source", "version": CONNECT_VERSION},
    ]))
    .into_response()
}

const READ_ONLY: &str = "macklake takes connector configuration only from files in its connectors directory";

async fn read_only() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{READ_ONLY}: add a .toml, .properties or .json file there"),
    )
}

async fn read_only_named(
    State(state): State<Arc<AppState>>,
    Path(params): Path<Vec<(String, String)>>,
) -> Response {
    let name = params.into_iter().find(|(k, _)| k == "name").map(|(_, v)| v).unwrap_or_default();
    match state.registry.get(&name) {
        Some(c) => error(StatusCode::METHOD_NOT_ALLOWED, format!("{READ_ONLY}: edit {}", c.file.display())),
        None => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{READ_ONLY}: add a .toml, .properties or .json file there"),
        ),
    }
}

/// Connector counters that are not Connect's, for `macklake status`.
pub fn detail(c: &ConnectorStatus) -> Value {
    let (state, error, since) = c.state();
    let mut v = json!({"name": c.name, "type": kind_type(c), "state": state_name(state), "file": c.file.display().to_string(), "since_seconds": since.as_secs()});
    if let Some(e) = error {
        v["error"] = Value::String(e);
    }
    match &c.stats {
        Stats::Source(s) => {
            let positions = s.positions.lock().unwrap_or_else(|p| p.into_inner()).clone();
            v["files"] = json!(
                positions
                    .iter()
                    .map(|(p, o)| json!({"path": p.display().to_string(), "position": o}))
                    .collect::<Vec<_>>()
            );
            v["lines_acknowledged"] = json!(s.lines_acked.load(Ordering::Relaxed));
        }
        Stats::Sink(s) => {
            let committed = s.committed.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let lag = s.lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
            v["partitions"] = json!(committed
                .iter()
                .map(|((t, p), o)| json!({"topic": t, "partition": p, "committed": o, "lag": lag.get(&(t.clone(), *p))}))
                .collect::<Vec<_>>());
            v["records_written"] = json!(s.records_written.load(Ordering::Relaxed));
        }
    }
    v
}
