//! The topics a source writes to: created if missing (or waited for, while Kafka does not
//! answer), and, exactly-once, the offsets topic checked to be compacted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::error::KafkaError;

use super::SourceError;
use crate::config::SourceConfig;
use crate::config::kafka_props::KafkaProps;
use crate::kafka::{admin, client};
use crate::stop::Backoff;

/// Creates the topics the connector writes to (or waits for Kafka, reporting why) and checks
/// that the exactly-once offsets topic is compacted. Returns early if `stop` is set.
pub(super) fn ensure(cfg: &SourceConfig, props: &KafkaProps, stop: &AtomicBool) -> Result<(), SourceError> {
    let topic = &cfg.topic.name;
    let admin_config = client::base(props);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let spec = &cfg.topic;
        match admin::ensure_topic(
            &admin_config,
            topic,
            spec.partitions,
            spec.replication_factor,
            &spec.config,
            Duration::from_secs(10),
        ) {
            Ok(admin::TopicState::Created) => {
                tracing::info!(topic, "created topic");
                break;
            }
            Ok(_) => break,
            Err(error @ KafkaError::AdminOp(_)) => {
                return Err(SourceError::Topic { topic: topic.clone(), error });
            }
            Err(error) if admin::authentication_failed(&error) => {
                return Err(SourceError::Authentication(error));
            }
            Err(error) => {
                tracing::warn!(topic, %error, retry_in = ?backoff.next(), "waiting for Kafka");
                backoff.wait(stop);
            }
        }
    }
    if cfg.exactly_once {
        let offsets = &cfg.offsets_topic;
        let compact =
            std::collections::BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        admin::ensure_topic(&admin_config, offsets, Some(6), None, &compact, Duration::from_secs(10))
            .map_err(|error| SourceError::Topic { topic: offsets.clone(), error })?;
        // A topic made by hand (or by a tool with the cluster's default policy) would lose
        // positions to retention: the files would one day be read again from the start.
        let policy = admin::topic_config(&admin_config, offsets, "cleanup.policy", Duration::from_secs(10))
            .map_err(|error| SourceError::Topic { topic: offsets.clone(), error })?;
        if !policy.as_deref().is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")) {
            return Err(SourceError::OffsetsNotCompacted {
                topic: offsets.clone(),
                policy: policy.unwrap_or_else(|| "unknown".into()),
            });
        }
    }
    if let Some(dlq) = &cfg.dead_letter_topic {
        admin::ensure_topic(&admin_config, dlq, None, None, &Default::default(), Duration::from_secs(10))
            .map_err(|error| SourceError::Topic { topic: dlq.clone(), error })?;
    }
    Ok(())
}
