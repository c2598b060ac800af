//! librdkafka properties from `[kafka]` tables: passed through as given, except the ones that carry
//! macklake's delivery guarantees, which macklake sets itself. Secret references (`${env:..}`,
//! `${file:..}`, see `secrets.rs`) are resolved here; `KafkaProps` remembers which values are
//! secret and only ever shows them as `[hidden]` (`Debug`, `redacted`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::{ConfigError, secrets};

/// Properties macklake sets itself, with the reason shown to a user who tries to set one.
pub const RESERVED: &[(&str, &str)] = &[
    ("acks", "sources produce with acks=all so that a checkpoint never runs ahead of replicated data"),
    (
        "enable.idempotence",
        "sources use the idempotent producer so that retries cannot duplicate or reorder lines",
    ),
    ("transactional.id", "exactly-once sources derive it from daemon_id and the connector name"),
    ("group.id", "a sink's consumer group is its connector name"),
    ("enable.auto.commit", "sinks commit offsets only after the data they cover is fsynced"),
    ("enable.auto.offset.store", "sinks store offsets only for records written to their files"),
    ("isolation.level", "sinks read with read_committed so that aborted transactions never reach the files"),
];

/// librdkafka properties that run a command, load code, or make the daemon read a file or reach a
/// URL of the config's choosing. A connector file must not be able to do that (Kafka Connect's
/// CVE-2023-25194 and CVE-2025-27817 came from exactly this); they are accepted only in the daemon
/// config, which the operator owns. Reviewed against librdkafka 2.12's CONFIGURATION.md; review
/// it again when librdkafka is upgraded.
pub const DAEMON_ONLY: &[(&str, &str)] = &[
    ("sasl.kerberos.kinit.cmd", "runs a shell command"),
    ("sasl.kerberos.keytab", "reads a file"),
    ("plugin.library.paths", "loads shared libraries into the daemon"),
    ("ssl.engine.location", "loads an OpenSSL engine library into the daemon"),
    ("ssl.providers", "loads OpenSSL provider modules into the daemon"),
    ("ssl.ca.location", "reads a file or directory"),
    ("ssl.certificate.location", "reads a file"),
    ("ssl.key.location", "reads a file"),
    ("ssl.keystore.location", "reads a file"),
    ("ssl.crl.location", "reads a file"),
    ("https.ca.location", "reads a file or directory"),
    ("sasl.oauthbearer.token.endpoint.url", "makes the daemon fetch a URL"),
    ("sasl.oauthbearer.assertion.file", "reads a file"),
    ("sasl.oauthbearer.assertion.private.key.file", "reads a file"),
    ("sasl.oauthbearer.assertion.jwt.template.file", "reads a file"),
];

/// The reason `key` may be set only in the daemon config, if it is one of `DAEMON_ONLY`.
pub fn daemon_only(key: &str) -> Option<String> {
    DAEMON_ONLY.iter().find(|(k, _)| *k == key).map(|(k, why)| {
        format!("`{k}` {why}: it is accepted only in the daemon config, never in a connector file")
    })
}

/// librdkafka properties whose values are credentials or key material: never shown. This is
/// librdkafka 2.12's own list (properties flagged `_RK_SENSITIVE` in `rdkafka_conf.c`, which it
/// redacts from its config dumps), plus the alias of one of them and the Java client's keystore
/// and truststore passwords. Review it when librdkafka is upgraded.
pub const SENSITIVE: &[&str] = &[
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.truststore.password",
];

/// What is shown instead of a secret value (Kafka Connect masks passwords the same way).
pub const HIDDEN: &str = "[hidden]";

/// Whether a property's value must never be shown, by its name alone. Anything named like a
/// password or secret counts too, so a property added by a later librdkafka is hidden by default.
pub fn is_sensitive_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SENSITIVE.contains(&lower.as_str())
        || ["password", "secret", "passphrase"].iter().any(|w| lower.contains(w))
}

/// A `[kafka]` table: property name → value as librdkafka takes it (text), and which of the
/// values came from a secret reference.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KafkaProps {
    values: BTreeMap<String, String>,
    /// Properties whose value came from `${...}`: secret whatever their name.
    referenced: BTreeSet<String>,
}

impl KafkaProps {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.values.get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// The raw values: only for handing to librdkafka, never for printing (use `redacted`).
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.values.iter()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.referenced.remove(&key);
        self.values.insert(key, value.into());
    }

    /// A value that came from a secret reference.
    pub fn insert_secret(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.values.insert(key.clone(), value.into());
        self.referenced.insert(key);
    }

    pub fn is_secret(&self, key: &str) -> bool {
        self.referenced.contains(key) || is_sensitive_name(key)
    }

    /// The properties as they may be shown: secret values replaced by `[hidden]`.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.values
            .iter()
            .map(|(k, v)| {
                let shown = if self.is_secret(k) { HIDDEN.to_string() } else { v.clone() };
                (k.clone(), shown)
            })
            .collect()
    }
}

impl<'a> IntoIterator for &'a KafkaProps {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.values.iter()
    }
}

/// Redacted, so that `{:?}` of any config holding properties is safe to log.
impl fmt::Debug for KafkaProps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

/// Where `${file:...}` may read: relative paths start at `base` (the directory of the file that
/// holds the reference), and only files under one of `allowed` (`secret_dirs`) may be read.
#[derive(Debug, Clone, Copy)]
pub struct SecretScope<'a> {
    pub base: &'a Path,
    pub allowed: &'a [PathBuf],
}

/// Converts a `[kafka]` table, rejecting reserved and non-scalar properties and resolving secret
/// references. `table` is the table's name in the file, for error locations.
pub fn from_toml(
    file: &Path,
    text: &str,
    table: &str,
    raw: &BTreeMap<String, toml::Value>,
    scope: SecretScope<'_>,
) -> Result<KafkaProps, ConfigError> {
    let mut props = KafkaProps::new();
    for (key, value) in raw {
        if let Some((_, why)) = RESERVED.iter().find(|(k, _)| k == key) {
            return Err(ConfigError::at_key(
                file,
                text,
                Some(table),
                key,
                format!("`{key}` is set by macklake and cannot be overridden: {why}"),
            ));
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                return Err(ConfigError::at_key(
                    file,
                    text,
                    Some(table),
                    key,
                    "librdkafka properties take a string, number or boolean",
                ));
            }
        };
        let (value, referenced) = secrets::resolve(&value, scope.base, scope.allowed)
            .map_err(|problem| ConfigError::at_key(file, text, Some(table), key, problem))?;
        if referenced {
            props.insert_secret(key.clone(), value);
        } else {
            props.insert(key.clone(), value);
        }
    }
    Ok(props)
}

/// The daemon's properties with a connector's overrides on top.
pub fn merged(daemon: &KafkaProps, connector: &KafkaProps) -> KafkaProps {
    let mut all = daemon.clone();
    for (k, v) in &connector.values {
        if connector.referenced.contains(k) {
            all.insert_secret(k.clone(), v.clone());
        } else {
            all.insert(k.clone(), v.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_by_name_and_by_origin() {
        let mut p = KafkaProps::new();
        p.insert("bootstrap.servers", "h:9092");
        p.insert("sasl.password", "hunter2");
        p.insert("SSL.Key.Password", "hunter3");
        p.insert("some.future.client.secret", "hunter4");
        p.insert_secret("sasl.mechanisms", "from-a-reference");
        let shown = format!("{p:?}");
        for secret in ["hunter2", "hunter3", "hunter4", "from-a-reference"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("h:9092") && shown.contains(HIDDEN), "{shown}");
        assert_eq!(p.redacted().get("sasl.password").map(String::as_str), Some(HIDDEN));
        assert_eq!(p.get("sasl.password").map(String::as_str), Some("hunter2"), "librdkafka gets the value");
    }

    #[test]
    fn a_connector_override_keeps_or_drops_the_secret_mark() {
        let mut daemon = KafkaProps::new();
        daemon.insert_secret("client.id", "from-env");
        let mut connector = KafkaProps::new();
        connector.insert("client.id", "plain");
        connector.insert_secret("sasl.mechanisms", "x");
        let m = merged(&daemon, &connector);
        assert!(!m.is_secret("client.id"));
        assert!(m.is_secret("sasl.mechanisms"));
        assert!(merged(&daemon, &KafkaProps::new()).is_secret("client.id"));
    }
}
