//! Prometheus exposition (`GET /metrics`): the connectors' own counters, read at scrape time.
//!
//! Connectors keep plain atomics (and two latency histograms) in their stats; a collector walks
//! the live registry at every scrape, so connectors that come and go with reloads need no
//! (un)registration. Labels stay low-cardinality: connector, topic, partition; never a path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry as PromRegistry;

use crate::status::{Registry, State, Stats};

pub use crate::latency::LatencyHistogram;

pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The text exposition of everything the registry holds.
pub fn render(registry: &Arc<Registry>) -> Result<String, std::fmt::Error> {
    let mut prom = PromRegistry::default();
    prom.register_collector(Box::new(Connectors(registry.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &prom)?;
    Ok(out)
}

#[derive(Debug)]
struct Connectors(Arc<Registry>);

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Labels of one sample: connector, and for per-partition series topic and partition.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// One metric family: a name, help, and its samples as (labels, value), each value encoded by
/// `encode`. Families with no samples are left out.
fn family<T>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    samples: &[(Labels<'_>, T)],
    encode: impl Fn(&T, MetricEncoder<'_>) -> Result<(), std::fmt::Error>,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        encode(value, family.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, u64)],
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Counter, samples, |v, e| ConstCounter::new(*v).encode(e))
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, i64)],
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Gauge, samples, |v, e| ConstGauge::new(*v).encode(e))
}

fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_>, &LatencyHistogram)],
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Histogram, samples, |h, e| h.histogram().encode(e))
}

impl Collector for Connectors {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let connectors = self.0.connectors();
        let now_ms = crate::fsutil::unix_now_ms();
        let mut up = Vec::new();
        let mut restarts = Vec::new();
        let mut sources = Vec::new();
        let mut sinks = Vec::new();
        for c in &connectors {
            let (state, _, _) = c.state();
            let label = vec![("connector", c.name.as_str()), ("kind", c.kind)];
            up.push((label.clone(), i64::from(state == State::Running)));
            restarts.push((vec![("connector", c.name.as_str())], get(&c.restarts)));
            match &c.stats {
                Stats::Source(s) => sources.push((c.name.as_str(), s.clone())),
                Stats::Sink(s) => sinks.push((c.name.as_str(), s.clone())),
            }
        }
        gauge(
            &mut encoder,
            "macklake_connector_up",
            "1 while the connector runs, 0 while it is failed",
            &up,
        )?;
        counter(
            &mut encoder,
            "macklake_connector_restarts",
            "Restarts of the connector after a failure",
            &restarts,
        )?;

        let rejected = self.0.rejected().len() as i64;
        gauge(
            &mut encoder,
            "macklake_connector_files_rejected",
            "Connector files that failed validation (see the log)",
            &[(vec![], rejected)],
        )?;

        let by = |f: &dyn Fn(&crate::source::SourceStats) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
            sources.iter().map(|(n, s)| (vec![("connector", *n)], f(s))).collect()
        };
        counter(
            &mut encoder,
            "macklake_source_lines_read",
            "Lines read from files and handed to the producer",
            &by(&|s| get(&s.lines_sent)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_bytes_read",
            "Bytes of lines read (without terminators)",
            &by(&|s| get(&s.bytes_sent)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_lines_acknowledged",
            "Lines Kafka acknowledged",
            &by(&|s| get(&s.lines_acked)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_bytes_acknowledged",
            "Bytes of lines Kafka acknowledged",
            &by(&|s| get(&s.bytes_acked)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_records_failed",
            "Records Kafka refused (the connector restarts from its checkpoint)",
            &by(&|s| get(&s.records_failed)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_records_dead_lettered",
            "Over-long lines also sent to the dead-letter topic",
            &by(&|s| get(&s.dead_lettered)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_copies_read_whole",
            "Files held as a copy of another that outgrew it and were read whole (lines they share may be sent twice)",
            &by(&|s| get(&s.copies_read_whole)),
        )?;
        let mut long = Vec::new();
        for (n, s) in &sources {
            long.push((vec![("connector", *n), ("action", "split")], get(&s.long_lines_split)));
            long.push((vec![("connector", *n), ("action", "truncated")], get(&s.long_lines_truncated)));
            long.push((vec![("connector", *n), ("action", "skipped")], get(&s.long_lines_skipped)));
        }
        counter(
            &mut encoder,
            "macklake_source_long_lines",
            "Lines longer than max_line_bytes, by what the policy did",
            &long,
        )?;
        counter(
            &mut encoder,
            "macklake_source_multiline_records",
            "Records of more than one line sent ([multiline])",
            &by(&|s| get(&s.multiline_records)),
        )?;
        let mut cuts = Vec::new();
        let mut filtered = Vec::new();
        for (n, s) in &sources {
            cuts.push((vec![("connector", *n), ("reason", "max_lines")], get(&s.records_cut_max_lines)));
            cuts.push((vec![("connector", *n), ("reason", "max_bytes")], get(&s.records_cut_max_bytes)));
            cuts.push((vec![("connector", *n), ("reason", "timeout")], get(&s.records_cut_timeout)));
            cuts.push((vec![("connector", *n), ("reason", "rotation")], get(&s.records_cut_rotation)));
            filtered
                .push((vec![("connector", *n), ("filter", "include_lines")], get(&s.records_not_included)));
            filtered.push((vec![("connector", *n), ("filter", "exclude_lines")], get(&s.records_excluded)));
        }
        counter(
            &mut encoder,
            "macklake_source_records_cut",
            "Multi-line records ended before their rule said so: max_lines, max_bytes, timeout (nothing more came), rotation (their file was rotated away)",
            &cuts,
        )?;
        counter(
            &mut encoder,
            "macklake_source_records_filtered",
            "Records not sent: matching no include_lines, or one of exclude_lines (their positions pass them)",
            &filtered,
        )?;
        let mut files = Vec::new();
        for (n, s) in &sources {
            files.push((vec![("connector", *n), ("descriptor", "open")], get(&s.files) as i64));
            files.push((vec![("connector", *n), ("descriptor", "closed_idle")], get(&s.files_closed) as i64));
        }
        gauge(&mut encoder, "macklake_source_files", "Files followed", &files)?;
        let gauge_by = |f: &dyn Fn(&crate::source::SourceStats) -> i64| -> Vec<(Vec<(&str, &str)>, i64)> {
            sources.iter().map(|(n, s)| (vec![("connector", *n)], f(s))).collect()
        };
        gauge(
            &mut encoder,
            "macklake_source_unreadable_paths",
            "Paths that could not be read, or match but are refused (symlinks, FIFOs, devices), at the last rescan",
            &gauge_by(&|s| get(&s.unreadable) as i64),
        )?;
        gauge(
            &mut encoder,
            "macklake_source_conflicting_files",
            "Files this connector matches that another source reads",
            &gauge_by(&|s| get(&s.conflicts) as i64),
        )?;
        gauge(
            &mut encoder,
            "macklake_source_checkpoint_age_seconds",
            "Seconds since positions were last made durable (checkpoint file or transaction)",
            &gauge_by(&|s| {
                let at = get(&s.checkpoint_at_ms);
                if at == 0 { 0 } else { (now_ms.saturating_sub(at) / 1000) as i64 }
            }),
        )?;
        counter(
            &mut encoder,
            "macklake_source_transaction_commits",
            "Exactly-once transactions committed",
            &by(&|s| get(&s.transactions)),
        )?;
        counter(
            &mut encoder,
            "macklake_source_transaction_aborts",
            "Exactly-once transactions aborted or abandoned to fencing",
            &by(&|s| get(&s.transaction_aborts)),
        )?;
        let delivery: Vec<_> =
            sources.iter().map(|(n, s)| (vec![("connector", *n)], &s.delivery_seconds)).collect();
        histogram(
            &mut encoder,
            "macklake_source_delivery_seconds",
            "From reading a line in its file to Kafka's acknowledgement",
            &delivery,
        )?;

        let by = |f: &dyn Fn(&crate::sink::SinkStats) -> u64| -> Vec<(Vec<(&str, &str)>, u64)> {
            sinks.iter().map(|(n, s)| (vec![("connector", *n)], f(s))).collect()
        };
        counter(
            &mut encoder,
            "macklake_sink_records_written",
            "Records written to sink files",
            &by(&|s| get(&s.records_written)),
        )?;
        counter(
            &mut encoder,
            "macklake_sink_bytes_written",
            "Bytes written to sink files",
            &by(&|s| get(&s.bytes_written)),
        )?;
        let mut skipped = Vec::new();
        for (n, s) in &sinks {
            skipped.push((vec![("connector", *n), ("reason", "null_value")], get(&s.records_skipped_null)));
            skipped.push((vec![("connector", *n), ("reason", "already_written")], get(&s.records_duplicate)));
            skipped
                .push((vec![("connector", *n), ("reason", "retention")], get(&s.offsets_lost_to_retention)));
        }
        counter(
            &mut encoder,
            "macklake_sink_records_skipped",
            "Records not written: null values, records fetched again below the committed offset, \
             offsets deleted by retention before they were read",
            &skipped,
        )?;
        counter(
            &mut encoder,
            "macklake_sink_commits",
            "Offset commits (each after an fsync)",
            &by(&|s| get(&s.commits)),
        )?;
        counter(&mut encoder, "macklake_sink_rotations", "Files rotated", &by(&|s| get(&s.rotations)))?;
        counter(
            &mut encoder,
            "macklake_sink_files_sealed_idle",
            "Active files sealed because their partition was caught up and quiet (seal_idle_after)",
            &by(&|s| get(&s.files_sealed_idle)),
        )?;
        counter(
            &mut encoder,
            "macklake_sink_records_late",
            "Records older than their partition's active time bucket, written into it (layout with a time field)",
            &by(&|s| get(&s.records_late)),
        )?;
        counter(
            &mut encoder,
            "macklake_sink_records_untimed",
            "Records bucketed by their consume time: no record timestamp (or one the layout cannot use)",
            &by(&|s| get(&s.records_untimed)),
        )?;
        counter(
            &mut encoder,
            "macklake_sink_records_not_unwrapped",
            "value_format = connect-json: values written raw because they were not a JsonConverter \
             envelope with a string payload",
            &by(&|s| get(&s.records_not_unwrapped)),
        )?;
        counter(
            &mut encoder,
            "macklake_sink_files_compressed",
            "Rotated files compressed",
            &by(&|s| get(&s.files_compressed)),
        )?;
        counter(
            &mut encoder,
            "macklake_sink_files_deleted",
            "Rotated files deleted by retention (keep_files, keep_age, keep_bytes)",
            &by(&|s| get(&s.files_deleted)),
        )?;
        gauge(
            &mut encoder,
            "macklake_sink_stalled_partitions",
            "Partitions stalled because their offsets went backwards",
            &sinks
                .iter()
                .map(|(n, s)| (vec![("connector", *n)], get(&s.stalled_partitions) as i64))
                .collect::<Vec<_>>(),
        )?;
        let lags: Vec<(String, String, String, i64)> = sinks
            .iter()
            .flat_map(|(n, s)| {
                let lag = s.lag.lock().unwrap_or_else(|p| p.into_inner()).clone();
                lag.into_iter().map(move |((t, p), l)| (n.to_string(), t, p.to_string(), l))
            })
            .collect();
        let lag_samples: Vec<_> = lags
            .iter()
            .map(|(n, t, p, l)| {
                (vec![("connector", n.as_str()), ("topic", t.as_str()), ("partition", p.as_str())], *l)
            })
            .collect();
        gauge(
            &mut encoder,
            "macklake_sink_lag_records",
            "Records between the partition's end and what the sink has written",
            &lag_samples,
        )?;
        let durable: Vec<_> =
            sinks.iter().map(|(n, s)| (vec![("connector", *n)], &s.durable_seconds)).collect();
        histogram(
            &mut encoder,
            "macklake_sink_durable_seconds",
            "From consuming a record to the fsync that made it durable",
            &durable,
        )?;
        Ok(())
    }
}
