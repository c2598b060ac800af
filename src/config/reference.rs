//! The configuration reference: every key of the daemon config and of each connector kind, with
//! its type, default and meaning, and how Kafka Connect connector files map onto them. `macklake
//! config-reference` prints it as Markdown; `docs/configuration.md` is that output.
//!
//! The tables are checked against the serde structs in both directions (tests below): every key
//! documented here is accepted by them, every key they accept is documented here (read from
//! serde's own list of fields, which its `deny_unknown_fields` error names), and every default
//! written here as a TOML value is the one the code applies.

use std::fmt::Write as _;

/// One key of a config file.
pub struct Key {
    /// As written in the file; `table.key` for a key inside a table.
    pub name: &'static str,
    pub ty: &'static str,
    pub default: Default,
    /// A value the key accepts, as TOML (the reference test sets every key to it).
    pub example: &'static str,
    pub doc: &'static str,
}

/// What a key is when it is not written.
pub enum Default {
    /// The file is refused without it.
    Required,
    /// This TOML value (checked: writing it changes nothing).
    Value(&'static str),
    /// Said in words: computed, or "not set" with its meaning.
    Text(&'static str),
}

/// A group of keys: the daemon config, or one connector kind.
pub struct Section {
    pub title: &'static str,
    pub intro: &'static str,
    pub keys: &'static [Key],
}

use Default::{Required, Text, Value};

const fn key(
    name: &'static str,
    ty: &'static str,
    default: Default,
    example: &'static str,
    doc: &'static str,
) -> Key {
    Key { name, ty, default, example, doc }
}

pub const DAEMON: Section = Section {
    title: "Daemon config (`macklake.toml`)",
    intro: "Given to `macklake run|check|status|import-offsets --config FILE` (or `MACKLAKE_CONFIG`). \
            Relative paths are relative to the directory of this file. Read at start-up only: a change \
            needs a restart (connector files are reloaded live). Annotated example: `config/macklake.toml`.",
    keys: &[
        key(
            "connectors_dir",
            "path",
            Required,
            "\"connectors.d\"",
            "Every `*.toml`, `*.properties` and `*.json` file in it is one connector. Must be owned by root or the daemon's user and not writable by group or others.",
        ),
        key(
            "state_dir",
            "path",
            Required,
            "\"/var/lib/macklake\"",
            "Source checkpoints (`sources/NAME/`) and sink commit caches (`sinks/NAME/`). One daemon per `state_dir` (a second is refused).",
        ),
        key(
            "daemon_id",
            "string",
            Text("the host name"),
            "\"web-1\"",
            "Names this daemon in sink commit metadata, exactly-once transactional ids (`macklake-<daemon_id>-<connector>`), offsets-topic keys and the `macklake.host` header. Keep it stable and unique per host: changing it is a new identity (see docs/operations.md).",
        ),
        key(
            "shutdown_timeout",
            "duration",
            Value("\"30s\""),
            "\"20s\"",
            "Bound on a graceful stop (SIGTERM/SIGINT): stop reading, flush, checkpoint, fsync, commit.",
        ),
        key(
            "secret_dirs",
            "list of paths",
            Text("the daemon config's own directory"),
            "[\"/etc/macklake/secrets\"]",
            "The only directories `${file:PATH:KEY}` secret references may read (symlinks and `..` resolved first).",
        ),
        key(
            "log.level",
            "string",
            Value("\"info\""),
            "\"info,macklake=debug\"",
            "`error`, `warn`, `info`, `debug`, `trace`, or any tracing filter. The environment variable `MACKLAKE_LOG` overrides it.",
        ),
        key(
            "log.format",
            "`\"text\"` or `\"json\"`",
            Value("\"text\""),
            "\"json\"",
            "Log lines on stderr (journald under systemd).",
        ),
        key(
            "http.enabled",
            "bool",
            Value("true"),
            "true",
            "Serve `/metrics`, `/health` and the Kafka Connect REST API.",
        ),
        key(
            "http.listen",
            "address:port",
            Value("\"127.0.0.1:8083\""),
            "\"127.0.0.1:8083\"",
            "Where the HTTP listener binds: Kafka Connect's port, loopback only unless you say otherwise.",
        ),
        key(
            "http.allowed_hosts",
            "list of strings",
            Value("[]"),
            "[\"macklake-1.example\"]",
            "Names a request's `Host` header may carry besides the listener's own address. Anything else gets 421 (DNS rebinding protection): list the name a remote Prometheus scrapes by.",
        ),
        key(
            "connect.value_converter",
            "`\"raw\"` or `\"json-with-schemas\"`",
            Value("\"raw\""),
            "\"json-with-schemas\"",
            "The worker converter Kafka Connect connector files ran under: with `json-with-schemas` their sources wrap lines in JsonConverter's envelope and their sinks unwrap it.",
        ),
        key(
            "kafka",
            "table of librdkafka properties",
            Value("{}"),
            "{ \"bootstrap.servers\" = \"127.0.0.1:9092\" }",
            "Passed to librdkafka as given, for every connector (`\"bootstrap.servers\"`, TLS, SASL, timeouts). Values may be `${env:NAME}` or `${file:PATH:KEY}`. Refused: `acks`, `enable.idempotence`, `transactional.id`, `group.id`, `enable.auto.commit`, `enable.auto.offset.store`, `isolation.level` (set by macklake).",
        ),
    ],
};

/// Keys every connector file has; listed in each kind's table too, since each kind's struct takes them.
const NAME: Key = key(
    "name",
    "string",
    Required,
    "\"app-logs\"",
    "Unique among the daemon's connectors; letters, digits, `.`, `_`, `-`. It names the state directory, a sink's consumer group and part of an exactly-once transactional id: renaming is a new connector (see docs/operations.md).",
);
const CONNECTOR_KAFKA: Key = key(
    "kafka",
    "table of librdkafka properties",
    Value("{}"),
    "{ \"linger.ms\" = \"5\" }",
    "This connector's librdkafka overrides, on top of the daemon's `[kafka]`. Besides the reserved properties, those that read files, run commands or load code (`ssl.*.location`, `sasl.kerberos.*`, `plugin.library.paths`, ...) are refused here: put them in the daemon config.",
);

pub const SOURCE: Section = Section {
    title: "file-source connector (`kind = \"file-source\"`)",
    intro: "Follows files and produces every new line to a topic. Example: `connectors/app-logs.toml`.",
    keys: &[
        NAME,
        key("kind", "`\"file-source\"`", Required, "\"file-source\"", "The connector kind."),
        key(
            "paths",
            "list of absolute globs",
            Required,
            "[\"/var/log/app/*.log\"]",
            "Files to follow. `*` stays within a directory, `**` crosses directories; a directory means every file in it.",
        ),
        key(
            "exclude",
            "list of globs",
            Value("[]"),
            "[\"*.gz\"]",
            "Files not to follow. A pattern without `/` is matched against the file name (`\"*.gz\"`); one with `/` against the whole absolute path (`\"/var/log/app/old/**\"`).",
        ),
        key(
            "topic",
            "string, or a table",
            Required,
            "\"app-logs\"",
            "The topic name, or a `[topic]` table (below) with the settings used if the topic must be created.",
        ),
        key("topic.name", "string", Required, "\"app-logs\"", "The topic name (in the table form)."),
        key(
            "topic.partitions",
            "integer",
            Text("the broker's default"),
            "6",
            "Partitions, if macklake creates the topic.",
        ),
        key(
            "topic.replication_factor",
            "integer",
            Text("the broker's default"),
            "3",
            "Replication factor, if macklake creates the topic.",
        ),
        key(
            "topic.config",
            "table of strings",
            Value("{}"),
            "{ \"retention.ms\" = \"604800000\" }",
            "Topic configs (`retention.ms`, `cleanup.policy`, ...), if macklake creates the topic.",
        ),
        key(
            "start_at",
            "`\"beginning\"` or `\"end\"`",
            Value("\"beginning\""),
            "\"end\"",
            "For the files found at the connector's very first start only; files that appear later are always read from their beginning, and a restart resumes from the checkpoint.",
        ),
        key(
            "key",
            "`\"path\"` or `\"none\"`",
            Value("\"path\""),
            "\"none\"",
            "Record key: the file's path (one file's lines stay in one partition, in order), or none (spread over partitions).",
        ),
        key("max_line_bytes", "size", Value("\"1MiB\""), "\"64KiB\"", "Longest line sent as one record."),
        key(
            "long_lines",
            "`\"split\"`, `\"truncate\"` or `\"skip\"`",
            Value("\"split\""),
            "\"truncate\"",
            "What happens to a longer line: several records, its first `max_line_bytes`, or nothing (counted in `macklake_source_long_lines_total`).",
        ),
        key(
            "include_lines",
            "list of regexes",
            Value("[]"),
            "[\"ERROR\", \"WARN\"]",
            "Only records matching one of these are sent (all, if empty). Applied to whole records (after `[multiline]`); `regex` crate syntax, linear time. Positions pass the records dropped (counted in `macklake_source_records_filtered_total`).",
        ),
        key(
            "exclude_lines",
            "list of regexes",
            Value("[]"),
            "[\"healthcheck\"]",
            "Records matching one of these are not sent (after `include_lines`; counted likewise).",
        ),
        key(
            "multiline.preset",
            "`\"java\"`, `\"python\"`, `\"go\"` or `\"indented\"`",
            Text("none"),
            "\"java\"",
            "Ready-made grouping: JVM stack traces (the exception line, `at ...`, `... N more`, `Caused by:` join the log line before them), Python tracebacks (up to the exception's line), Go panics and goroutine dumps, or every indented line joining the line before it.",
        ),
        key(
            "multiline.start_pattern",
            "regex",
            Text("none"),
            "\"^\\\\d{4}-\"",
            "Alone: a record begins at each line that matches, the other lines join it. With `condition_pattern`: when no record is open, a line that does not match is a record by itself (Vector's `start_pattern`).",
        ),
        key(
            "multiline.condition_pattern",
            "regex",
            Text("none"),
            "\"^\\\\s\"",
            "Which lines continue or end a record, as `mode` says.",
        ),
        key(
            "multiline.mode",
            "`\"continue_through\"`, `\"continue_past\"`, `\"halt_before\"` or `\"halt_with\"`",
            Text("`continue_through`"),
            "\"halt_before\"",
            "Vector's modes: matching lines continue the record; matching lines and the one after them; lines up to (not including) one that matches; lines up to and including the first that matches.",
        ),
        key(
            "multiline.negate",
            "bool",
            Text("false"),
            "true",
            "`condition_pattern` selects the lines that do not match it.",
        ),
        key(
            "multiline.max_lines",
            "integer",
            Text("500"),
            "1000",
            "A longer record is cut there: sent, counted (`macklake_source_records_cut_total`), and the rest is the next record.",
        ),
        key("multiline.max_bytes", "size", Text("`\"1MiB\"`"), "\"256KiB\"", "Likewise for its size."),
        key(
            "multiline.timeout",
            "duration",
            Text("`\"1s\"`"),
            "\"5s\"",
            "An unfinished record is sent when nothing was added to it for this long (counted as a cut). A record ends with its file: one rotated away mid-record is sent alone, not glued to the next file.",
        ),
        key(
            "dead_letter_topic",
            "string",
            Text("none"),
            "\"app-logs-dlq\"",
            "Also send the first `max_line_bytes` of every over-long line there, with headers `macklake.reason`, `macklake.path`, `macklake.offset`, `macklake.original_length` (created if missing).",
        ),
        key(
            "host_header",
            "bool",
            Value("false"),
            "true",
            "Add the header `macklake.host` (the `daemon_id`) to every record, dead letters included, so that two hosts' files with the same path can be told apart downstream.",
        ),
        key(
            "value_format",
            "`\"raw\"` or `\"connect-json\"`",
            Value("\"raw\""),
            "\"connect-json\"",
            "`connect-json` wraps each line in Kafka Connect JsonConverter's envelope with a string schema.",
        ),
        key(
            "rescan_interval",
            "duration",
            Value("\"10s\""),
            "\"1s\"",
            "Directory listing as a safety net for lost filesystem events.",
        ),
        key(
            "partial_line_timeout",
            "duration",
            Value("\"5s\""),
            "\"1s\"",
            "An unterminated last line of a file rotated away is sent after this.",
        ),
        key(
            "checkpoint_interval",
            "duration",
            Value("\"1s\""),
            "\"5s\"",
            "How often acknowledged positions are written (at-least-once): after a crash at most this much is sent again.",
        ),
        key(
            "forget_after",
            "duration",
            Value("\"7d\""),
            "\"30d\"",
            "Checkpoint entries of files not seen for this long are dropped.",
        ),
        key(
            "follow_symlinks",
            "bool",
            Value("false"),
            "true",
            "Follow matching symlinks (to regular files only). Off, they are reported once and never read.",
        ),
        key(
            "close_idle_after",
            "duration",
            Value("\"5m\""),
            "\"1m\"",
            "A file read to its end, acknowledged and not grown for this long has its descriptor closed; it is reopened by path when it changes.",
        ),
        key(
            "max_open_files",
            "integer",
            Value("1024"),
            "256",
            "At most this many files are held open; the rest wait (reported).",
        ),
        key(
            "exactly_once",
            "bool",
            Value("false"),
            "true",
            "Write lines and file positions in one Kafka transaction (positions in `offsets_topic`, not a local checkpoint). Consumers must read with `isolation.level=read_committed`.",
        ),
        key(
            "transaction_interval",
            "duration",
            Value("\"1s\""),
            "\"200ms\"",
            "Exactly-once: a transaction is committed at least this often.",
        ),
        key(
            "transaction_max_lines",
            "integer",
            Value("50000"),
            "10000",
            "Exactly-once: ... or once it holds this many lines.",
        ),
        key(
            "offsets_topic",
            "string",
            Value("\"macklake-source-offsets\""),
            "\"macklake-source-offsets\"",
            "Exactly-once: the compacted topic holding file positions (created with RF 3 if missing).",
        ),
        CONNECTOR_KAFKA,
    ],
};

pub const SINK: Section = Section {
    title: "file-sink connector (`kind = \"file-sink\"`)",
    intro: "Archives topics into local files, committing offsets only after the data is fsynced. \
            Exactly one of `dir` and `file`. Example: `connectors/archive.toml`.",
    keys: &[
        NAME,
        key("kind", "`\"file-sink\"`", Required, "\"file-sink\"", "The connector kind."),
        key(
            "topics",
            "list of strings",
            Required,
            "[\"app-logs\"]",
            "Topics to archive. The sink waits for them to exist; it never creates them. The consumer group is the connector's `name`.",
        ),
        key(
            "dir",
            "absolute path",
            Text("one of `dir`, `file` is required"),
            "\"/var/lib/macklake/archive\"",
            "Rotating files, one per partition: `DIR/TOPIC/TOPIC-PARTITION.log` (active) and `DIR/TOPIC/TOPIC-PARTITION-FIRST-LAST.log` (rotated).",
        ),
        key(
            "file",
            "absolute path",
            Text("one of `dir`, `file` is required"),
            "\"/srv/archive/all.txt\"",
            "One file every assigned partition appends to (Kafka Connect FileStreamSink style); never rotated. Run such a sink on one daemon only.",
        ),
        key(
            "rotate_bytes",
            "size",
            Value("\"64MiB\""),
            "\"1GiB\"",
            "`dir` only: rotate the active file at this size.",
        ),
        key("rotate_interval", "duration", Value("\"1h\""), "\"1d\"", "`dir` only: ... or at this age."),
        key(
            "rotate_aligned",
            "boolean",
            Value("false"),
            "true",
            "`dir` only: rotate on the clock (`\"1h\"` at :00; the interval must divide a day): by record time when `layout` has a time field, by the wall clock otherwise.",
        ),
        key(
            "layout",
            "template",
            Value("\"{topic}\""),
            "\"{topic}/{time:%Y/%m/%d/%H}\"",
            "`dir` only: the directory of rotated files, from `{topic}`, `{partition}` and `{time:STRFTIME}` of the record time (a record without one takes its consume time). The active file stays at `DIR/TOPIC/TOPIC-PARTITION.log`; a record older than the active bucket goes into it (counted as late).",
        ),
        key(
            "timezone",
            "IANA name",
            Value("\"UTC\""),
            "\"Europe/Paris\"",
            "`dir` only: the time zone of `layout`'s time fields and of `rotate_aligned`.",
        ),
        key(
            "seal_idle_after",
            "duration",
            Text("never"),
            "\"5m\"",
            "`dir` only: a partition caught up (at its last stable offset) that received nothing for this long has its active file sealed into its bucket.",
        ),
        key(
            "compression",
            "`\"none\"`, `\"gzip\"` or `\"zstd\"`",
            Value("\"none\""),
            "\"zstd\"",
            "`dir` only: compress rotated files (`.log.gz`, `.log.zst`); the active file stays plain for `tail -F`.",
        ),
        key(
            "keep_files",
            "integer",
            Text("unlimited"),
            "100",
            "`dir` only: at most this many rotated files per topic directory (oldest deleted first).",
        ),
        key(
            "keep_age",
            "duration",
            Text("unlimited"),
            "\"30d\"",
            "`dir` only: rotated files older than this are deleted.",
        ),
        key(
            "keep_bytes",
            "size",
            Text("unlimited"),
            "\"10GiB\"",
            "`dir` only: at most this many bytes of rotated files per topic directory. The active file and each partition's newest rotated file are never deleted.",
        ),
        key(
            "start_at",
            "`\"earliest\"` or `\"latest\"`",
            Value("\"earliest\""),
            "\"latest\"",
            "Where a new consumer group starts.",
        ),
        key(
            "format",
            "`\"lines\"` or `\"json\"`",
            Value("\"lines\""),
            "\"json\"",
            "`lines`: the value and `\\n`, bytes as they are (null values skipped). `json`: one JSON object per record and line with topic, partition, offset, timestamp, key, headers and value.",
        ),
        key(
            "value_format",
            "`\"raw\"` or `\"connect-json\"`",
            Value("\"raw\""),
            "\"connect-json\"",
            "`connect-json`: write the payload string of a Kafka Connect JsonConverter envelope (other values are written raw and counted).",
        ),
        key(
            "commit_interval",
            "duration",
            Value("\"1s\""),
            "\"5s\"",
            "How often written data is fsynced and its offsets committed.",
        ),
        key(
            "file_mode",
            "octal string",
            Value("\"0640\""),
            "\"0600\"",
            "Permissions of the files the sink creates (never writable by others); directories are 0750.",
        ),
        CONNECTOR_KAFKA,
    ],
};

/// How a key of a Kafka Connect FileStream connector file is taken.
pub struct ConnectKey {
    pub name: &'static str,
    pub meaning: &'static str,
}

pub const CONNECT_INTRO: &str = "A Kafka Connect `.properties` file, or the JSON form `{\"name\": .., \"config\": {..}}`, \
    for FileStreamSource or FileStreamSink in `connectors_dir` runs with Connect's meaning. A source becomes a \
    file-source of the one `file` with `key = \"none\"` and `start_at = \"beginning\"` (what Connect does); a sink \
    becomes a single-`file` file-sink. `value_format` follows the daemon's `[connect] value_converter`. Any key \
    not listed here is refused with file, line and key, and so is anything that would make macklake write \
    something different from Connect; the connector then does not start.";

pub const CONNECT: &[ConnectKey] = &[
    ConnectKey {
        name: "name",
        meaning: "`name`. A sink's consumer group is Connect's `connect-<name>`, so it continues from the offsets the worker committed.",
    },
    ConnectKey {
        name: "connector.class",
        meaning: "`FileStreamSource`, `FileStreamSink`, with or without `Connector`, or the full class name. Any other class is refused.",
    },
    ConnectKey {
        name: "tasks.max",
        meaning: "Accepted (a positive number); a connector is always one task.",
    },
    ConnectKey {
        name: "file",
        meaning: "Source: `paths = [file]`. Sink: `file`. Must be absolute (no standard input).",
    },
    ConnectKey { name: "topic", meaning: "Source: `topic`." },
    ConnectKey { name: "topics", meaning: "Sink: `topics` (comma-separated)." },
    ConnectKey { name: "topics.regex", meaning: "Refused: list the topics in `topics`." },
    ConnectKey { name: "batch.size", meaning: "Accepted and ignored: the producer batches (`linger.ms`)." },
    ConnectKey {
        name: "key.converter",
        meaning: "`StringConverter` or `ByteArrayConverter` (bytes pass as they are); any other converter is refused.",
    },
    ConnectKey {
        name: "value.converter",
        meaning: "As `key.converter`. For a worker that ran `JsonConverter` with schemas, set the daemon's `[connect] value_converter = \"json-with-schemas\"`.",
    },
    ConnectKey { name: "header.converter", meaning: "As `key.converter`, or `SimpleHeaderConverter`." },
    ConnectKey {
        name: "key.converter.*",
        meaning: "Accepted and ignored, as are `value.converter.*` and `header.converter.*`.",
    },
    ConnectKey {
        name: "transforms",
        meaning: "Refused unless empty (and `transforms.*` with it): single message transforms are not supported.",
    },
    ConnectKey { name: "predicates", meaning: "Refused unless empty, as `transforms`." },
    ConnectKey {
        name: "errors.tolerance",
        meaning: "`none` or `all`, accepted; with byte converters there is no conversion error to tolerate.",
    },
    ConnectKey {
        name: "errors.retry.timeout",
        meaning: "Accepted and ignored: macklake retries Kafka without end.",
    },
    ConnectKey { name: "errors.retry.delay.max.ms", meaning: "Accepted and ignored." },
    ConnectKey { name: "errors.log.enable", meaning: "Accepted and ignored: problems are always logged." },
    ConnectKey {
        name: "errors.log.include.messages",
        meaning: "Accepted and ignored: record contents are never logged.",
    },
    ConnectKey {
        name: "errors.deadletterqueue.topic.name",
        meaning: "Accepted and ignored (sinks: nothing can fail conversion). Over-long source lines have their own `dead_letter_topic` in TOML connectors.",
    },
    ConnectKey { name: "errors.deadletterqueue.topic.replication.factor", meaning: "Accepted and ignored." },
    ConnectKey { name: "errors.deadletterqueue.context.headers.enable", meaning: "Accepted and ignored." },
    ConnectKey {
        name: "config.action.reload",
        meaning: "Accepted and ignored: a changed file is always reloaded.",
    },
    ConnectKey {
        name: "producer.override.*",
        meaning: "Source: the connector's `[kafka]` overrides (the same reserved and daemon-only properties refused, secret references resolved).",
    },
    ConnectKey {
        name: "consumer.override.*",
        meaning: "Sink: the connector's `[kafka]` overrides, as `producer.override.*`.",
    },
    ConnectKey {
        name: "topic.creation.default.*",
        meaning: "Source: the settings used if the topic is created: `partitions` and `replication.factor` (`-1`: the broker's default) become `[topic] partitions`, `replication_factor`; any other (`cleanup.policy`, `retention.ms`, ...) a topic config. Refused on a sink (sinks never create topics).",
    },
    ConnectKey {
        name: "topic.creation.groups",
        meaning: "Refused, with `topic.creation.<group>.*`: a FileStreamSource writes one topic; put its settings in `topic.creation.default.*`.",
    },
];

fn default_text(d: &Default) -> String {
    match d {
        Required => "**required**".to_string(),
        Value(v) => format!("`{v}`"),
        Text(t) => t.to_string(),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The whole reference as Markdown (`macklake config-reference`, `docs/configuration.md`).
pub fn markdown() -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "# Configuration reference\n\n\
         <!-- Generated by `macklake config-reference` from src/config/reference.rs; do not edit by hand.\n     \
         Regenerate: cargo run -- config-reference > docs/configuration.md -->\n\n\
         Types: a **duration** is written `\"500ms\"`, `\"30s\"`, `\"5m\"`, `\"1h\"`, `\"7d\"`; a **size** `\"512KiB\"`, \
         `\"64MiB\"`, `\"10GiB\"`. `table.key` is `key` inside `[table]`. An unknown key is refused with file, line, \
         key and the closest known one. `macklake check --config FILE` validates everything without Kafka.\n\n\
         - [Daemon config](#daemon-config-macklaketoml)\n\
         - [file-source connector](#file-source-connector-kind--file-source)\n\
         - [file-sink connector](#file-sink-connector-kind--file-sink)\n\
         - [Kafka Connect connector files](#kafka-connect-connector-files-properties-json)\n"
    );
    for section in [&DAEMON, &SOURCE, &SINK] {
        let _ = writeln!(out, "## {}\n\n{}\n", section.title, section.intro);
        let _ = writeln!(out, "| key | type | default | meaning |\n| --- | --- | --- | --- |");
        for k in section.keys {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                k.name,
                cell(k.ty),
                cell(&default_text(&k.default)),
                cell(k.doc)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Kafka Connect connector files (`.properties`, `.json`)\n\n{CONNECT_INTRO}\n");
    let _ = writeln!(out, "| Connect key | in macklake |\n| --- | --- |");
    for k in CONNECT {
        let _ = writeln!(out, "| `{}` | {} |", k.name, cell(k.meaning));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, ConnectorConfig, DaemonConfig};
    use std::collections::BTreeSet;
    use std::path::Path;

    const DAEMON_BASE: &str = "connectors_dir = \"c\"\nstate_dir = \"s\"\ndaemon_id = \"ref\"\n";
    const SOURCE_BASE: &str = "name = \"a\"\nkind = \"file-source\"\npaths = [\"/var/log/a.log\"]\n";
    const SINK_BASE: &str = "name = \"a\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/srv/a\"\n";

    fn daemon(text: &str) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::parse(Path::new("/etc/macklake/macklake.toml"), text)
    }

    fn connector(text: &str) -> Result<ConnectorConfig, ConfigError> {
        ConnectorConfig::parse(Path::new("/etc/macklake/connectors.d/a.toml"), text, &[])
    }

    /// The keys serde accepts where `probe` is set: its `deny_unknown_fields` error lists them all.
    fn accepted(err: Result<impl std::fmt::Debug, ConfigError>, probe: &str) -> BTreeSet<String> {
        let err = err.expect_err("an unknown key is refused");
        let list = err
            .message
            .split("known keys: ")
            .nth(1)
            .unwrap_or_else(|| panic!("{probe}: no list of known keys in `{err}`"));
        list.split(", ").map(str::to_string).collect()
    }

    /// The documented keys at one level: top-level names, or the keys under `table.`.
    fn documented(section: &Section, table: Option<&str>) -> BTreeSet<String> {
        section
            .keys
            .iter()
            .filter_map(|k| match table {
                None => Some(k.name.split('.').next().unwrap_or(k.name).to_string()),
                Some(t) => k.name.strip_prefix(t).and_then(|r| r.strip_prefix('.')).map(str::to_string),
            })
            .collect()
    }

    /// Tables whose keys are documented one by one (`log.level`...), not free-form like `kafka`.
    fn tables(section: &Section) -> BTreeSet<&'static str> {
        section.keys.iter().filter_map(|k| k.name.split_once('.').map(|(t, _)| t)).collect()
    }

    /// Every key a struct accepts is documented: serde's field list equals the table, per level.
    fn every_accepted_key_is_documented(
        section: &Section,
        base: &str,
        parse: impl Fn(&str) -> Result<(), ConfigError>,
    ) {
        let probe = "zz_probe_key";
        let parse_err = |text: &str| parse(text).map(|()| "parsed");
        let top = accepted(parse_err(&format!("{base}{probe} = 1\n")), probe);
        assert_eq!(top, documented(section, None), "{}: top-level keys vs the reference", section.title);
        for table in tables(section) {
            // A `[topic]` table needs its name before an unknown key can be the only problem.
            let name = if table == "topic" { "topic.name = \"t\"\n" } else { "" };
            let text = format!("{base}{name}{table}.{probe} = 1\n");
            let keys = accepted(parse_err(&text), probe);
            assert_eq!(keys, documented(section, Some(table)), "{}: keys of [{table}]", section.title);
        }
    }

    #[test]
    fn every_key_the_code_accepts_is_in_the_reference() {
        every_accepted_key_is_documented(&DAEMON, DAEMON_BASE, |t| daemon(t).map(drop));
        every_accepted_key_is_documented(&SOURCE, SOURCE_BASE, |t| connector(t).map(drop));
        every_accepted_key_is_documented(&SINK, SINK_BASE, |t| connector(t).map(drop));
    }

    /// Every documented key set to its example at once: accepted by serde (a key documented but
    /// not in the struct would be refused as unknown). Serde only, for the connector kinds, since
    /// their examples set keys that exclude each other (`dir` and `file`).
    #[test]
    fn every_documented_key_is_accepted() {
        let document = |section: &Section| -> String {
            let leaf = |name: &str| !section.keys.iter().any(|k| k.name.starts_with(&format!("{name}.")));
            section
                .keys
                .iter()
                .filter(|k| leaf(k.name))
                .map(|k| format!("{} = {}\n", k.name, k.example))
                .collect()
        };
        let text = document(&DAEMON);
        daemon(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let text = document(&SOURCE);
        toml::from_str::<crate::config::SourceConfig>(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let text = document(&SINK);
        toml::from_str::<crate::config::SinkConfig>(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    /// A default written as a value is the code's: writing it gives the same config as leaving it out.
    #[test]
    fn documented_defaults_are_the_codes() {
        let check = |section: &Section, base: &str, parse: &dyn Fn(&str) -> String| {
            let without = parse(base);
            for k in section.keys {
                let Value(v) = k.default else { continue };
                let with = parse(&format!("{base}{} = {v}\n", k.name));
                assert_eq!(with, without, "{}: `{}` documented as defaulting to {v}", section.title, k.name);
            }
        };
        check(&DAEMON, DAEMON_BASE, &|t| format!("{:?}", daemon(t).unwrap_or_else(|e| panic!("{e}\n{t}"))));
        // The table form of `topic`, so that `topic.config` can be written too.
        let source_base = format!("{SOURCE_BASE}topic.name = \"t\"\n");
        check(&SOURCE, &source_base, &|t| {
            format!("{:?}", connector(t).unwrap_or_else(|e| panic!("{e}\n{t}")))
        });
        check(&SINK, SINK_BASE, &|t| format!("{:?}", connector(t).unwrap_or_else(|e| panic!("{e}\n{t}"))));
    }

    #[test]
    fn every_connect_key_is_in_the_reference() {
        let documented: BTreeSet<&str> = CONNECT.iter().map(|k| k.name).collect();
        for known in crate::config::connect::KNOWN {
            assert!(documented.contains(known), "Connect key `{known}` is accepted but not in the reference");
        }
        for name in &documented {
            assert!(
                crate::config::connect::KNOWN.contains(name)
                    || name.ends_with(".*")
                    || *name == "topic.creation.groups",
                "`{name}` is in the reference but not a key the Connect parser knows"
            );
        }
    }

    /// docs/configuration.md is this module's output (regenerate it with `macklake config-reference`).
    #[test]
    fn docs_configuration_md_is_generated() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == markdown(),
            "{} differs from the code's reference: run `cargo run -- config-reference > docs/configuration.md`",
            path.display()
        );
    }
}
