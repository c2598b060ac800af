//! Archive layouts by record time (issue 17): records land in the bucket directory of their
//! producer-set timestamp, increasing per partition; a late record joins the active bucket and is
//! counted; a crash between a seal's commit and its rename, and a partition moving to another
//! daemon mid-hour, keep every record exactly once; a caught-up quiet partition is sealed even
//! when an open transaction keeps its high watermark ahead.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::{self, daemon::Daemon, kafka};

const WAIT: Duration = Duration::from_secs(90);
/// 2026-12-03T10:00:00Z.
const H10: i64 = 1_796_292_000_000;
const MIN: i64 = 60_000;
const HOURLY: &str = "layout = \"{topic}/{time:%Y/%m/%d/%H}\"\n";

/// Every `*.log` file below `dir` (relative path) with its lines, sorted by path.
fn tree(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path: PathBuf = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "log") {
                let rel =
                    path.strip_prefix(dir).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                let text = fs::read_to_string(&path).unwrap_or_default();
                out.push((rel, text.lines().map(str::to_string).collect()));
            }
        }
    }
    out.sort();
    out
}

fn all_lines(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().flat_map(|(_, lines)| lines).collect()
}

/// The lines of the rotated files in bucket directory `bucket` (relative to the sink directory).
fn in_bucket(dir: &Path, bucket: &str) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|(rel, _)| Path::new(rel).parent() == Some(Path::new(bucket)))
        .flat_map(|(_, lines)| lines)
        .collect()
}

fn metric(d: &Daemon, name: &str) -> u64 {
    let (_, text) = d.http_get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .map(|v| v as u64)
        .sum()
}

fn at(hour_offset: i64, minute: i64) -> i64 {
    H10 + hour_offset * 60 * MIN + minute * MIN
}

fn timed(prefix: &str, times: &[i64]) -> Vec<(i64, String)> {
    times.iter().enumerate().map(|(i, t)| (*t, format!("{prefix}-{i}"))).collect()
}

#[test]
fn records_land_in_their_hours_and_a_late_one_joins_the_active_bucket() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("hours");
    kafka::create_topic(&bootstrap, &topic, 2, 3);
    let mut d = Daemon::new(&bootstrap, "layout-host");
    d.sink("hours", &[&topic], &format!("{HOURLY}seal_idle_after = \"2s\"\n"));
    d.start();
    // Partition 0: hours 10, 11 and 13, then a record of 10:30 (late), then 13 again.
    let p0 = timed("p0", &[at(0, 5), at(0, 40), at(1, 0), at(1, 59), at(3, 10), at(0, 30), at(3, 20)]);
    // Partition 1: one hour only.
    let p1 = timed("p1", &[at(2, 1), at(2, 2)]);
    kafka::produce_at(&bootstrap, &topic, 0, &p0);
    kafka::produce_at(&bootstrap, &topic, 1, &p1);
    let expected: Vec<String> = p0.iter().chain(&p1).map(|(_, v)| v.clone()).collect();
    let active = |p: i32| d.archive.join(&topic).join(format!("{topic}-{p}.log"));
    support::wait_for("every record archived and both active files sealed", WAIT, || {
        let lines = all_lines(&d.archive);
        (lines.len() >= expected.len() && !active(0).exists() && !active(1).exists()).then_some(())
    });
    support::daemon::assert_exactly_once(&all_lines(&d.archive), &expected);
    let bucket = |h: &str| in_bucket(&d.archive, &format!("{topic}/2026/12/03/{h}"));
    assert_eq!(bucket("10"), vec!["p0-0", "p0-1"]);
    assert_eq!(bucket("11"), vec!["p0-2", "p0-3"]);
    assert_eq!(bucket("12"), vec!["p1-0", "p1-1"]);
    assert_eq!(
        bucket("13"),
        vec!["p0-4", "p0-5", "p0-6"],
        "the late record joins the active bucket, in order"
    );
    assert_eq!(metric(&d, "macklake_sink_records_late_total"), 1);
    assert!(metric(&d, "macklake_sink_files_sealed_idle_total") >= 2);
    // Each partition's rotated files, in offset order, have increasing buckets.
    for p in [0, 1] {
        let prefix = format!("{topic}-{p}-");
        let mut files: Vec<(String, String)> = tree(&d.archive)
            .into_iter()
            .filter_map(|(rel, _)| {
                let name = Path::new(&rel).file_name()?.to_string_lossy().into_owned();
                name.starts_with(&prefix).then_some((name, rel))
            })
            .collect();
        files.sort();
        let buckets: Vec<&str> =
            files.iter().map(|(_, rel)| rel.rsplit_once('/').map_or("", |(b, _)| b)).collect();
        assert!(!buckets.is_empty() && buckets.windows(2).all(|w| w[0] <= w[1]), "partition {p}: {files:?}");
    }
    assert!(d.stop().success());
}

#[test]
fn a_crash_between_a_seal_and_its_rename_leaves_every_record_once() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("seal-crash");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut d = Daemon::new(&bootstrap, "seal-host");
    d.sink("seal", &[&topic], HOURLY);
    // The first seal (hour 10 → 11) commits, then the process dies before the rename.
    d.env("FAILPOINTS", "sink::rotate::rename=return(crash)");
    d.start();
    let first = timed("a", &[at(0, 1), at(0, 2), at(0, 3), at(1, 1)]);
    kafka::produce_at(&bootstrap, &topic, 0, &first);
    d.wait_exit(WAIT).expect("the daemon dies at the seal's rename");
    assert!(
        d.log().contains("failpoint sink::rotate::rename: crash"),
        "{}",
        support::daemon::tail(&d.log(), 30)
    );
    d.clear_env();
    d.start();
    let second = timed("b", &[at(1, 2), at(2, 0)]);
    kafka::produce_at(&bootstrap, &topic, 0, &second);
    let expected: Vec<String> = first.iter().chain(&second).map(|(_, v)| v.clone()).collect();
    support::wait_for("every record archived", WAIT, || {
        (all_lines(&d.archive).len() >= expected.len()).then_some(())
    });
    assert!(d.stop().success());
    support::daemon::assert_exactly_once(&all_lines(&d.archive), &expected);
    assert_eq!(in_bucket(&d.archive, &format!("{topic}/2026/12/03/10")), vec!["a-0", "a-1", "a-2"]);
    assert_eq!(in_bucket(&d.archive, &format!("{topic}/2026/12/03/11")), vec!["a-3", "b-0"]);
}

#[test]
fn a_partition_moving_to_another_daemon_mid_hour_continues_in_that_hour() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("move");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let sink = support::unique("move-sink");
    let conf = format!(
        "{HOURLY}commit_interval = \"300ms\"\n[kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n"
    );
    let mut a = Daemon::new(&bootstrap, &support::unique("host-a"));
    a.sink(&sink, &[&topic], &conf);
    a.start();
    let first = timed("a", &[at(0, 10), at(0, 40)]);
    kafka::produce_at(&bootstrap, &topic, 0, &first);
    a.wait_archived(&topic, first.len(), WAIT);
    assert!(a.stop().success());
    // Host B takes the partition over mid-hour: a record of 10:20 (before A's highest, 10:40,
    // and in the same hour) is not late there; 11:05 starts the next hour.
    let mut b = Daemon::new(&bootstrap, &support::unique("host-b"));
    b.sink(&sink, &[&topic], &conf);
    b.start();
    let second = timed("b", &[at(0, 20), at(0, 50), at(1, 5)]);
    kafka::produce_at(&bootstrap, &topic, 0, &second);
    support::wait_for("host B archives its records", WAIT, || {
        (all_lines(&b.archive).len() >= second.len()).then_some(())
    });
    assert!(b.stop().success());
    // B's first file went into hour 10 (it continued A's bucket), sealed by 11:05.
    assert_eq!(in_bucket(&b.archive, &format!("{topic}/2026/12/03/10")), vec!["b-0", "b-1"]);
    // A, back, closes its file off into hour 10 as well.
    a.start();
    a.wait_log("TakenOver", WAIT);
    assert!(a.stop().success());
    assert_eq!(in_bucket(&a.archive, &format!("{topic}/2026/12/03/10")), vec!["a-0", "a-1"]);
    let mut both = all_lines(&a.archive);
    both.extend(all_lines(&b.archive));
    let expected: Vec<String> = first.iter().chain(&second).map(|(_, v)| v.clone()).collect();
    support::daemon::assert_exactly_once(&both, &expected);
}

/// An exactly-once source's topic: transaction markers and an open transaction keep the high
/// watermark ahead of anything a read_committed consumer can read. The partition is caught up
/// at its last stable offset, and its quiet active file is sealed.
#[test]
fn an_idle_partition_behind_an_open_transaction_is_sealed() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("idle-txn");
    kafka::create_topic(&bootstrap, &topic, 2, 3);
    let transactional = |id: &str| -> BaseProducer {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("transactional.id", id)
            .set("transaction.timeout.ms", "120000")
            .create()
            .expect("transactional producer");
        p.init_transactions(Duration::from_secs(30)).expect("init_transactions");
        p
    };
    let committed = transactional(&support::unique("txn-committed"));
    committed.begin_transaction().expect("begin");
    for i in 0..3 {
        let value = format!("c-{i}");
        committed.send(BaseRecord::<(), str>::to(&topic).partition(0).payload(value.as_str())).expect("send");
    }
    committed.commit_transaction(Duration::from_secs(30)).expect("commit");
    // Left open on both partitions for the rest of the test.
    let open = transactional(&support::unique("txn-open"));
    open.begin_transaction().expect("begin");
    for p in [0, 1] {
        open.send(BaseRecord::<(), str>::to(&topic).partition(p).payload("open")).expect("send");
    }
    open.flush(Duration::from_secs(30)).expect("flush the open transaction's records");

    let mut d = Daemon::new(&bootstrap, "idle-host");
    d.sink("idle", &[&topic], "seal_idle_after = \"2s\"\n");
    d.start();
    let active = d.archive.join(&topic).join(format!("{topic}-0.log"));
    support::wait_for("partition 0's active file sealed", WAIT, || {
        let rotated: Vec<String> = tree(&d.archive)
            .into_iter()
            .filter(|(rel, _)| rel.contains(&format!("{topic}-0-")))
            .flat_map(|(_, lines)| lines)
            .collect();
        (rotated.len() == 3 && !active.exists()).then_some(rotated)
    });
    assert_eq!(all_lines(&d.archive), vec!["c-0", "c-1", "c-2"], "nothing of the open transaction");
    assert!(metric(&d, "macklake_sink_files_sealed_idle_total") >= 1);
    open.abort_transaction(Duration::from_secs(30)).expect("abort");
    assert!(d.stop().success());
}
