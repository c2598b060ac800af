//! `Offsets` over the connector's own consumer: its group's committed offsets and metadata.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::SinkError;
use super::commit::Committed;
use super::offsets::{Commit, Offsets, Tp, decode_meta};
use crate::kafka::admin;

/// One partition's committed state as read, or why it could not be.
type ReadOne = Result<Option<Committed>, String>;

pub struct KafkaOffsets<'a, C: ConsumerContext> {
    pub consumer: &'a BaseConsumer<C>,
    /// Each topic's id as read at the start of the run (see `SinkError::TopicRecreated`).
    pub topic_ids: &'a HashMap<String, String>,
}

impl<C: ConsumerContext> KafkaOffsets<'_, C> {
    fn list(&self, partitions: &[Tp]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        tpl
    }

    /// Committed offsets as Kafka answered, each partition with its own error.
    fn fetch(&self, partitions: &[Tp]) -> Result<Vec<(Tp, ReadOne)>, String> {
        let back = self
            .consumer
            .committed_offsets(self.list(partitions), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(back
            .elements()
            .iter()
            .map(|e| {
                let state = match (e.error(), e.offset()) {
                    (Err(error), _) => Err(error.to_string()),
                    (Ok(()), Offset::Offset(o)) => {
                        Ok(Some(Committed { offset: o, meta: decode_meta(e.metadata()) }))
                    }
                    (Ok(()), _) => Ok(None),
                };
                ((e.topic().to_string(), e.partition()), state)
            })
            .collect())
    }
}

impl<C: ConsumerContext> Offsets for KafkaOffsets<'_, C> {
    /// Has a topic been re-created under the records being committed? (Kafka keeps a consumer's
    /// position across a deletion: records of the new topic can arrive at offsets that simply
    /// continue the old ones.) A failed look is not a reason to stop.
    fn prepare(&mut self, commits: &mut [Commit]) -> Result<(), SinkError> {
        let mut topics: Vec<String> = commits.iter().map(|(t, _, _)| t.clone()).collect();
        topics.sort();
        topics.dedup();
        topics.retain(|t| self.topic_ids.contains_key(t));
        match admin::topic_ids(self.consumer.client(), &topics, Duration::from_secs(5)) {
            Ok(now) => {
                for (topic, id) in now {
                    if let Some(then) = self.topic_ids.get(&topic).filter(|then| **then != id) {
                        return Err(SinkError::TopicRecreated { topic, then: then.clone(), now: id });
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "cannot check the topics' ids before committing")
            }
        }
        for (topic, _, c) in commits.iter_mut() {
            c.meta.tid = self.topic_ids.get(topic).cloned();
        }
        Ok(())
    }

    fn commit(&mut self, commits: &[Commit]) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, c) in commits {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(c.offset))
                .map_err(|e| format!("cannot express offset {} of {topic}/{partition}: {e}", c.offset))?;
            if let Some(mut e) = tpl.find_partition(topic, *partition) {
                e.set_metadata(c.meta.encode());
            }
        }
        self.consumer.commit(&tpl, CommitMode::Sync).map_err(|e| e.to_string())
    }

    fn committed(&mut self, partitions: &[Tp]) -> Result<Vec<(Tp, Option<Committed>)>, String> {
        self.fetch(partitions)?
            .into_iter()
            .map(|((t, p), state)| match state {
                Ok(c) => Ok(((t, p), c)),
                // An error for one partition (coordinator loading, unstable offsets) comes with
                // no offset: taken for "nothing committed", it would make the cache the authority.
                Err(error) => Err(format!("{t}/{p}: {error}")),
            })
            .collect()
    }

    fn read_back(&mut self, partitions: &[Tp]) -> Result<Vec<(Tp, Option<Committed>)>, String> {
        Ok(self.fetch(partitions)?.into_iter().map(|(tp, state)| (tp, state.ok().flatten())).collect())
    }
}
