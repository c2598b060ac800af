//! Exactly-once: the positions a transaction moves are written to the offsets topic in the same
//! transaction as the lines (`positions` has the records' keys and reads them back).

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::tailer::Tailer;
use super::{SourceContext, SourceError, injected, positions};

/// Exactly-once mode: adds the new position of every followed file (and tombstones for files
/// forgotten) to the open transaction and commits it. A commit that times out is retried,
/// never blindly aborted: it may have been applied (librdkafka does not bump the producer
/// epoch per transaction, so a late abort could land on the next one). Any other failure is
/// returned, and the connector restarts with a new producer that fences this one.
pub(super) fn commit(
    producer: &ThreadedProducer<SourceContext>,
    tailer: &mut Tailer,
    offsets_topic: &str,
    prefix: &str,
    timeout: Duration,
) -> Result<(), SourceError> {
    let update = tailer.transaction_positions();
    let mut records: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    if update.first_start {
        // The connector's first start: from now on `start_at` never applies again.
        let now = crate::fsutil::unix_now();
        records.push((positions::started_key(prefix), Some(format!("{{\"at\":{now}}}").into_bytes())));
    }
    for e in &update.entries {
        records.push((positions::key(prefix, e.id), Some(json(e)?)));
    }
    for id in &update.gone {
        records.push((positions::key(prefix, *id), None));
    }
    // What truncated files held, so that a copy found after a restart is read only from where
    // the original stopped; and tombstones for those forgotten since the last commit.
    for t in &update.truncated {
        records.push((positions::truncated_key(prefix, t), Some(json(t)?)));
    }
    for t in &update.forgotten_truncated {
        records.push((positions::truncated_key(prefix, t), None));
    }
    // Position records carry a token no file slot uses: their delivery reports are ignored
    // (a failed one makes the commit fail, which is what matters).
    let token = usize::MAX;
    injected("source::txn::send-positions")?;
    for (key, value) in &records {
        loop {
            let mut record =
                BaseRecord::<str, [u8], usize>::with_opaque_to(offsets_topic, token).key(key.as_str());
            if let Some(v) = value {
                record = record.payload(v.as_slice());
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((error, _)) => return Err(SourceError::Transaction(error)),
            }
        }
    }
    let deadline = Instant::now() + timeout;
    // rdkafka's commit_transaction flushes first, polling for events in steps of 100 ms that
    // the ThreadedProducer's own poll thread leaves empty: every commit with a record in
    // flight cost 100 ms (a third of exactly-once's end-to-end latency at a 100 ms interval).
    // Waiting for the in-flight records here, in 1 ms steps, leaves it nothing to wait for.
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    injected("source::txn::commit")?;
    loop {
        match producer.commit_transaction(
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1)),
        ) {
            Ok(()) => break,
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "transaction commit not confirmed yet; retrying the commit");
            }
            Err(error) => return Err(SourceError::Transaction(error)),
        }
    }
    // Committed, not yet recorded in memory: a crash here resumes from this transaction.
    injected("source::txn::committed")?;
    tailer.committed(update);
    Ok(())
}

/// A position record's value.
fn json(value: &impl serde::Serialize) -> Result<Vec<u8>, SourceError> {
    Ok(serde_json::to_vec(value)?)
}
