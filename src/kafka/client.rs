//! librdkafka client settings: the user's properties (daemon `[kafka]` + connector `[kafka]`) with
//! macklake's guarantees on top.

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use crate::config::kafka_props::KafkaProps;

/// A client config carrying every user property as given.
pub fn base(props: &KafkaProps) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in props {
        config.set(k, v);
    }
    config
}

/// A property librdkafka refused: its name, and librdkafka's reason with every secret value
/// hidden (its own error text quotes the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{key}`: {reason}")]
pub struct BadProperty {
    pub key: String,
    pub reason: String,
}

/// Checks `props` with librdkafka itself, names and values, as a client would be configured,
/// without connecting: what `check` reports and what a connector refuses to start with (instead
/// of waiting for a cluster it can never reach).
pub fn check(props: &KafkaProps) -> Result<(), BadProperty> {
    match base(props).create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, reason, key, _value)) => {
            Err(BadProperty { key, reason: hide_secrets(&reason, props) })
        }
        Err(other) => {
            Err(BadProperty { key: String::new(), reason: hide_secrets(&other.to_string(), props) })
        }
    }
}

/// `text` with every value of a secret property (by name, or from a `${...}` reference) hidden.
pub fn hide_secrets(text: &str, props: &KafkaProps) -> String {
    let mut out = text.to_string();
    for (k, v) in props {
        if props.is_secret(k) && !v.is_empty() {
            out = out.replace(v.as_str(), crate::config::kafka_props::HIDDEN);
        }
    }
    out
}

/// Producer settings for file sources (at-least-once mode): every line is acknowledged by all
/// in-sync replicas, retries cannot duplicate or reorder, and a line is never given up on.
pub fn source_producer(props: &KafkaProps) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Defaults the user may override...
    config.set("message.timeout.ms", "0").set("linger.ms", "5").set("compression.type", "lz4");
    // librdkafka queues up to 100 000 messages / 1 GiB by default; a source reading a backlog fills
    // whatever it is given. 10 000 in flight keep the brokers as busy (scripts/bench) for a tenth
    // of the memory (peak RSS 27 against 43-73 MiB over a 1M-line backlog).
    config.set("queue.buffering.max.messages", "10000").set("queue.buffering.max.kbytes", "16384");
    for (k, v) in props {
        config.set(k, v);
    }
    // ...and the guarantees they may not (config::kafka_props::RESERVED rejects them earlier).
    config.set("acks", "all").set("enable.idempotence", "true");
    config
}

/// Producer settings for exactly-once file sources: as `source_producer`, plus a transactional id.
/// A line cannot wait longer than its transaction may stay open, so `message.timeout.ms`
/// defaults to `transaction.timeout.ms` instead of "forever".
pub fn source_transactional_producer(props: &KafkaProps, transactional_id: &str) -> ClientConfig {
    let mut config = source_producer(props);
    let txn_timeout = props.get("transaction.timeout.ms").cloned().unwrap_or_else(|| "60000".to_string());
    if !props.contains_key("message.timeout.ms") {
        config.set("message.timeout.ms", &txn_timeout);
    }
    // The first record of a transaction waits for its partitions to be registered, which the
    // coordinator refuses (CONCURRENT_TRANSACTIONS) until the previous commit's markers are
    // written; librdkafka retries after retry.backoff.ms (100 ms). The Java producer uses 20 ms
    // for this case; so does macklake (exponential back-off still caps other retries at 1 s).
    if !props.contains_key("retry.backoff.ms") {
        config.set("retry.backoff.ms", "20");
    }
    config.set("transaction.timeout.ms", &txn_timeout).set("transactional.id", transactional_id);
    config
}

/// Consumer settings for file sinks: offsets are committed by the sink itself, only after fsync.
pub fn sink_consumer(props: &KafkaProps, group: &str, auto_offset_reset: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Statistics feed the lag gauge; a user's own interval (in props) wins.
    config
        .set("auto.offset.reset", auto_offset_reset)
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("statistics.interval.ms", "5000");
    // Prefetch: librdkafka's defaults (100 000 messages per partition, 64 MiB, 1 MiB per partition
    // and 50 MiB per fetch, then a 1 s back-off once the queue is full) cost ~100 MiB of RSS and
    // made a sink reading a backlog wait a second at a time: 1M records took 6.3 s, and 0.7-1 s
    // with these. The back-off is what matters for speed; the fetch sizes bound memory, since a
    // compressed fetch is decompressed whole (peak RSS 42 MiB over 1M records of 100 B; 83 MiB
    // when they compress 30×, as the benchmark's repetitive lines do).
    config
        .set("queued.min.messages", "10000")
        .set("queued.max.messages.kbytes", "16384")
        .set("max.partition.fetch.bytes", "262144")
        .set("fetch.max.bytes", "2097152")
        .set("fetch.queue.backoff.ms", "5");
    for (k, v) in props {
        config.set(k, v);
    }
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed");
    config
}
