//! The daemon config (`macklake run --config FILE`; example in `config/macklake.toml`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::kafka_props::{self, KafkaProps};
use super::{ConfigError, units};

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// The file this was read from.
    pub file: PathBuf,
    /// Every `*.toml` in it is one connector.
    pub connectors_dir: PathBuf,
    /// Checkpoints and sink commit caches live here.
    pub state_dir: PathBuf,
    /// Names this daemon in sink commit metadata and exactly-once transactional ids.
    pub daemon_id: String,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Bound on a graceful stop (SIGTERM/SIGINT).
    pub shutdown_timeout: Duration,
    /// librdkafka properties for every connector (a connector's own `[kafka]` overrides them).
    pub kafka: KafkaProps,
    /// The only directories `${file:...}` secret references may read from.
    pub secret_dirs: Vec<PathBuf>,
    /// Where `/metrics` and `/health` are served (`None`: no listener).
    pub http_listen: Option<std::net::SocketAddr>,
    /// Names (besides the listener's address) a request's `Host` may carry.
    pub http_allowed_hosts: Vec<String>,
    /// The worker converter Kafka Connect connector files are taken to have run under.
    pub connect_converter: super::connect::WorkerConverter,
}

/// Kafka Connect's REST port, so that its tools find the daemon; loopback only by default.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8083";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    connectors_dir: PathBuf,
    state_dir: PathBuf,
    daemon_id: Option<String>,
    #[serde(default, with = "opt_duration")]
    shutdown_timeout: Option<Duration>,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    kafka: BTreeMap<String, toml::Value>,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    connect: RawConnect,
    secret_dirs: Option<Vec<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    #[serde(default)]
    value_converter: super::connect::WorkerConverter,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_http_enabled")]
    enabled: bool,
    listen: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp { enabled: true, listen: None, allowed_hosts: Vec::new() }
    }
}

fn default_http_enabled() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<LogFormat>,
}

mod opt_duration {
    use super::*;
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        units::duration::deserialize(d).map(Some)
    }
}

pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

impl DaemonConfig {
    pub fn load(file: &Path) -> Result<DaemonConfig, ConfigError> {
        super::trust::check(file).map_err(|m| ConfigError::new(file, m))?;
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::new(file, format!("cannot read the daemon config: {e}")))?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<DaemonConfig, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        // Relative paths are taken relative to the config file, not to wherever the daemon started.
        let base = file.parent().unwrap_or(Path::new("."));
        // By default secrets may sit beside the daemon config (e.g. /etc/macklake), nowhere else.
        let secret_dirs: Vec<PathBuf> = match raw.secret_dirs {
            Some(dirs) => dirs.into_iter().map(|d| base.join(d)).collect(),
            None => vec![base.to_path_buf()],
        };
        let scope = kafka_props::SecretScope { base, allowed: &secret_dirs };
        let kafka = kafka_props::from_toml(file, text, "kafka", &raw.kafka, scope)?;
        let daemon_id = match raw.daemon_id {
            Some(id) => id,
            None => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "macklake".to_string()),
        };
        if daemon_id.is_empty() || daemon_id.len() > 200 || daemon_id.chars().any(|c| c.is_control()) {
            return Err(ConfigError::at_key(
                file,
                text,
                None,
                "daemon_id",
                "daemon_id must be 1 to 200 printable characters",
            ));
        }
        let level = raw.log.level.unwrap_or_else(|| "info".to_string());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(ConfigError::at_key(
                file,
                text,
                Some("log"),
                "level",
                format!("`{level}` is not a log level (error, warn, info, debug, trace)"),
            ));
        }
        let http_listen = if raw.http.enabled {
            let listen = raw.http.listen.as_deref().unwrap_or(DEFAULT_HTTP_LISTEN);
            Some(listen.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::at_key(
                    file,
                    text,
                    Some("http"),
                    "listen",
                    format!("`{listen}` is not an address:port such as \"127.0.0.1:8083\""),
                )
            })?)
        } else {
            None
        };
        Ok(DaemonConfig {
            file: file.to_path_buf(),
            http_listen,
            http_allowed_hosts: raw.http.allowed_hosts,
            connect_converter: raw.connect.value_converter,
            connectors_dir: base.join(raw.connectors_dir),
            state_dir: base.join(raw.state_dir),
            daemon_id,
            log_level: level,
            log_format: raw.log.format.unwrap_or(LogFormat::Text),
            shutdown_timeout: raw.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            kafka,
            secret_dirs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::parse(Path::new("/etc/macklake/macklake.toml"), text)
    }

    #[test]
    fn relative_dirs_follow_the_config_file_and_defaults_apply() {
        let c =
            parse("connectors_dir = \"connectors.d\"\nstate_dir = \"/var/lib/macklake\"\n").expect("valid");
        assert_eq!(c.connectors_dir, PathBuf::from("/etc/macklake/connectors.d"));
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/macklake"));
        assert_eq!(c.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert!(!c.daemon_id.is_empty());
        assert_eq!(c.http_listen, Some("127.0.0.1:8083".parse().expect("address")));
    }

    #[test]
    fn the_http_listener_can_move_or_be_switched_off() {
        let c = parse("connectors_dir = \"c\"\nstate_dir = \"s\"\n[http]\nlisten = \"127.0.0.1:0\"\n")
            .expect("valid");
        assert_eq!(c.http_listen, Some("127.0.0.1:0".parse().expect("address")));
        let c = parse("connectors_dir = \"c\"\nstate_dir = \"s\"\n[http]\nenabled = false\n").expect("valid");
        assert_eq!(c.http_listen, None);
        let err = parse("connectors_dir = \"c\"\nstate_dir = \"s\"\n[http]\nlisten = \"localhost\"\n")
            .expect_err("no port");
        assert_eq!((err.line, err.key.as_deref()), (Some(4), Some("http.listen")));
    }

    #[test]
    fn kafka_properties_pass_through_but_reserved_ones_are_refused() {
        let ok = "connectors_dir = \"c\"\nstate_dir = \"s\"\n[kafka]\n\"bootstrap.servers\" = \"h:9092\"\n\"linger.ms\" = 5\n";
        let c = parse(ok).expect("valid");
        assert_eq!(c.kafka.get("linger.ms").map(String::as_str), Some("5"));
        let bad = "connectors_dir = \"c\"\nstate_dir = \"s\"\n[kafka]\n\"acks\" = \"1\"\n";
        let err = parse(bad).expect_err("acks is reserved");
        assert_eq!(err.line, Some(4));
        assert_eq!(err.key.as_deref(), Some("kafka.acks"));
        assert!(err.message.contains("acks=all"), "{err}");
    }

    #[test]
    fn secret_references_resolve_under_secret_dirs_only_and_errors_are_located() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("macklake.toml");
        std::fs::write(dir.path().join("kafka.properties"), "password = hunter2-very-secret\n")
            .expect("write");
        let head = "connectors_dir = \"c\"\nstate_dir = \"s\"\n";
        // default: the config file's own directory
        let ok = format!("{head}[kafka]\n\"sasl.password\" = \"${{file:kafka.properties:password}}\"\n");
        let c = DaemonConfig::parse(&file, &ok).expect("valid");
        assert_eq!(c.kafka.get("sasl.password").map(String::as_str), Some("hunter2-very-secret"));
        assert_eq!(c.secret_dirs, vec![dir.path().to_path_buf()]);
        assert!(!format!("{c:?}").contains("hunter2"), "Debug of the whole config hides it");

        let typo = format!(
            "{head}[kafka]\n\"linger.ms\" = 5\n\"sasl.password\" = \"${{file:kafka.properties:pass}}\"\n"
        );
        let err = DaemonConfig::parse(&file, &typo).expect_err("no such key");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("kafka.sasl.password")));
        assert!(err.to_string().contains("no key `pass`"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let elsewhere = format!("secret_dirs = [\"/etc/macklake/secrets\"]\n{ok}");
        let err = DaemonConfig::parse(&file, &elsewhere).expect_err("outside secret_dirs");
        assert!(err.message.contains("outside the directories"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn unknown_and_mistyped_keys_name_file_line_and_key() {
        let err = parse("connectors_dir = \"c\"\nstate_dirr = \"s\"\n").expect_err("typo");
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("did you mean `state_dir`"), "{err}");
        assert!(err.to_string().starts_with("/etc/macklake/macklake.toml:2"), "{err}");
        let err = parse("connectors_dir = \"c\"\nstate_dir = \"s\"\nshutdown_timeout = \"soon\"\n")
            .expect_err("bad");
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("shutdown_timeout"));
    }
}
