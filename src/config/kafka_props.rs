//! librdkafka properties from `[kafka]` tables: passed through as given, except the ones that carry
//! macklake's delivery guarantees, which macklake sets itself.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

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

/// A `[kafka]` table: property name → value as librdkafka takes it (text).
pub type KafkaProps = BTreeMap<String, String>;

/// Converts a `[kafka]` table, rejecting reserved and non-scalar properties.
/// `table` is the table's name in the file, for error locations.
pub fn from_toml(
    file: &Path,
    text: &str,
    table: &str,
    raw: &BTreeMap<String, toml::Value>,
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
        props.insert(key.clone(), value);
    }
    Ok(props)
}

/// The daemon's properties with a connector's overrides on top.
pub fn merged(daemon: &KafkaProps, connector: &KafkaProps) -> KafkaProps {
    let mut all = daemon.clone();
    all.extend(connector.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}
