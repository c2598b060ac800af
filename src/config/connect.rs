//! Kafka Connect connector files in `connectors_dir`: a `.properties` file, or the JSON form
//! `{"name": .., "config": {..}}`, for FileStreamSource / FileStreamSink. They run with Connect's
//! meaning (a source reads the one `file` into `topic`; a sink writes every record's value to the
//! one `file`), plus what macklake adds (the source follows rotation; the sink is exactly-once).
//!
//! Anything that would make macklake write something different from Connect is refused with the
//! reason (converters other than String/ByteArray, transforms, predicates): such a connector does
//! not start rather than run wrongly. The original key/value map is kept for the REST API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::connector::{
    ConnectorConfig, ConnectorKind, LoadContext, Origin, SinkConfig, SourceConfig, validate_topic,
};
use super::kafka_props::{self, KafkaProps};

/// The worker-level value converter Connect connectors are taken to have run under (daemon
/// config `[connect] value_converter`): raw bytes (StringConverter/ByteArrayConverter), or
/// JsonConverter with schemas, whose `{"schema":..,"payload":..}` envelope a source adds and a
/// sink removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkerConverter {
    #[default]
    Raw,
    JsonWithSchemas,
}

const SOURCE_CLASSES: &[&str] = &[
    "FileStreamSource",
    "FileStreamSourceConnector",
    "org.apache.kafka.connect.file.FileStreamSourceConnector",
];
const SINK_CLASSES: &[&str] =
    &["FileStreamSink", "FileStreamSinkConnector", "org.apache.kafka.connect.file.FileStreamSinkConnector"];
const RAW_CONVERTERS: &[&str] = &[
    "org.apache.kafka.connect.storage.StringConverter",
    "org.apache.kafka.connect.converters.ByteArrayConverter",
    "StringConverter",
    "ByteArrayConverter",
];

/// Keys a FileStream connector file may carry (Connect's framework keys included); any other key
/// is an error with a "did you mean" (docs/configuration.md documents each: `reference::CONNECT`).
pub const KNOWN: &[&str] = &[
    "name",
    "connector.class",
    "tasks.max",
    "file",
    "topic",
    "topics",
    "topics.regex",
    "batch.size",
    "key.converter",
    "value.converter",
    "header.converter",
    "transforms",
    "predicates",
    "errors.tolerance",
    "errors.retry.timeout",
    "errors.retry.delay.max.ms",
    "errors.log.enable",
    "errors.log.include.messages",
    "errors.deadletterqueue.topic.name",
    "errors.deadletterqueue.topic.replication.factor",
    "errors.deadletterqueue.context.headers.enable",
    "config.action.reload",
];

/// One key as written, with where.
struct Entry {
    value: String,
    line: usize,
}

struct Raw {
    file: PathBuf,
    entries: BTreeMap<String, Entry>,
}

impl Raw {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.entries.get(key).map(|e| e.line),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(|e| e.value.trim())
    }

    fn require(&self, key: &str, what: &str) -> Result<&str, ConfigError> {
        match self.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(ConfigError::new(&self.file, format!("missing key `{key}` ({what})"))),
        }
    }
}

/// Parses a Java `.properties` connector file (ISO-8859-1, as Java reads it).
pub fn parse_properties(
    file: &Path,
    text: &[u8],
    ctx: LoadContext<'_>,
) -> Result<ConnectorConfig, ConfigError> {
    let mut entries = BTreeMap::new();
    for line in java_properties::PropertiesIter::new(text) {
        let line = line.map_err(|e| ConfigError {
            file: file.to_path_buf(),
            line: e.line_number(),
            key: None,
            message: format!("not a properties file: {e}"),
        })?;
        let number = line.line_number();
        if let java_properties::LineContent::KVPair(k, v) = line.consume_content() {
            entries.insert(k, Entry { value: v, line: number });
        }
    }
    build(Raw { file: file.to_path_buf(), entries }, ctx)
}

/// Parses the JSON form Connect's REST API takes: `{"name": "..", "config": {"k": "v", ..}}`.
pub fn parse_json(file: &Path, text: &str, ctx: LoadContext<'_>) -> Result<ConnectorConfig, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Form {
        name: Option<String>,
        config: BTreeMap<String, serde_json::Value>,
    }
    let form: Form = serde_json::from_str(text).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: Some(e.line()),
        key: None,
        message: format!("not a Connect connector JSON file ({{\"name\":..,\"config\":{{..}}}}): {e}"),
    })?;
    let line_of = |key: &str| {
        let quoted = format!("\"{key}\"");
        text.lines().position(|l| l.contains(&quoted)).map(|i| i + 1).unwrap_or(1)
    };
    let mut entries = BTreeMap::new();
    for (k, v) in form.config {
        let value = match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let line = line_of(&k);
        entries.insert(k, Entry { value, line });
    }
    if let Some(name) = form.name {
        match entries.get("name") {
            Some(e) if e.value != name => {
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line: Some(e.line),
                    key: Some("config.name".into()),
                    message: format!("`{}` differs from the top-level name `{name}`", e.value),
                });
            }
            Some(_) => {}
            None => {
                entries.insert("name".into(), Entry { value: name, line: line_of("name") });
            }
        }
    }
    build(Raw { file: file.to_path_buf(), entries }, ctx)
}

fn build(raw: Raw, ctx: LoadContext<'_>) -> Result<ConnectorConfig, ConfigError> {
    let mut kafka_overrides: BTreeMap<String, String> = BTreeMap::new();
    for key in raw.entries.keys() {
        if KNOWN.contains(&key.as_str())
            || key.starts_with("key.converter.")
            || key.starts_with("value.converter.")
            || key.starts_with("header.converter.")
        {
            continue;
        }
        if let Some(p) =
            key.strip_prefix("producer.override.").or_else(|| key.strip_prefix("consumer.override."))
        {
            kafka_overrides.insert(p.to_string(), key.clone());
            continue;
        }
        if key.starts_with("transforms.") || key.starts_with("predicates.") {
            continue; // reported with `transforms` itself
        }
        if key.starts_with(TOPIC_CREATION) {
            continue; // read by `topic_creation`
        }
        let hint =
            super::did_you_mean(key, KNOWN).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
        return Err(raw.err(key, format!("unknown key for a FileStream connector{hint}")));
    }
    let name = raw.require("name", "the connector's unique name")?.to_string();
    // As for a TOML file: the name becomes a consumer group, a state directory and part of a
    // transactional id.
    super::connector::validate_name(&name).map_err(|m| raw.err("name", m))?;
    let class = raw.require("connector.class", "FileStreamSource or FileStreamSink")?;
    let is_source = SOURCE_CLASSES.contains(&class);
    if !is_source && !SINK_CLASSES.contains(&class) {
        return Err(raw.err(
            "connector.class",
            format!("`{class}` is not supported: macklake runs FileStreamSource and FileStreamSink connector files"),
        ));
    }
    for key in ["key.converter", "value.converter", "header.converter"] {
        if let Some(v) = raw.get(key)
            && !RAW_CONVERTERS.contains(&v)
            && !(key == "header.converter" && v.ends_with("SimpleHeaderConverter"))
        {
            return Err(raw.err(
                key,
                format!(
                    "converter `{v}` is not supported: macklake passes values through as bytes \
                     (StringConverter, ByteArrayConverter); it will not start this connector rather \
                     than write something different from Connect"
                ),
            ));
        }
    }
    for key in ["transforms", "predicates"] {
        if raw.get(key).is_some_and(|v| !v.is_empty()) {
            return Err(raw.err(
                key,
                "single message transforms are not supported; this connector does not start \
                 rather than write something different from Connect",
            ));
        }
    }
    if let Some(t) = raw.get("tasks.max")
        && t.parse::<u32>().map_or(true, |n| n == 0)
    {
        return Err(raw.err("tasks.max", format!("`{t}` is not a positive number")));
    }
    if let Some(t) = raw.get("errors.tolerance")
        && t != "none"
        && t != "all"
    {
        return Err(raw.err("errors.tolerance", format!("`{t}`: use none or all")));
    }
    // The other kind's topic key: Connect ignores it silently, and then fails for the missing one.
    let (theirs, ours) = if is_source { ("topics", "topic") } else { ("topic", "topics") };
    if raw.get(theirs).is_some() && raw.get(ours).is_none() {
        return Err(raw.err(
            theirs,
            format!(
                "unknown key for a {} (did you mean `{ours}`?)",
                if is_source { "FileStreamSource" } else { "FileStreamSink" }
            ),
        ));
    }
    let file = raw.require("file", "the file to read or write; macklake does not read standard input")?;
    if !Path::new(file).is_absolute() {
        return Err(raw.err("file", format!("`{file}` is relative: give an absolute path")));
    }
    let value_format = match ctx.converter {
        WorkerConverter::Raw => "raw",
        WorkerConverter::JsonWithSchemas => "connect-json",
    };
    let mut table = toml::Table::new();
    table.insert("name".into(), name.clone().into());
    let kind = if is_source {
        let topic = raw.require("topic", "the topic to write to")?;
        validate_topic(topic).map_err(|m| raw.err("topic", m))?;
        table.insert("kind".into(), "file-source".into());
        table.insert("paths".into(), toml::Value::Array(vec![file.into()]));
        let mut spec = topic_creation(&raw)?;
        spec.insert("name".into(), topic.into());
        table.insert("topic".into(), toml::Value::Table(spec));
        // Connect's FileStreamSource sends null keys and starts a file it has no offset for at
        // its beginning.
        table.insert("key".into(), "none".into());
        table.insert("start_at".into(), "beginning".into());
        table.insert("value_format".into(), value_format.into());
        let c: SourceConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            ConfigError::new(&raw.file, format!("internal error mapping the Connect config: {e}"))
        })?;
        ConnectorKind::Source(c)
    } else {
        if let Some(key) = raw.entries.keys().find(|k| k.starts_with(TOPIC_CREATION)) {
            return Err(raw.err(
                key,
                "topic creation settings apply to source connectors only (a sink never creates topics)",
            ));
        }
        if raw.get("topics.regex").is_some() {
            return Err(raw.err("topics.regex", "not supported: list the topics in `topics`"));
        }
        let topics: Vec<String> = raw
            .require("topics", "comma-separated topics to read")?
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        for t in &topics {
            validate_topic(t).map_err(|m| raw.err("topics", m))?;
        }
        table.insert("kind".into(), "file-sink".into());
        table.insert("topics".into(), toml::Value::Array(topics.into_iter().map(Into::into).collect()));
        table.insert("file".into(), file.into());
        table.insert("value_format".into(), value_format.into());
        let c: SinkConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
            ConfigError::new(&raw.file, format!("internal error mapping the Connect config: {e}"))
        })?;
        ConnectorKind::Sink(c.with_file_target(PathBuf::from(file)))
    };
    // producer.override.* / consumer.override.*: the connector's [kafka] overrides, with the
    // same reserved properties and secret references as a TOML connector's.
    let mut kafka = KafkaProps::new();
    let base = raw.file.parent().unwrap_or(Path::new("."));
    for (key, written) in &kafka_overrides {
        if let Some(why) = kafka_props::daemon_only(key) {
            return Err(raw.err(written, why));
        }
        if let Some((_, why)) = kafka_props::RESERVED.iter().find(|(k, _)| k == key) {
            return Err(
                raw.err(written, format!("`{key}` is set by macklake and cannot be overridden: {why}"))
            );
        }
        let (value, referenced) = super::secrets::resolve(&raw.entries[written].value, base, ctx.secret_dirs)
            .map_err(|problem| raw.err(written, problem))?;
        if referenced {
            kafka.insert_secret(key.clone(), value);
        } else {
            kafka.insert(key.clone(), value);
        }
    }
    let config: BTreeMap<String, String> =
        raw.entries.iter().map(|(k, e)| (k.clone(), e.value.clone())).collect();
    Ok(ConnectorConfig {
        file: raw.file.clone(),
        name,
        kind,
        kafka,
        origin: Origin::Connect { class: class.to_string(), config },
    })
}

/// Connect's topic creation settings (KIP-158), for the topic a source creates if it is missing.
pub const TOPIC_CREATION: &str = "topic.creation.";

/// A FileStreamSource's `topic.creation.default.*` as a `[topic]` table (without its name):
/// `partitions` and `replication.factor` (-1: the broker's default), anything else a topic config.
/// Groups (`topic.creation.groups`, `topic.creation.<group>.*`) select by regex among the topics a
/// connector writes; a FileStreamSource writes one, so they are refused rather than guessed.
fn topic_creation(raw: &Raw) -> Result<toml::Table, ConfigError> {
    let mut spec = toml::Table::new();
    let mut config = toml::Table::new();
    // Groups are reported at `topic.creation.groups` itself when given, not at a group's key.
    let groups = format!("{TOPIC_CREATION}groups");
    let keys =
        raw.entries.keys().filter(|k| **k == groups).chain(raw.entries.keys().filter(|k| **k != groups));
    for key in keys {
        let entry = &raw.entries[key];
        let Some(rest) = key.strip_prefix(TOPIC_CREATION) else { continue };
        let Some(setting) = rest.strip_prefix("default.") else {
            return Err(raw.err(
                key,
                "topic creation groups are not supported: a FileStreamSource writes one topic; \
                 put its settings in topic.creation.default.*",
            ));
        };
        let value = entry.value.trim();
        match setting {
            "partitions" | "replication.factor" => {
                let n: i32 = value.parse().map_err(|_| raw.err(key, format!("`{value}` is not a number")))?;
                if n == 0 || n < -1 {
                    return Err(
                        raw.err(key, format!("`{value}`: a positive number, or -1 for the broker's default"))
                    );
                }
                if n > 0 {
                    let name = if setting == "partitions" { "partitions" } else { "replication_factor" };
                    spec.insert(name.into(), i64::from(n).into());
                }
            }
            _ => {
                config.insert(setting.to_string(), value.into());
            }
        }
    }
    if !config.is_empty() {
        spec.insert("config".into(), toml::Value::Table(config));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: LoadContext<'static> = LoadContext { converter: WorkerConverter::Raw, secret_dirs: &[] };

    fn props(text: &str) -> Result<ConnectorConfig, ConfigError> {
        parse_properties(Path::new("/etc/macklake/connectors.d/c.properties"), text.as_bytes(), CTX)
    }

    #[test]
    fn a_filestream_source_properties_file_runs_as_a_source() {
        let c = props(
            "# Connect's example\nname=local-file-source\nconnector.class=FileStreamSource\ntasks.max=1\n\
             file=/var/log/app.log\ntopic=connect-test\n",
        )
        .expect("valid");
        assert_eq!(c.name, "local-file-source");
        let ConnectorKind::Source(s) = &c.kind else { panic!("a source") };
        assert_eq!(s.paths, vec![PathBuf::from("/var/log/app.log")]);
        assert_eq!(s.topic.name, "connect-test");
        assert!(matches!(&c.origin, Origin::Connect { config, .. } if config["tasks.max"] == "1"));
    }

    #[test]
    fn a_filestream_sink_uses_connects_group_and_one_file() {
        let c = props(
            "name=local-file-sink\nconnector.class=org.apache.kafka.connect.file.FileStreamSinkConnector\n\
             file=/tmp/out.txt\ntopics=a, b\nvalue.converter=org.apache.kafka.connect.storage.StringConverter\n",
        )
        .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!(s.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(c.group_id(), "connect-local-file-sink");
    }

    #[test]
    fn a_filestream_sink_targets_its_file() {
        let c = props("name=x\nconnector.class=FileStreamSink\nfile=/tmp/o\ntopics=t\n").expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!(s.target(), &crate::config::Target::File(PathBuf::from("/tmp/o")));
    }

    #[test]
    fn what_would_change_the_output_is_refused_with_file_line_and_key() {
        let err = props(
            "name=x\nconnector.class=FileStreamSink\nfile=/tmp/o\ntopics=t\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n",
        )
        .expect_err("JsonConverter");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("value.converter")));
        assert!(err.message.contains("not supported"), "{err}");
        let err = props("name=x\nconnector.class=FileStreamSink\nfile=/tmp/o\ntopics=t\ntransforms=mask\n")
            .expect_err("transforms");
        assert_eq!(err.key.as_deref(), Some("transforms"));
        let err = props("name=x\nconnector.class=FileStreamSink\nfile=/tmp/o\ntopic=t\n").expect_err("topic");
        assert!(
            err.to_string().contains(
                "c.properties:4: key `topic`: unknown key for a FileStreamSink (did you mean `topics`?)"
            ),
            "{err}"
        );
        let err = props("name=x\nconnector.class=JdbcSink\nfile=/tmp/o\ntopics=t\n").expect_err("class");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn topic_creation_defaults_become_the_topic_settings_and_groups_are_refused() {
        let head = "name=s\nconnector.class=FileStreamSource\nfile=/var/log/a.log\ntopic=t\n";
        let c = props(&format!(
            "{head}topic.creation.default.replication.factor=3\ntopic.creation.default.partitions=6\n\
             topic.creation.default.cleanup.policy=delete\ntopic.creation.default.retention.ms=86400000\n"
        ))
        .expect("valid");
        let ConnectorKind::Source(s) = &c.kind else { panic!("a source") };
        assert_eq!(
            (s.topic.name.as_str(), s.topic.partitions, s.topic.replication_factor),
            ("t", Some(6), Some(3))
        );
        assert_eq!(s.topic.config.get("retention.ms").map(String::as_str), Some("86400000"));
        assert_eq!(s.topic.config.get("cleanup.policy").map(String::as_str), Some("delete"));
        let c = props(&format!("{head}topic.creation.default.partitions=-1\n")).expect("broker default");
        let ConnectorKind::Source(s) = &c.kind else { panic!("a source") };
        assert_eq!(s.topic.partitions, None);
        let err =
            props(&format!("{head}topic.creation.groups=compacted\ntopic.creation.compacted.include=t\n"))
                .expect_err("groups");
        assert_eq!(err.line, Some(5));
        assert!(err.message.contains("groups are not supported"), "{err}");
        let err = props("name=k\nconnector.class=FileStreamSink\nfile=/tmp/o\ntopics=t\ntopic.creation.default.partitions=3\n")
            .expect_err("sink");
        assert!(err.message.contains("source connectors only"), "{err}");
    }

    #[test]
    fn the_json_form_is_read_too() {
        let text = "{\n  \"name\": \"j\",\n  \"config\": {\n    \"connector.class\": \"FileStreamSource\",\n    \
                    \"file\": \"/var/log/j.log\",\n    \"topic\": \"t\",\n    \"tasks.max\": 1\n  }\n}\n";
        let c = parse_json(Path::new("/c/j.json"), text, CTX).expect("valid");
        assert_eq!(c.name, "j");
        let err = parse_json(Path::new("/c/j.json"), &text.replace("\"topic\"", "\"topik\""), CTX)
            .expect_err("typo");
        assert_eq!((err.line, err.key.as_deref()), (Some(6), Some("topik")));
        assert!(err.message.contains("did you mean `topic`"), "{err}");
    }
}
