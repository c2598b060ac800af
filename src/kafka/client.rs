//! librdkafka client settings: the user's properties (daemon `[kafka]` + connector `[kafka]`) with
//! macklake's guarantees on top.

use rdkafka::ClientConfig;

use crate::config::kafka_props::KafkaProps;

/// A client config carrying every user property as given.
pub fn base(props: &KafkaProps) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (k, v) in props {
        config.set(k, v);
    }
    config
}

/// Producer settings for file sources (at-least-once mode): every line is acknowledged by all
/// in-sync replicas, retries cannot duplicate or reorder, and a line is never given up on.
pub fn source_producer(props: &KafkaProps) -> ClientConfig {
    let mut config = ClientConfig::new();
    // Defaults the user may override...
    config.set("message.timeout.ms", "0").set("linger.ms", "5").set("compression.type", "lz4");
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
