//! Exactly-once sources keep file positions in a compacted Kafka topic, written in the same
//! transaction as the lines they cover, and restored by reading that topic to its end
//! (read_committed) after `init_transactions` has fenced any earlier instance.
//!
//! Record: key `DAEMON_ID/CONNECTOR/DEV:INO`, value the checkpoint `Entry` as JSON (a null value,
//! a tombstone, forgets the file). Keys include the daemon id so that hosts running the same
//! connector on their own files never read each other's positions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::checkpoint::{Entry, Truncated};
use super::fingerprint::FileId;

pub fn key_prefix(daemon_id: &str, connector: &str) -> String {
    format!("{daemon_id}/{connector}/")
}

pub fn key(prefix: &str, id: FileId) -> String {
    format!("{prefix}{}:{}", id.dev, id.ino)
}

/// Key of the record that says the connector has started once (`start_at` never applies again).
pub fn started_key(prefix: &str) -> String {
    format!("{prefix}started")
}

/// Key of a truncated content's record: `PREFIX truncated/HASH-LEN`.
pub fn truncated_key(prefix: &str, t: &Truncated) -> String {
    format!("{prefix}truncated/{:016x}-{}", t.fingerprint.hash, t.fingerprint.len)
}

/// What the offsets topic holds for one connector of one daemon.
#[derive(Debug, Default)]
pub struct Restored {
    pub positions: HashMap<FileId, Entry>,
    pub truncated: Vec<Truncated>,
    /// The connector committed its first start (or any position): `start_at` is spent.
    pub started: bool,
}

/// Reads `topic` from the beginning to its end (read_committed) and returns the latest position
/// of every file under `prefix`. `config` carries the user's connection properties.
pub fn restore(
    config: &ClientConfig,
    topic: &str,
    prefix: &str,
    timeout: Duration,
) -> Result<Restored, KafkaError> {
    let mut config = config.clone();
    config
        .set("group.id", format!("{prefix}restore"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            ends.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
    }
    let mut positions = HashMap::new();
    let mut truncated: HashMap<String, Truncated> = HashMap::new();
    let mut started = false;
    let started_key = started_key(prefix);
    if ends.is_empty() {
        return Ok(Restored::default());
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::RequestTimedOut));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                if key == started_key {
                    started |= m.payload().is_some();
                } else if let Some(name) = key.strip_prefix(prefix).filter(|k| k.starts_with("truncated/")) {
                    match m.payload().map(serde_json::from_slice::<Truncated>) {
                        Some(Ok(t)) if t.fingerprint.plausible() => {
                            truncated.insert(name.to_string(), t);
                        }
                        _ => {
                            truncated.remove(name);
                        }
                    }
                } else if let Some(id) = key.strip_prefix(prefix).and_then(parse_id) {
                    match m.payload().map(serde_json::from_slice::<Entry>) {
                        Some(Ok(entry)) => match entry.check().and_then(|()| {
                            (entry.id == id)
                                .then_some(())
                                .ok_or_else(|| "it names another file than its key".to_string())
                        }) {
                            Ok(()) => {
                                positions.insert(id, entry);
                            }
                            Err(why) => {
                                // Not trusted: the file is read as a new one (a copy is then
                                // recognised as any copy is).
                                tracing::warn!(key = %key, %why, "position record refused; the file is read as a new one");
                                positions.remove(&id);
                            }
                        },
                        None => {
                            positions.remove(&id);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(key = %key, error = %e, "unreadable position record; ignored")
                        }
                    }
                }
                if m.offset() + 1 >= ends.get(&m.partition()).copied().unwrap_or(i64::MAX) {
                    ends.remove(&m.partition());
                }
            }
            // A broker restarting is not a reason to give up: the deadline bounds the wait.
            Some(Err(e)) => tracing::debug!(error = %e, "reading positions; retrying"),
            None => {
                // read_committed stops before transaction markers and aborted records: the
                // position, not the last record seen, says whether a partition is finished.
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        if let Offset::Offset(o) = e.offset()
                            && o >= ends.get(&e.partition()).copied().unwrap_or(i64::MAX)
                        {
                            ends.remove(&e.partition());
                        }
                    }
                }
            }
        }
    }
    started |= !positions.is_empty();
    Ok(Restored { positions, truncated: truncated.into_values().collect(), started })
}

fn parse_id(text: &str) -> Option<FileId> {
    let (dev, ino) = text.split_once(':')?;
    Some(FileId { dev: dev.parse().ok()?, ino: ino.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let prefix = key_prefix("host-a", "app-logs");
        let id = FileId { dev: 64768, ino: 1234567 };
        let k = key(&prefix, id);
        assert_eq!(k, "host-a/app-logs/64768:1234567");
        assert_eq!(k.strip_prefix(&prefix).and_then(parse_id), Some(id));
    }
}
