//! Connector files: every `*.toml` in `connectors_dir` is one connector, `kind = "file-source"` or
//! `kind = "file-sink"` with that kind's keys (examples in `connectors/`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::kafka_props::{self, KafkaProps};
use super::layout::Template;
use super::{ConfigError, units};

/// One connector, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorConfig {
    /// The file it was read from (every report about the connector names it).
    pub file: PathBuf,
    pub name: String,
    pub kind: ConnectorKind,
    /// This connector's librdkafka overrides (on top of the daemon's).
    pub kafka: KafkaProps,
    /// The kind of file it came from.
    pub origin: Origin,
}

/// What kind of file a connector was defined in.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Origin {
    /// macklake's own TOML.
    #[default]
    Toml,
    /// A Kafka Connect `.properties` or JSON file: its class as written and its key/value map.
    Connect { class: String, config: BTreeMap<String, String> },
}

impl ConnectorConfig {
    /// The consumer group of a sink: its name, or for a Kafka Connect file Connect's own
    /// `connect-<name>`, so that it continues from the offsets a Connect worker committed.
    pub fn group_id(&self) -> String {
        match self.origin {
            Origin::Toml => self.name.clone(),
            Origin::Connect { .. } => format!("connect-{}", self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConnectorKind {
    Source(SourceConfig),
    Sink(SinkConfig),
}

impl ConnectorKind {
    pub fn name(&self) -> &'static str {
        match self {
            ConnectorKind::Source(_) => "file-source",
            ConnectorKind::Sink(_) => "file-sink",
        }
    }
}

/// `kind = "file-source"`: follow files, produce each new line to a topic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Absolute globs; a directory means every file in it.
    pub paths: Vec<PathBuf>,
    #[serde(default)]
    pub exclude: Vec<String>,
    pub topic: TopicSpec,
    #[serde(default)]
    pub start_at: StartAt,
    #[serde(default)]
    pub key: KeyMode,
    /// Longest line sent as one record; longer ones follow `long_lines`.
    #[serde(default = "defaults::max_line_bytes", with = "units::size")]
    pub max_line_bytes: u64,
    #[serde(default)]
    pub long_lines: LongLinePolicy,
    /// Lines grouped into records (a stack trace is one record).
    #[serde(default)]
    pub multiline: Option<Box<MultilineConfig>>,
    /// Only records matching one of these regexes are sent (all, if empty).
    #[serde(default)]
    pub include_lines: Vec<String>,
    /// Records matching one of these regexes are not sent (counted; their positions pass them).
    #[serde(default)]
    pub exclude_lines: Vec<String>,
    /// Where the first `max_line_bytes` of every over-long line also go, with headers giving the
    /// reason, the path, the offset and the original length (created if missing).
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// How often the watched directories are listed again, in case a filesystem event was lost.
    #[serde(default = "defaults::rescan_interval", with = "units::duration")]
    pub rescan_interval: Duration,
    /// How long an unterminated last line of a file that was rotated away waits before it is sent.
    #[serde(default = "defaults::partial_line_timeout", with = "units::duration")]
    pub partial_line_timeout: Duration,
    /// How often acknowledged positions are written to the checkpoint file.
    #[serde(default = "defaults::checkpoint_interval", with = "units::duration")]
    pub checkpoint_interval: Duration,
    /// Follow symlinks that match the globs (to regular files only). Off: a symlink planted in a
    /// watched directory must not make the daemon publish a file from elsewhere.
    #[serde(default)]
    pub follow_symlinks: bool,
    /// A file fully read and acknowledged that has not grown for this long has its descriptor
    /// closed; it is reopened by path (identity checked) when it changes.
    #[serde(default = "defaults::close_idle_after", with = "units::duration")]
    pub close_idle_after: Duration,
    /// At most this many files are held open; more wait until idle ones are closed.
    #[serde(default = "defaults::max_open_files")]
    pub max_open_files: usize,
    /// Checkpoint entries of files not seen for this long are dropped.
    #[serde(default = "defaults::forget_after", with = "units::duration")]
    pub forget_after: Duration,
    /// Exactly-once into Kafka: lines and the new file positions are written in one transaction;
    /// positions live in `offsets_topic` instead of the local checkpoint file.
    #[serde(default)]
    pub exactly_once: bool,
    /// Exactly-once mode: a transaction is committed at least this often...
    #[serde(default = "defaults::transaction_interval", with = "units::duration")]
    pub transaction_interval: Duration,
    /// ...or once it holds this many lines.
    #[serde(default = "defaults::transaction_max_lines")]
    pub transaction_max_lines: u64,
    /// Exactly-once mode: the compacted topic holding file positions (created with RF 3 if missing).
    #[serde(default = "defaults::offsets_topic")]
    pub offsets_topic: String,
    /// `connect-json` wraps each line in Kafka Connect JsonConverter's envelope with a string
    /// schema, as a Connect worker with schemas enabled would have written it.
    #[serde(default)]
    pub value_format: ValueFormat,
    /// Add the header `macklake.host` (the daemon id) to every record, so that two hosts' files
    /// with the same path can be told apart downstream. Off: the record shape stays Connect's.
    #[serde(default)]
    pub host_header: bool,
    #[serde(default, rename = "kind")]
    _kind: String,
    #[serde(default, rename = "name")]
    _name: String,
    // Read by `Head` (resolved, redacted); not kept here, so `Debug` cannot show a raw password.
    #[serde(default, rename = "kafka")]
    _kafka: de::IgnoredAny,
}

/// `kind = "file-sink"`: consume topics into rotating files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub topics: Vec<String>,
    /// Absolute directory; files go to `dir/TOPIC/TOPIC-PARTITION.log`. Exactly one of `dir`
    /// and `file` is given.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// One absolute file that every assigned partition appends to (Kafka Connect's
    /// FileStreamSink); never rotated.
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default = "defaults::rotate_bytes", with = "units::size")]
    pub rotate_bytes: u64,
    #[serde(default = "defaults::rotate_interval", with = "units::duration")]
    pub rotate_interval: Duration,
    /// `dir` only: rotate when the clock (the record time with a time layout, else the wall
    /// clock) crosses a multiple of `rotate_interval` since local midnight, instead of counting
    /// the interval from the file's start.
    #[serde(default)]
    pub rotate_aligned: bool,
    /// `dir` only: where rotated files go, a template of `{topic}`, `{partition}` and
    /// `{time:STRFTIME}` of the record time (see `layout::Template`); the active file stays at
    /// `DIR/TOPIC/TOPIC-PARTITION.log`.
    #[serde(default = "defaults::layout")]
    pub layout: String,
    /// The time zone of the layout's time fields and of aligned rotation.
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    /// `dir` only: a partition caught up (at its last stable offset) that received nothing for
    /// this long has its active file sealed (rotated), so the last records of a quiet hour end in
    /// a final file.
    #[serde(default, with = "units::opt_duration")]
    pub seal_idle_after: Option<Duration>,
    #[serde(default)]
    pub start_at: SinkStart,
    #[serde(default)]
    pub format: SinkFormat,
    /// What of the value is written: as it is, or the payload of a Connect JsonConverter envelope.
    #[serde(default)]
    pub value_format: ValueFormat,
    /// `dir` only: how rotated files are compressed (the active file always stays plain).
    #[serde(default)]
    pub compression: Compression,
    /// `dir` only: retention of rotated files per topic directory (oldest deleted first).
    #[serde(default)]
    pub keep_files: Option<usize>,
    #[serde(default, with = "units::opt_duration")]
    pub keep_age: Option<Duration>,
    #[serde(default, with = "units::opt_size")]
    pub keep_bytes: Option<u64>,
    /// How often written data is fsynced and its offsets committed.
    #[serde(default = "defaults::commit_interval", with = "units::duration")]
    pub commit_interval: Duration,
    /// Permissions of the files the sink creates, in octal (`"0640"`: owner and group read them;
    /// directories are 0750).
    #[serde(default = "defaults::file_mode", deserialize_with = "octal_mode")]
    pub file_mode: u32,
    #[serde(default, rename = "kind")]
    _kind: String,
    #[serde(default, rename = "name")]
    _name: String,
    // Read by `Head` (resolved, redacted); not kept here, so `Debug` cannot show a raw password.
    #[serde(default, rename = "kafka")]
    _kafka: de::IgnoredAny,
    /// Where the sink writes, as validation decided it from `dir` and `file` (see `target`).
    #[serde(skip)]
    target: Option<Target>,
    /// `layout`, parsed by validation (the default layout when not given).
    #[serde(skip)]
    template: Template,
}

/// Where a sink writes: exactly one of `dir` and `file`, decided once by validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `dir`: a directory of rotating files, `DIR/TOPIC/TOPIC-PARTITION.log`.
    Dir(PathBuf),
    /// `file`: one file every assigned partition appends to, never rotated.
    File(PathBuf),
}

impl SinkConfig {
    /// Where the sink writes. Every `SinkConfig` the crate hands out comes from `ConnectorConfig`'s
    /// parsers, which validate it and set this (a `SinkConfig` deserialized on its own is not a
    /// connector yet).
    pub fn target(&self) -> &Target {
        self.target.as_ref().expect("a SinkConfig is validated (dir or file) before it is used")
    }

    /// Where rotated files go (`layout`; `{topic}` unless given).
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The Kafka Connect mapping's sink (`file` only; its keys were validated there).
    pub(super) fn with_file_target(mut self, file: PathBuf) -> SinkConfig {
        self.target = Some(Target::File(file));
        self
    }
}

/// How record values relate to lines (sources) or file contents (sinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueFormat {
    /// The bytes as they are.
    #[default]
    Raw,
    /// Kafka Connect JsonConverter's envelope with a string schema,
    /// `{"schema":{"type":"string","optional":false},"payload":"<text>"}`: a source wraps each
    /// line in it; a sink unwraps it to the payload string (any other value is written raw,
    /// counted and logged once per partition).
    ConnectJson,
}

/// An octal permission string such as `"0640"` (or `"640"`).
fn octal_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let text = String::deserialize(d)?;
    match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
        Ok(mode) if mode <= 0o777 && mode & 0o002 == 0 => Ok(mode),
        Ok(_) => Err(de::Error::custom(format!("`{text}`: at most 0777, and not writable by others"))),
        Err(_) => Err(de::Error::custom(format!("`{text}` is not an octal mode such as \"0640\""))),
    }
}

/// The mode of the files a sink writes unless `file_mode` says otherwise.
pub const DEFAULT_FILE_MODE: u32 = 0o640;

mod defaults {
    use std::time::Duration;
    pub fn file_mode() -> u32 {
        super::DEFAULT_FILE_MODE
    }
    pub fn max_line_bytes() -> u64 {
        1024 * 1024
    }
    pub fn rescan_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub fn partial_line_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn checkpoint_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn close_idle_after() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn max_open_files() -> usize {
        1024
    }
    pub fn forget_after() -> Duration {
        Duration::from_secs(7 * 24 * 3600)
    }
    pub fn transaction_interval() -> Duration {
        Duration::from_secs(1)
    }
    pub fn transaction_max_lines() -> u64 {
        50_000
    }
    pub fn offsets_topic() -> String {
        "macklake-source-offsets".to_string()
    }
    pub fn rotate_bytes() -> u64 {
        64 * 1024 * 1024
    }
    pub fn rotate_interval() -> Duration {
        Duration::from_secs(3600)
    }
    pub fn layout() -> String {
        crate::config::layout::DEFAULT_LAYOUT.to_string()
    }
    pub fn timezone() -> String {
        "UTC".to_string()
    }
    pub fn commit_interval() -> Duration {
        Duration::from_secs(1)
    }
}

/// Where to start in files found at the connector's first start (later: the checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

/// The record key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// The file's path: one file's lines stay in one partition, in order.
    #[default]
    Path,
    /// No key: the producer spreads records over partitions.
    None,
}

/// What happens to a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LongLinePolicy {
    /// Sent as several records of at most `max_line_bytes` each.
    #[default]
    Split,
    /// Its first `max_line_bytes` are sent, the rest is dropped and counted.
    Truncate,
    /// Not sent; counted and logged.
    Skip,
}

/// `[multiline]`: how lines group into records. A record is its lines joined by `\n`; its
/// offset is its first line's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// Ready-made rules for common stack traces.
    pub preset: Option<MultilinePreset>,
    /// Alone: a record begins at each line that matches. With `condition_pattern`: when no
    /// record is open, a line that does not match is a record by itself (Vector's).
    pub start_pattern: Option<String>,
    /// Which lines continue or end a record, as `mode` says.
    pub condition_pattern: Option<String>,
    /// With `condition_pattern` (default `continue_through`).
    pub mode: Option<MultilineMode>,
    /// `condition_pattern` selects the lines that do not match it.
    pub negate: bool,
    /// A record is cut after this many lines (the cut is counted; the rest is the next record).
    pub max_lines: usize,
    #[serde(with = "units::size")]
    pub max_bytes: u64,
    /// An unfinished record is sent after nothing came for this long.
    #[serde(with = "units::duration")]
    pub timeout: Duration,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            preset: None,
            start_pattern: None,
            condition_pattern: None,
            mode: None,
            negate: false,
            max_lines: 500,
            max_bytes: 1024 * 1024,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Vector's multi-line modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultilineMode {
    /// The lines that match continue the record (the first need not).
    #[default]
    ContinueThrough,
    /// The lines that match continue it, and so does the one line after them.
    ContinuePast,
    /// The lines that do not match continue it; one that matches begins the next.
    HaltBefore,
    /// The lines continue it up to and including the first that matches.
    HaltWith,
}

/// `[multiline] preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultilinePreset {
    /// Java and JVM stack traces: the exception line, `at ...`, `... N more`, `Caused by:`.
    Java,
    /// Python tracebacks, ending with the exception's line; chained ones too.
    Python,
    /// Go panics and goroutine dumps.
    Go,
    /// Every indented line continues the record before it.
    Indented,
}

/// Where a new consumer group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkStart {
    #[default]
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkFormat {
    /// The value followed by `\n`, bytes as they are.
    #[default]
    Lines,
    /// One JSON object per record and line: topic, partition, offset, timestamp, key, headers,
    /// value (text when UTF-8, else base64, said so by `*_encoding`); see `sink::format`.
    Json,
}

/// Compression of rotated files (directory sinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// What a compressed rotated file's name ends with after `.log`.
    pub fn suffix(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(".gz"),
            Compression::Zstd => Some(".zst"),
        }
    }
}

/// `topic = "name"`, or a `[topic]` table whose settings are used only if the topic must be created.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i32>,
    pub config: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicTable {
    name: String,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

impl<'de> Deserialize<'de> for TopicSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopicSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a topic name, or a [topic] table with name, partitions, replication_factor, config",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TopicSpec, E> {
                Ok(TopicSpec { name: v.to_string(), ..TopicSpec::default() })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TopicSpec, A::Error> {
                let t = TopicTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let config = t
                    .config
                    .into_iter()
                    .map(|(k, v)| {
                        let text = match v {
                            toml::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, text)
                    })
                    .collect();
                Ok(TopicSpec {
                    name: t.name,
                    partitions: t.partitions,
                    replication_factor: t.replication_factor,
                    config,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Head {
    name: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    kafka: BTreeMap<String, toml::Value>,
}

impl ConnectorConfig {
    /// Reads a connector file; `${file:...}` references may read only under `secret_dirs`.
    pub fn load(file: &Path, secret_dirs: &[PathBuf]) -> Result<ConnectorConfig, ConfigError> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| ConfigError::new(file, format!("cannot read the connector file: {e}")))?;
        Self::parse(file, &text, secret_dirs)
    }

    pub fn parse(file: &Path, text: &str, secret_dirs: &[PathBuf]) -> Result<ConnectorConfig, ConfigError> {
        let head: Head = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        let name = head
            .name
            .ok_or_else(|| ConfigError::new(file, "missing key `name` (the connector's unique name)"))?;
        validate_name(&name).map_err(|m| ConfigError::at_key(file, text, None, "name", m))?;
        let kind = match head.kind.as_deref() {
            Some("file-source") => {
                let c: SourceConfig =
                    toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
                validate_source(file, text, &c)?;
                ConnectorKind::Source(c)
            }
            Some("file-sink") => {
                let mut c: SinkConfig =
                    toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
                c.target = Some(validate_sink(file, text, &c)?);
                c.template = Template::parse(&c.layout)
                    .map_err(|m| ConfigError::at_key(file, text, None, "layout", format!("layout {m}")))?;
                ConnectorKind::Sink(c)
            }
            Some(other) => {
                return Err(ConfigError::at_key(
                    file,
                    text,
                    None,
                    "kind",
                    format!("unknown kind `{other}`: use \"file-source\" or \"file-sink\""),
                ));
            }
            None => {
                return Err(ConfigError::new(file, "missing key `kind` (\"file-source\" or \"file-sink\")"));
            }
        };
        let scope =
            kafka_props::SecretScope { base: file.parent().unwrap_or(Path::new(".")), allowed: secret_dirs };
        let kafka = kafka_props::from_toml(file, text, "kafka", &head.kafka, scope)?;
        for (key, _) in kafka.iter() {
            if let Some(why) = kafka_props::daemon_only(key) {
                return Err(ConfigError::at_key(file, text, Some("kafka"), key, why));
            }
        }
        Ok(ConnectorConfig { file: file.to_path_buf(), name, kind, kafka, origin: Origin::Toml })
    }
}

pub(super) fn validate_name(name: &str) -> Result<(), String> {
    // The name becomes a consumer group, a state directory and part of a transactional id.
    if name.is_empty() || name.len() > 200 {
        return Err("the name must be 1 to 200 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || name.starts_with('.')
    {
        return Err(format!(
            "`{name}` may use only letters, digits, '.', '_' and '-', and not start with '.'"
        ));
    }
    Ok(())
}

/// Kafka's own rule for topic names.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." {
        return Err(format!("`{topic}` is not a valid topic name (1 to 249 characters, not . or ..)"));
    }
    if !topic.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(format!("`{topic}` is not a valid topic name (letters, digits, '.', '_', '-')"));
    }
    Ok(())
}

fn validate_source(file: &Path, text: &str, c: &SourceConfig) -> Result<(), ConfigError> {
    if c.paths.is_empty() {
        return Err(ConfigError::at_key(file, text, None, "paths", "give at least one path or glob"));
    }
    for p in &c.paths {
        if !p.is_absolute() {
            return Err(ConfigError::at_key(
                file,
                text,
                None,
                "paths",
                format!("`{}` is relative: paths must be absolute", p.display()),
            ));
        }
        globset::Glob::new(&p.to_string_lossy())
            .map_err(|e| ConfigError::at_key(file, text, None, "paths", format!("bad glob: {e}")))?;
    }
    for p in &c.exclude {
        globset::Glob::new(p)
            .map_err(|e| ConfigError::at_key(file, text, None, "exclude", format!("bad glob: {e}")))?;
    }
    let topic_table = text.lines().any(|l| l.trim() == "[topic]");
    let (table, key) = if topic_table { (Some("topic"), "name") } else { (None, "topic") };
    validate_topic(&c.topic.name).map_err(|m| ConfigError::at_key(file, text, table, key, m))?;
    validate_topic(&c.offsets_topic)
        .map_err(|m| ConfigError::at_key(file, text, None, "offsets_topic", m))?;
    if let Some(t) = &c.dead_letter_topic {
        validate_topic(t).map_err(|m| ConfigError::at_key(file, text, None, "dead_letter_topic", m))?;
    }
    if c.transaction_max_lines == 0 {
        return Err(ConfigError::at_key(file, text, None, "transaction_max_lines", "must be at least 1"));
    }
    if c.max_line_bytes == 0 {
        return Err(ConfigError::at_key(file, text, None, "max_line_bytes", "must be at least 1 byte"));
    }
    if c.max_open_files == 0 {
        return Err(ConfigError::at_key(file, text, None, "max_open_files", "must be at least 1"));
    }
    validate_events(file, text, c)
}

/// `[multiline]`, `include_lines` and `exclude_lines`: one way of grouping, patterns that compile
/// (the `regex` crate's syntax, bytes mode, as `source::events` compiles them).
fn validate_events(file: &Path, text: &str, c: &SourceConfig) -> Result<(), ConfigError> {
    let check = |table: Option<&str>, key: &str, pattern: &str| {
        regex::bytes::Regex::new(pattern)
            .map(|_| ())
            .map_err(|e| ConfigError::at_key(file, text, table, key, format!("bad regex: {e}")))
    };
    for p in &c.include_lines {
        check(None, "include_lines", p)?;
    }
    for p in &c.exclude_lines {
        check(None, "exclude_lines", p)?;
    }
    let Some(m) = &c.multiline else { return Ok(()) };
    let at = |key: &str, message: &str| ConfigError::at_key(file, text, Some("multiline"), key, message);
    if m.preset.is_some() && m.condition_pattern.is_some() {
        return Err(at("condition_pattern", "give either preset or condition_pattern, not both"));
    }
    if m.condition_pattern.is_none() && (m.mode.is_some() || m.negate) {
        let key = if m.mode.is_some() { "mode" } else { "negate" };
        return Err(at(key, "applies to condition_pattern, which is not given"));
    }
    if m.preset.is_none() && m.condition_pattern.is_none() && m.start_pattern.is_none() {
        return Err(at("preset", "give start_pattern, condition_pattern (with mode) or preset"));
    }
    if m.max_lines == 0 {
        return Err(at("max_lines", "must be at least 1"));
    }
    if m.max_bytes == 0 {
        return Err(at("max_bytes", "must be at least 1 byte"));
    }
    if let Some(p) = &m.start_pattern {
        check(Some("multiline"), "start_pattern", p)?;
    }
    if let Some(p) = &m.condition_pattern {
        check(Some("multiline"), "condition_pattern", p)?;
    }
    Ok(())
}

/// Checks a sink's keys and returns where it writes.
fn validate_sink(file: &Path, text: &str, c: &SinkConfig) -> Result<Target, ConfigError> {
    if c.topics.is_empty() {
        return Err(ConfigError::at_key(file, text, None, "topics", "give at least one topic"));
    }
    for t in &c.topics {
        validate_topic(t).map_err(|m| ConfigError::at_key(file, text, None, "topics", m))?;
    }
    // On a case-insensitive file system (macOS, some mounts) their directories would be one.
    for (i, a) in c.topics.iter().enumerate() {
        if let Some(b) = c.topics[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a) && *b != a) {
            return Err(ConfigError::at_key(
                file,
                text,
                None,
                "topics",
                format!(
                    "`{a}` and `{b}` differ only in case: on a case-insensitive file system their archives would mix; archive them with separate sinks"
                ),
            ));
        }
    }
    let target = match (&c.dir, &c.file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at_key(
                file,
                text,
                None,
                "file",
                "give either `dir` (a directory of rotating files) or `file` (one file), not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                file,
                "missing key `dir` (a directory of rotating files) or `file` (one file)",
            ));
        }
        (Some(dir), None) if !dir.is_absolute() => {
            return Err(ConfigError::at_key(
                file,
                text,
                None,
                "dir",
                format!("`{}` is relative: the sink directory must be absolute", dir.display()),
            ));
        }
        (Some(dir), None) => Target::Dir(dir.clone()),
        (None, Some(f)) => {
            if !f.is_absolute() || f.file_name().is_none() {
                return Err(ConfigError::at_key(
                    file,
                    text,
                    None,
                    "file",
                    format!("`{}` must be an absolute path to a file", f.display()),
                ));
            }
            // The path goes into every partition's commit metadata (Kafka allows 4 KiB).
            if f.as_os_str().len() > 1024 {
                return Err(ConfigError::at_key(
                    file,
                    text,
                    None,
                    "file",
                    "the path must be at most 1024 bytes",
                ));
            }
            // A single file is never rotated (Kafka Connect's FileStreamSink does not rotate), so
            // there is nothing to compress or expire either.
            for key in [
                "rotate_bytes",
                "rotate_interval",
                "rotate_aligned",
                "layout",
                "timezone",
                "seal_idle_after",
                "compression",
                "keep_files",
                "keep_age",
                "keep_bytes",
            ] {
                if given(text, key) {
                    return Err(ConfigError::at_key(
                        file,
                        text,
                        None,
                        key,
                        format!(
                            "a single-file sink (`file`) is never rotated: `{key}` applies to `dir` only"
                        ),
                    ));
                }
            }
            Target::File(f.clone())
        }
    };
    if c.keep_files == Some(0) {
        return Err(ConfigError::at_key(file, text, None, "keep_files", "must be at least 1"));
    }
    if c.rotate_bytes == 0 {
        return Err(ConfigError::at_key(file, text, None, "rotate_bytes", "must be at least 1 byte"));
    }
    super::layout::time_zone(&c.timezone)
        .map_err(|m| ConfigError::at_key(file, text, None, "timezone", m))?;
    if c.rotate_aligned {
        super::layout::check_aligned_interval(c.rotate_interval)
            .map_err(|m| ConfigError::at_key(file, text, None, "rotate_interval", m))?;
    }
    if c.seal_idle_after.is_some_and(|d| d < Duration::from_secs(1)) {
        return Err(ConfigError::at_key(file, text, None, "seal_idle_after", "must be at least 1s"));
    }
    Ok(target)
}

/// True if `key` is written at the top level of the connector file (to reject keys that do not
/// apply, even when given their default value).
fn given(text: &str, key: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key(key))
}

/// Every connector file in `dir` (`*.toml`, sorted by name), each parsed on its own: one bad file
/// does not hide the others. Duplicate names are reported against the later file.
pub fn load_dir(
    dir: &Path,
    ctx: LoadContext<'_>,
) -> Result<Vec<Result<ConnectorConfig, ConfigError>>, ConfigError> {
    // Whoever can add a file here can make the daemon read and write anything it may.
    super::trust::check(dir).map_err(|m| ConfigError::new(dir, format!("connectors directory {m}")))?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::new(dir, format!("cannot list the connectors directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "toml" || x == "properties" || x == "json") && p.is_file()
        })
        .collect();
    files.sort();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    // What each sink writes: a topic's directory under `dir`, or its `file`. Two sinks writing the
    // same files would each reconcile away the other's records.
    let mut written: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    Ok(files
        .iter()
        .map(|f| {
            let c = load_any(f, ctx)?;
            if let Some(first) = seen.get(&c.name) {
                return Err(ConfigError::new(
                    f,
                    format!("connector name `{}` is already used by {}", c.name, first.display()),
                ));
            }
            let targets: Vec<PathBuf> = match &c.kind {
                ConnectorKind::Sink(sink) => match sink.target() {
                    Target::Dir(dir) => sink.topics.iter().map(|t| dir.join(t)).collect(),
                    Target::File(file) => vec![file.clone()],
                },
                ConnectorKind::Source(_) => Vec::new(),
            };
            if let Some((target, other)) = targets.iter().find_map(|t| written.get(t).map(|o| (t, o))) {
                return Err(ConfigError::new(
                    f,
                    format!(
                        "{} is already written by the sink in {}: two sinks must not write the same files \
                         (give this one another `dir` or `file`)",
                        target.display(),
                        other.display()
                    ),
                ));
            }
            seen.insert(c.name.clone(), f.clone());
            written.extend(targets.into_iter().map(|t| (t, f.clone())));
            Ok(c)
        })
        .collect())
}

/// What loading connector files takes from the daemon config.
#[derive(Debug, Clone, Copy)]
pub struct LoadContext<'a> {
    /// The worker converter Kafka Connect files are taken to have run under.
    pub converter: super::connect::WorkerConverter,
    /// `${file:...}` secret references may read only under these directories.
    pub secret_dirs: &'a [PathBuf],
}

impl<'a> LoadContext<'a> {
    pub fn of(config: &'a super::DaemonConfig) -> LoadContext<'a> {
        LoadContext { converter: config.connect_converter, secret_dirs: &config.secret_dirs }
    }
}

/// One connector file of any supported kind, by its extension: macklake's `.toml`, or a Kafka
/// Connect `.properties` / `.json` file.
pub fn load_any(file: &Path, ctx: LoadContext<'_>) -> Result<ConnectorConfig, ConfigError> {
    super::trust::check(file).map_err(|m| ConfigError::new(file, m))?;
    let bytes = std::fs::read(file)
        .map_err(|e| ConfigError::new(file, format!("cannot read the connector file: {e}")))?;
    match file.extension().and_then(|x| x.to_str()) {
        Some("properties") => super::connect::parse_properties(file, &bytes, ctx),
        Some("json") => {
            let text = String::from_utf8(bytes).map_err(|_| ConfigError::new(file, "not UTF-8 text"))?;
            super::connect::parse_json(file, &text, ctx)
        }
        _ => {
            let text = String::from_utf8(bytes).map_err(|_| ConfigError::new(file, "not UTF-8 text"))?;
            ConnectorConfig::parse(file, &text, ctx.secret_dirs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConnectorConfig, ConfigError> {
        ConnectorConfig::parse(Path::new("/etc/macklake/connectors.d/app.toml"), text, &[])
    }

    #[test]
    fn two_sinks_writing_the_same_files_are_refused_naming_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sink = |name: &str, topics: &str, target: &str| {
            format!("name = \"{name}\"\nkind = \"file-sink\"\ntopics = [{topics}]\n{target}\n")
        };
        let write = |file: &str, text: String| std::fs::write(dir.path().join(file), text).expect("write");
        write("a.toml", sink("a", "\"t1\", \"t2\"", "dir = \"/srv/archive\""));
        write("b.toml", sink("b", "\"t3\"", "dir = \"/srv/archive\"")); // same dir, other topic: fine
        write("c.toml", sink("c", "\"t2\"", "dir = \"/srv/archive\""));
        write("d.toml", sink("d", "\"t1\"", "file = \"/srv/all.txt\""));
        write("e.toml", sink("e", "\"t9\"", "file = \"/srv/all.txt\""));
        let ctx = LoadContext { converter: Default::default(), secret_dirs: &[] };
        let loaded = load_dir(dir.path(), ctx).expect("the directory loads");
        let verdicts: Vec<Result<String, String>> =
            loaded.into_iter().map(|r| r.map(|c| c.name).map_err(|e| e.to_string())).collect();
        assert_eq!(verdicts.len(), 5);
        assert!(verdicts[0..2] == [Ok("a".into()), Ok("b".into())], "{verdicts:?}");
        let c = verdicts[2].as_ref().expect_err("c writes t2 like a");
        assert!(c.contains("/srv/archive/t2") && c.contains("a.toml"), "{c}");
        assert_eq!(verdicts[3], Ok("d".into()));
        let e = verdicts[4].as_ref().expect_err("e writes d's file");
        assert!(e.contains("/srv/all.txt") && e.contains("d.toml"), "{e}");
    }

    #[test]
    fn debug_of_a_connector_never_shows_a_password_written_in_it() {
        let c = parse(
            "name = \"app\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\n\
             [kafka]\n\"sasl.password\" = \"hunter2-literal\"\n",
        )
        .expect("valid");
        assert_eq!(c.kafka.get("sasl.password").map(String::as_str), Some("hunter2-literal"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && shown.contains("[hidden]"), "{shown}");
    }

    #[test]
    fn properties_that_run_commands_or_read_files_are_refused_in_connector_files() {
        let err = parse(
            "name = \"x\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/tmp\"\n[kafka]\n\
             \"sasl.kerberos.kinit.cmd\" = \"touch /tmp/pwned\"\n",
        )
        .expect_err("a command");
        assert_eq!((err.line, err.key.as_deref()), (Some(6), Some("kafka.sasl.kerberos.kinit.cmd")));
        assert!(
            err.message.contains("runs a shell command") && err.message.contains("daemon config"),
            "{err}"
        );
        for (key, _) in kafka_props::DAEMON_ONLY {
            let text = format!(
                "name = \"x\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/tmp\"\n[kafka]\n\"{key}\" = \"v\"\n"
            );
            assert!(parse(&text).is_err(), "{key} refused in a connector file");
        }
    }

    #[test]
    fn a_source_with_a_topic_table() {
        let c = parse(
            "name = \"app\"\nkind = \"file-source\"\npaths = [\"/var/log/app/*.log\"]\n\
             [topic]\nname = \"app-logs\"\npartitions = 6\nreplication_factor = 3\n\
             config = { \"retention.ms\" = \"86400000\" }\n[kafka]\n\"linger.ms\" = \"5\"\n",
        )
        .expect("valid");
        let ConnectorKind::Source(s) = &c.kind else { panic!("a source") };
        assert_eq!(s.topic.name, "app-logs");
        assert_eq!(s.topic.partitions, Some(6));
        assert_eq!(s.topic.config.get("retention.ms").map(String::as_str), Some("86400000"));
        assert_eq!(s.start_at, StartAt::Beginning);
        assert_eq!(c.kafka.get("linger.ms").map(String::as_str), Some("5"));
    }

    #[test]
    fn a_sink_with_sizes_and_durations() {
        let c = parse(
            "name = \"arch\"\nkind = \"file-sink\"\ntopics = [\"a\", \"b\"]\ndir = \"/srv/archive\"\n\
             rotate_bytes = \"1MiB\"\nrotate_interval = \"10m\"\n",
        )
        .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!(s.rotate_bytes, 1024 * 1024);
        assert_eq!(s.rotate_interval, Duration::from_secs(600));
        assert_eq!(s.start_at, SinkStart::Earliest);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let err = parse(
            "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\nrotate_bytes = \"huge\"\n",
        )
        .expect_err("bad size");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("rotate_bytes")));
        let err =
            parse("name = \"a\"\nkind = \"file-sink\"\ntopic = [\"t\"]\ndir = \"/d\"\n").expect_err("typo");
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("did you mean `topics`"), "{err}");
        let err = parse("name = \"a\"\nkind = \"file-source\"\npaths = [\"logs/*.log\"]\ntopic = \"t\"\n")
            .expect_err("relative");
        assert_eq!((err.line, err.key.as_deref()), (Some(3), Some("paths")));
        let err = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"../x\"]\ndir = \"/d\"\n")
            .expect_err("topic");
        assert!(err.message.contains("not a valid topic name"), "{err}");
        let err = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\n[kafka]\n\"group.id\" = \"x\"\n")
            .expect_err("reserved");
        assert_eq!((err.line, err.key.as_deref()), (Some(6), Some("kafka.group.id")));
        let err = parse("name = \"a\"\nkind = \"file-pipe\"\n").expect_err("kind");
        assert_eq!(err.line, Some(2));
    }

    /// Issue 16: a pattern that does not compile, or grouping keys that contradict each other,
    /// are refused with the file's line and the key.
    #[test]
    fn multiline_and_filter_errors_name_the_line_and_key() {
        let base = "name = \"a\"\nkind = \"file-source\"\npaths = [\"/l/*.log\"]\ntopic = \"t\"\n";
        let err = parse(&format!("{base}include_lines = [\"ok\", \"(unclosed\"]\n")).expect_err("bad regex");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("include_lines")));
        assert!(err.message.contains("bad regex"), "{err}");
        let err = parse(&format!("{base}[multiline]\nmode = \"halt_with\"\ncondition_pattern = \"[\"\n"))
            .expect_err("bad regex");
        assert_eq!((err.line, err.key.as_deref()), (Some(7), Some("multiline.condition_pattern")));
        let err = parse(&format!("{base}[multiline]\npreset = \"java\"\ncondition_pattern = \"x\"\n"))
            .expect_err("both");
        assert_eq!(err.key.as_deref(), Some("multiline.condition_pattern"));
        let err = parse(&format!("{base}[multiline]\nmode = \"halt_with\"\n")).expect_err("mode alone");
        assert_eq!((err.line, err.key.as_deref()), (Some(6), Some("multiline.mode")));
        let err = parse(&format!("{base}[multiline]\npreset = \"cobol\"\n")).expect_err("unknown preset");
        assert_eq!(err.line, Some(6), "{err}");
        let err = parse(&format!("{base}[multiline]\nmax_lines = 10\n")).expect_err("no rule");
        assert_eq!(err.key.as_deref(), Some("multiline.preset"), "{err}");
        let c = parse(&format!("{base}exclude_lines = [\"^DEBUG\"]\n[multiline]\npreset = \"python\"\n"))
            .expect("valid");
        let ConnectorKind::Source(s) = &c.kind else { panic!("a source") };
        assert_eq!(s.multiline.as_ref().and_then(|m| m.preset), Some(MultilinePreset::Python));
        assert_eq!(
            s.multiline.as_ref().map(|m| (m.max_lines, m.timeout)),
            Some((500, Duration::from_secs(1)))
        );
    }

    #[test]
    fn validation_decides_the_sink_target() {
        let c = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\nfile = \"/srv/all.txt\"\n")
            .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!(s.target(), &Target::File(PathBuf::from("/srv/all.txt")));
        let c = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/srv/archive\"\n")
            .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!(s.target(), &Target::Dir(PathBuf::from("/srv/archive")));
    }

    #[test]
    fn a_sink_has_exactly_one_of_dir_and_file() {
        let c = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\nfile = \"/srv/all.txt\"\n")
            .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!((s.dir.as_deref(), s.file.as_deref()), (None, Some(Path::new("/srv/all.txt"))));
        let err =
            parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\nfile = \"/f\"\n")
                .expect_err("both");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("file")));
        let err = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\n").expect_err("neither");
        assert!(err.message.contains("`dir`") && err.message.contains("`file`"), "{err}");
        let err = parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\nfile = \"rel.txt\"\n")
            .expect_err("relative");
        assert_eq!((err.line, err.key.as_deref()), (Some(4), Some("file")));
        let err = parse(
            "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\nfile = \"/f\"\nrotate_bytes = \"1MiB\"\n",
        )
        .expect_err("rotation");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("rotate_bytes")));
        let err =
            parse("name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\nfile = \"/f\"\nkeep_files = 3\n")
                .expect_err("retention");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("keep_files")));
    }

    #[test]
    fn archive_layout_keys_are_checked_with_file_line_and_key() {
        let sink = "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\n";
        let c = parse(&format!(
            "{sink}layout = \"{{topic}}/{{time:%Y/%m/%d}}\"\ntimezone = \"Europe/Paris\"\nrotate_aligned = true\nseal_idle_after = \"5m\"\n"
        ))
        .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert!(s.template().has_time());
        assert_eq!(s.seal_idle_after, Some(Duration::from_secs(300)));
        for (extra, key, line) in [
            ("layout = \"{topic}/../x\"\n", "layout", 5),
            ("layout = \"{hour}\"\n", "layout", 5),
            ("timezone = \"Mars/Olympus\"\n", "timezone", 5),
            ("rotate_aligned = true\nrotate_interval = \"7m\"\n", "rotate_interval", 6),
            ("seal_idle_after = \"10ms\"\n", "seal_idle_after", 5),
        ] {
            let err = parse(&format!("{sink}{extra}")).expect_err(extra);
            assert_eq!((err.line, err.key.as_deref()), (Some(line), Some(key)), "{extra}: {err}");
        }
        let err = parse(
            "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\nfile = \"/f\"\nlayout = \"{topic}\"\n",
        )
        .expect_err("a single file has no layout");
        assert_eq!(err.key.as_deref(), Some("layout"));
    }

    #[test]
    fn archive_housekeeping_keys() {
        let c = parse(
            "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\ncompression = \"zstd\"\n\
             keep_files = 10\nkeep_age = \"7d\"\nkeep_bytes = \"1GiB\"\n",
        )
        .expect("valid");
        let ConnectorKind::Sink(s) = &c.kind else { panic!("a sink") };
        assert_eq!(s.compression, Compression::Zstd);
        assert_eq!(
            (s.keep_files, s.keep_age, s.keep_bytes),
            (Some(10), Some(Duration::from_secs(7 * 86400)), Some(1024 * 1024 * 1024))
        );
        let err = parse(
            "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/d\"\ncompression = \"lz4\"\n",
        )
        .expect_err("unknown");
        assert_eq!((err.line, err.key.as_deref()), (Some(5), Some("compression")));
    }
}
