//! Which partitions the sink holds and where each resumes: the rebalance callbacks, the
//! reconciliation of each partition against Kafka's committed state (with the checks only Kafka
//! can answer: offsets gone backwards, records lost to retention, a changed topic id), and the
//! seeks that position the consumer where the layout expects the next record.
//!
//! Where a partition resumes is decided once (ARCHITECTURE.md): the rebalance callback
//! reconciles each newly assigned partition and assigns it at the offset its writer expects next.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::kafka_offsets::KafkaOffsets;
use super::layout::Layout;
use super::offsets::{self, Next, Offsets, Tp};
use super::{SinkError, SinkStats, State, Verify, lock, with_committer};
use crate::failpoints;
use crate::kafka::admin;

pub(super) struct SinkContext {
    pub(super) state: Arc<Mutex<State>>,
    /// Also reachable here without the state's lock (statistics arrive during polls).
    pub(super) stats: Arc<SinkStats>,
}

impl ClientContext for SinkContext {
    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lag = std::collections::BTreeMap::new();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // -1 is the internal "unassigned" partition, and lag is -1 while unknown.
                if partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), partition), p.consumer_lag);
                }
            }
        }
        *self.stats.lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }
}

impl ConsumerContext for SinkContext {
    /// Handles a rebalance itself instead of librdkafka's default assign, so that where each
    /// partition resumes is decided once: its files are reconciled here, and the partition is
    /// assigned at the offset its writer expects next. (A seek after a plain assign can lose
    /// the race against librdkafka's own fetch of the committed offset, and then the consumer
    /// and the writer disagree about where the partition resumes.)
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut state = lock(&self.state);
                let partitions: Vec<Tp> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                let unpositioned = assign_positions(consumer, &mut state, &partitions, tpl);
                let assigned =
                    if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(error) = assigned {
                    tracing::error!(%error, "assigning partitions failed");
                }
                if unpositioned.count() > 0 {
                    // Held still until reconciled (`reconcile_pending` seeks and resumes them).
                    if let Err(error) = consumer.pause(&unpositioned) {
                        tracing::warn!(%error, "cannot pause unreconciled partitions; their records are fetched again after the seek");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                let result =
                    if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(error) = result {
                    tracing::warn!(%error, "unassigning revoked partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; unassigning");
                let _ = consumer.unassign();
            }
        }
    }
}

impl SinkContext {
    /// Partitions leaving: make them durable and commit before letting go, so that the next
    /// owner starts exactly where this one's files end.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut state = lock(&self.state);
        let st = &mut *state;
        let revoked: Vec<Tp> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        for key in &revoked {
            st.verify.remove(key);
            st.backwards_checked.remove(key);
            st.dropped_unreconciled.remove(key);
        }
        st.pending.retain(|k| !revoked.contains(k));
        let result = with_committer(consumer, st, |layout, committer| match layout {
            Layout::Single(single) => match single.revoke(committer, &revoked) {
                Some(e) => Err(e),
                None => Ok(()),
            },
            Layout::Partitions(parts) => {
                let result = parts.commit_some(committer, &revoked);
                for key in &revoked {
                    parts.forget(key);
                }
                result
            }
        });
        match result {
            Ok(()) => {}
            // A single file's revocation that could not be committed ends the run; so does a
            // write or fsync error (it is never retried on the descriptor), and a re-created
            // topic (nothing of it may be committed).
            Err(
                e @ (SinkError::Uncommitted { .. } | SinkError::Io { .. } | SinkError::TopicRecreated { .. }),
            ) => {
                if !matches!(e, SinkError::Uncommitted { .. }) {
                    tracing::error!(error = %e, "could not make revoked partitions durable; the run ends and the next owner re-reads from the last commit");
                }
                st.failed.get_or_insert(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not commit revoked partitions; the next owner re-reads from the last commit")
            }
        }
    }
}

/// Reconciles newly assigned partitions and writes the offset each must resume at into `tpl`
/// (the writer's next offset: one value for both). Returns the partitions that could not be
/// positioned (Kafka did not answer, or stalled), to be paused; the unreconciled ones are left in
/// `pending`.
fn assign_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    partitions: &[Tp],
    tpl: &mut TopicPartitionList,
) -> TopicPartitionList {
    let mut unpositioned = TopicPartitionList::new();
    if matches!(st.layout, Layout::Single(_)) {
        // Partitions joining a shared file start from a committed file: commit the held ones
        // first, so that every later commit's length covers only committed records.
        if let Err(e) = with_committer(consumer, st, |layout, committer| layout.commit(committer)) {
            st.failed.get_or_insert(e);
        }
        if matches!(&st.layout, Layout::Single(s) if s.dirty()) {
            st.pending.extend(partitions.iter().cloned());
            for (t, p) in partitions {
                unpositioned.add_partition(t, *p);
            }
            return unpositioned;
        }
    }
    let retry = match reconcile_assigned(consumer, st, partitions) {
        Ok(retry) => retry,
        Err(e) => {
            st.failed.get_or_insert(e);
            partitions.to_vec()
        }
    };
    for (t, p) in partitions {
        let key = (t.clone(), *p);
        let next =
            if retry.contains(&key) || st.stalled.contains(&key) { None } else { st.layout.next_of(&key) };
        match next {
            Some(Next::At(next)) => {
                if let Err(error) = tpl.set_partition_offset(t, *p, Offset::Offset(next)) {
                    tracing::warn!(%error, topic = t, partition = p, "cannot set the resume offset");
                }
                st.verify.insert(key, Verify { at: next, reseeked: false });
            }
            // Nothing committed anywhere: librdkafka starts as `start_at` says.
            Some(Next::First) => {}
            None => {
                unpositioned.add_partition(t, *p);
            }
        }
    }
    st.pending.extend(retry);
    unpositioned
}

/// Partitions assigned while Kafka did not answer (or while the single file had uncommitted
/// records): reconciled now, sought to their writer's next offset, and resumed.
pub(super) fn reconcile_pending<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
) -> Result<(), SinkError> {
    if matches!(st.layout, Layout::Single(_)) {
        with_committer(consumer, st, |layout, committer| layout.commit(committer))?;
        if matches!(&st.layout, Layout::Single(s) if s.dirty()) {
            return Ok(()); // not committed yet: try again on the next poll
        }
    }
    let pending = std::mem::take(&mut st.pending);
    let retry = reconcile_assigned(consumer, st, &pending)?;
    for key in pending.iter().filter(|k| !retry.contains(k) && !st.stalled.contains(k)) {
        let Some(next) = st.layout.next_of(key) else { continue };
        let dropped = st.dropped_unreconciled.remove(key);
        // Nothing committed: resume at the first record that arrived before reconciliation.
        if let Some(next) = next.offset().or(dropped) {
            if let Err(error) = consumer.seek(&key.0, key.1, Offset::Offset(next), Duration::from_secs(10)) {
                tracing::warn!(topic = key.0, partition = key.1, %error, "seek failed; will retry");
                st.layout.forget(key);
                st.pending.push(key.clone());
                continue;
            }
            st.verify.insert(key.clone(), Verify { at: next, reseeked: false });
        }
        let mut one = TopicPartitionList::new();
        one.add_partition(&key.0, key.1);
        if let Err(error) = consumer.resume(&one) {
            tracing::warn!(topic = key.0, partition = key.1, %error, "cannot resume a reconciled partition");
        }
    }
    st.pending.extend(retry);
    Ok(())
}

/// Why partitions are reconciled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Assigned: the layout holds them afterwards, each at the offset it must resume at (the
    /// caller positions the consumer there).
    Assigned,
    /// Start-up, for partitions with files from an earlier run that this daemon may no longer
    /// own: only the files are put right.
    Files,
}

/// Reconciles assigned partitions (see `Purpose::Assigned`). Returns the partitions to try again
/// later (Kafka did not answer, or answered with an error for one of them).
fn reconcile_assigned<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    partitions: &[Tp],
) -> Result<Vec<Tp>, SinkError> {
    reconcile(consumer, st, partitions, Purpose::Assigned)
}

/// At start-up, puts right the files of partitions this daemon may no longer own (see
/// `Purpose::Files`). Returns the partitions to try again later.
pub(super) fn reconcile_files<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    partitions: &[Tp],
) -> Result<Vec<Tp>, SinkError> {
    reconcile(consumer, st, partitions, Purpose::Files)
}

/// Reconciles `partitions` with their committed state (Kafka's, else the local cache).
fn reconcile<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    partitions: &[Tp],
    purpose: Purpose,
) -> Result<Vec<Tp>, SinkError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let committed = {
        let mut offsets = KafkaOffsets { consumer, topic_ids: &st.topic_ids };
        match offsets.committed(partitions) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "cannot read committed offsets yet; will retry");
                return Ok(partitions.to_vec());
            }
        }
    };
    if let Some(message) = failpoints::fire("sink::reconcile::committed") {
        tracing::warn!(%message, "cannot read committed offsets yet; will retry");
        return Ok(partitions.to_vec());
    }
    let assigned = purpose == Purpose::Assigned;
    let mut retry = Vec::new();
    for ((topic, partition), from_kafka) in committed {
        let (authority, own) =
            offsets::authority(&mut st.cache, &st.daemon_id, (&topic, partition), from_kafka);
        // Where the partition resumes: its committed offset, or the log start when retention
        // deleted records before they were archived (counted; librdkafka would otherwise reset
        // to `start_at`, which for "latest" skips everything retained).
        let mut resume = authority.as_ref().map(|c| c.offset);
        // A re-created topic: its files are still reconciled (an uncommitted tail may hold records
        // of the new topic), but nothing more is written to them.
        let mut stall = false;
        if let Some(c) = &authority {
            match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)) {
                Ok((_, high)) if c.offset > high => {
                    // The log ends before what was archived: the topic was deleted and re-created
                    // (or lost data). Writing on would mix two histories into one set of files.
                    tracing::error!(
                        topic,
                        partition,
                        committed = c.offset,
                        log_end = high,
                        "offsets went backwards: the partition is stalled and its archive left untouched; \
                         move {}/{topic} aside and reset the group's offsets to archive the new topic",
                        st.layout.dir().display()
                    );
                    stall = true;
                }
                Ok((low, _)) if c.offset < low => {
                    tracing::warn!(
                        topic,
                        partition,
                        committed = c.offset,
                        log_start = low,
                        lost = low - c.offset,
                        "records were deleted by retention before they were archived; resuming at the log start"
                    );
                    if assigned {
                        st.stats
                            .offsets_lost_to_retention
                            .fetch_add((low - c.offset) as u64, Ordering::Relaxed);
                    }
                    resume = Some(low);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(topic, partition, %error, "cannot read watermarks yet; will retry");
                    retry.push((topic, partition));
                    continue;
                }
            }
        }
        // Offsets that went back are the older check; a changed id also catches a re-created
        // topic whose offsets grew past the archive's.
        if let Some(c) = authority.as_ref().filter(|_| !stall)
            && let (Some(then), Some(now)) = (c.meta.tid.as_ref(), st.topic_ids.get(&topic))
            && then != now
        {
            tracing::error!(
                topic,
                partition,
                archived_id = then,
                current_id = now,
                "topic id changed: the topic was deleted and re-created since it was archived; the partition is \
                 stalled and its archive left untouched; move {}/{topic} aside and reset the group's offsets to \
                 archive the new topic",
                st.layout.dir().display()
            );
            stall = true;
        }
        if stall {
            st.stalled.insert((topic.clone(), partition));
            st.stats.stalled_partitions.store(st.stalled.len() as u64, Ordering::Relaxed);
        }
        match &mut st.layout {
            Layout::Single(single) => {
                if assigned && !stall {
                    single.join((topic, partition), resume, authority.as_ref().map(|c| c.offset));
                }
            }
            Layout::Partitions(parts) => {
                let (writer, outcome) =
                    parts.reconcile((&topic, partition), authority.as_ref(), &own, resume)?;
                tracing::info!(
                    topic,
                    partition,
                    next_offset = ?writer.next,
                    ?outcome,
                    assigned,
                    stall,
                    "partition reconciled"
                );
                if assigned && !stall {
                    parts.hold(writer);
                }
            }
        }
    }
    Ok(retry)
}

/// Single-file sink, at start-up: reads every partition's commit of the topics (Kafka's, else the
/// local cache's) and reconciles the file with them. Returns false if Kafka did not answer (try
/// again).
pub(super) fn reconcile_single_file<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    topics: &[String],
    probe: &rdkafka::ClientConfig,
) -> Result<bool, SinkError> {
    let mut partitions = Vec::new();
    for t in topics {
        match admin::topic_partitions(probe, t, Duration::from_secs(10)) {
            Ok(Some(n)) => partitions.extend((0..n as i32).map(|p| (t.clone(), p))),
            Ok(None) | Err(_) => return Ok(false),
        }
    }
    let committed = {
        let mut offsets = KafkaOffsets { consumer, topic_ids: &st.topic_ids };
        match offsets.committed(&partitions) {
            Ok(c) => c,
            Err(error) => {
                tracing::warn!(%error, "cannot read every committed offset yet; will retry");
                return Ok(false);
            }
        }
    };
    match &mut st.layout {
        Layout::Single(single) => single.reconcile(committed, &st.cache)?,
        Layout::Partitions(_) => {}
    }
    Ok(true)
}

/// Whether a record just consumed is the next one its partition's layout must write. Records of
/// a partition not yet reconciled, from before its resume offset, or that prove the consumer is
/// not where it was positioned are not (and are dealt with here: remembered, counted, sought
/// past, or the partition stalled).
pub(super) fn admit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    key: &Tp,
    offset: i64,
) -> bool {
    let (topic, partition) = (key.0.as_str(), key.1);
    let Some(next) = st.layout.next_of(key) else {
        // Not (yet) reconciled: the partition is paused, and the seek after reconciliation
        // fetches this record again (to this offset, if nothing was committed).
        let lowest = st.dropped_unreconciled.entry(key.clone()).or_insert(offset);
        *lowest = (*lowest).min(offset);
        return false;
    };
    if let Some(v) = st.verify.get_mut(key) {
        if offset > v.at && !v.reseeked {
            // The first record after positioning lies beyond the resume offset: either the
            // position was not applied (librdkafka's own committed-offset fetch won), or the
            // offsets between hold no records (transaction markers, compaction, retention).
            // Seek once more to tell which; this record comes again either way.
            v.reseeked = true;
            let at = v.at;
            tracing::debug!(
                topic,
                partition,
                expected = at,
                got = offset,
                "first record beyond the resume offset; seeking again to confirm"
            );
            if let Err(error) = consumer.seek(topic, partition, Offset::Offset(at), Duration::from_secs(10)) {
                tracing::warn!(topic, partition, %error, "seek failed; the partition is reconciled again");
                st.verify.remove(key);
                st.layout.forget(key);
                st.pending.push(key.clone());
            }
            return false;
        }
        if offset >= v.at {
            st.verify.remove(key);
        }
    }
    // Nothing committed anywhere: whatever comes first is next.
    let Next::At(next) = next else { return true };
    if offset < next {
        // A record fetched before the position took effect. If the log now ends below what
        // was written, the topic was re-created: stall instead of skipping (or, worse,
        // overwriting) forever. Read the watermarks once per positioning, not per record.
        if st.backwards_checked.insert(key.clone())
            && let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))
            && high < next
        {
            tracing::error!(
                topic,
                partition,
                written = next,
                log_end = high,
                "offsets went backwards: the partition is stalled and its archive left untouched"
            );
            // (In a single file the partition keeps its place: what it wrote stays committed.)
            if let Layout::Partitions(parts) = &mut st.layout {
                parts.forget(key);
            }
            st.stalled.insert(key.clone());
            st.stats.stalled_partitions.store(st.stalled.len() as u64, Ordering::Relaxed);
            let mut one = TopicPartitionList::new();
            one.add_partition(topic, partition);
            let _ = consumer.pause(&one);
            return false;
        }
        st.stats.records_duplicate.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    if offset > next {
        // Offsets with no record: transaction markers, compaction, or retention deleted them
        // before they were read. Only the last is a loss; all are counted.
        st.stats.offsets_skipped.fetch_add((offset - next) as u64, Ordering::Relaxed);
    }
    true
}
