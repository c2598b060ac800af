//! Where a sink partition resumes: the committed offset, the log start when retention deleted
//! what was not archived yet, and nothing dropped while a partition waits to be reconciled.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::{self, kafka};

const WAIT: Duration = Duration::from_secs(90);

fn records(tag: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("{tag}{i:05}")).collect()
}

/// Issue 13 finding 5: with `start_at = "latest"`, a committed offset below the log start (the
/// records after it were deleted by retention before they were archived) made librdkafka reset to
/// the end, skipping every record still retained. The sink must resume at the log start and
/// count the gap.
#[test]
fn retention_below_the_committed_offset_resumes_at_the_log_start_even_with_start_at_latest() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("retention-gap");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut d = Daemon::new(&bootstrap, "retention-host");
    d.sink(
        &support::unique("retention-sink"),
        &[&topic],
        "start_at = \"latest\"\ncommit_interval = \"200ms\"\n",
    );
    d.start();
    d.wait_log("partition reconciled", WAIT);
    let first = records("a", 0, 10);
    kafka::produce_all(&bootstrap, &topic, 0, &first);
    d.wait_archived(&topic, 10, WAIT);
    assert!(d.stop().success());
    // While the sink is down: 10 more records, of which retention takes the first 5.
    let second = records("b", 0, 10);
    kafka::produce_all(&bootstrap, &topic, 0, &second);
    assert_eq!(kafka::delete_records(&bootstrap, &topic, 0, 15), 15);
    d.start();
    let mut expected = first.clone();
    expected.extend_from_slice(&second[5..]);
    d.wait_archived(&topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(d.archived(&topic), expected, "every retained record after the gap is archived");
    let (_, metrics) = d.http_get("/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with("macklake_sink_records_skipped_total")
            && l.contains("retention")
            && l.ends_with(" 5")),
        "the 5 deleted records are counted:\n{}",
        metrics.lines().filter(|l| l.contains("skipped")).collect::<Vec<_>>().join("\n")
    );
    assert!(d.stop().success());
}

/// Issue 13 finding 6: a topic deleted and re-created, then written past the archived offset
/// while the sink was down. Offsets do not go backwards, so only the topic's id tells the two
/// histories apart: the partition must stall, the archive keep the first history only.
#[test]
fn a_recreated_topic_that_grew_past_the_archive_is_told_by_its_id() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("recreated-id");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let first = records("first", 0, 10);
    kafka::produce_all(&bootstrap, &topic, 0, &first);
    let mut d = Daemon::new(&bootstrap, "recreate-id-host");
    d.sink(&support::unique("recreate-id-archive"), &[&topic], "");
    d.start();
    assert_eq!(d.wait_archived(&topic, 10, WAIT), first);
    assert!(d.stop().success());

    kafka::delete_topic(&bootstrap, &topic);
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    kafka::produce_all(&bootstrap, &topic, 0, &records("second", 0, 25));
    d.start();
    d.wait_log("topic id changed", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.archived(&topic), first, "the archive keeps the first history only");
    let (code, health) = d.http_get("/health");
    assert_eq!(code, 503, "a stalled partition is reported: {health}");
    assert!(d.stop().success());
}

/// Issue 13: a topic deleted and re-created while the sink is running, and written past the
/// archived offset: the new history must never be appended to the old one's files.
#[test]
fn a_topic_recreated_while_the_sink_runs_never_mixes_into_the_archive() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("recreated-live");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let first = records("first", 0, 10);
    kafka::produce_all(&bootstrap, &topic, 0, &first);
    let mut d = Daemon::new(&bootstrap, "recreate-live-host");
    let sink = support::unique("recreate-live-archive");
    d.sink(&sink, &[&topic], "commit_interval = \"300ms\"\n");
    d.start();
    assert_eq!(d.wait_archived(&topic, 10, WAIT), first);
    // Deleted once the first history is committed: records in the file but not yet committed
    // when their topic is deleted cannot be told from the new topic's, and are dropped with them.
    support::wait_for("the first history committed", WAIT, || {
        let offsets = d.try_json(&format!("/connectors/{sink}/offsets"))?;
        (offsets["offsets"][0]["offset"]["kafka_offset"] == 10).then_some(())
    });
    kafka::delete_topic(&bootstrap, &topic);
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    kafka::produce_all(&bootstrap, &topic, 0, &records("second", 0, 25));
    support::wait_for("the partition stalled", WAIT, || {
        let (code, health) = d.http_get("/health");
        (code == 503 && health.contains("stalled")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let archived = d.archived(&topic);
    assert_eq!(archived, first, "the archive keeps the first history only");
    assert!(d.stop().success());
    // And after a restart, still stalled, still untouched.
    d.start();
    d.wait_log("topic id changed", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.archived(&topic), first);
    assert!(d.stop().success());
}
