//! Cluster metadata and topic administration.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

/// Whether the cluster refused the client's credentials (SASL). Waiting does not fix that, so
/// callers give up at once instead of retrying as if Kafka were down.
pub fn authentication_failed(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    )
}

/// What a connector reports when `authentication_failed`: the cause, and what to check.
pub const AUTHENTICATION_FAILED: &str = "Kafka refused the credentials (authentication failed): check \
     sasl.username, sasl.password and sasl.mechanisms in the [kafka] tables (the broker's log says more)";

/// `fetch_metadata`, but an authentication failure ends it early: librdkafka reports that only as
/// an error event (a metadata request just times out), so the events are read between attempts.
fn fetch_metadata(
    consumer: &BaseConsumer,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<Metadata, KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let step = deadline.saturating_duration_since(std::time::Instant::now()).min(Duration::from_secs(1));
        match consumer.fetch_metadata(topic, step) {
            Ok(metadata) => return Ok(metadata),
            Err(error) => {
                while let Some(event) = consumer.poll(Duration::ZERO) {
                    if let Err(e) = event
                        && authentication_failed(&e)
                    {
                        return Err(e);
                    }
                }
                if std::time::Instant::now() >= deadline {
                    return Err(error);
                }
            }
        }
    }
}

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

/// What `ensure_topic` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicState {
    Existed { partitions: usize },
    Created,
}

/// Partition count of `topic`, or `None` if the cluster does not know it.
pub fn topic_partitions(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, KafkaError> {
    let consumer: BaseConsumer = config.create()?;
    let metadata = fetch_metadata(&consumer, Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len()))
}

/// Creates `topic` if the cluster does not have it (partitions and replication -1 mean the broker's
/// defaults), then waits until its metadata is visible.
pub fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: Option<i32>,
    replication: Option<i32>,
    topic_config: &std::collections::BTreeMap<String, String>,
    timeout: Duration,
) -> Result<TopicState, KafkaError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    if let Some(partitions) = topic_partitions(config, topic, timeout)? {
        return Ok(TopicState::Existed { partitions });
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let mut new =
        NewTopic::new(topic, partitions.unwrap_or(-1), TopicReplication::Fixed(replication.unwrap_or(-1)));
    for (k, v) in topic_config {
        new = new.set(k, v);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KafkaError::AdminOpCreation(format!("runtime: {e}")))?;
    let results = runtime
        .block_on(admin.create_topics([&new], &AdminOptions::new().operation_timeout(Some(timeout))))?;
    let mut created = true;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    let deadline = std::time::Instant::now() + timeout;
    while topic_partitions(config, topic, timeout)?.is_none() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::AdminOp(RDKafkaErrorCode::RequestTimedOut));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(if created { TopicState::Created } else { TopicState::Existed { partitions: 0 } })
}
