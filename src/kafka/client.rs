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

/// Consumer settings for file sinks: offsets are committed by the sink itself, only after fsync.
pub fn sink_consumer(props: &KafkaProps, group: &str, auto_offset_reset: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("auto.offset.reset", auto_offset_reset).set("topic.metadata.refresh.interval.ms", "10000");
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
