//! Cluster metadata and topic administration.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

/// The broker ids the cluster's metadata lists, asked through `bootstrap`.
///
/// Blocking; call from a plain thread or `spawn_blocking`.
pub fn broker_ids(bootstrap: &str, timeout: Duration) -> Result<Vec<i32>, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.connection.setup.timeout.ms", "2000")
        // Probing a cluster that is still starting is expected to fail; keep librdkafka quiet.
        .set("log_level", "0")
        .create()?;
    let metadata = consumer.fetch_metadata(None, timeout)?;
    let mut ids: Vec<i32> = metadata.brokers().iter().map(|b| b.id()).collect();
    ids.sort_unstable();
    Ok(ids)
}
