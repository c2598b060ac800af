//! Exactly-once into files: crash points, takeovers, and histories that must not be mixed.

use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, archived_lines, assert_exactly_once};
use crate::support::{self, kafka};

/// Short client timeouts so that a SIGKILLed daemon's partitions move within seconds.
const FAST_FAILOVER: &str = "commit_interval = \"500ms\"\n[kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"";

/// Two daemons (different daemon_id, separate directories) run the same sink connector and split
/// the partitions; one is SIGKILLed mid-stream and its partitions move to the other; once it is
/// back (and has put its files right), the union of both directories holds every record once.
#[test]
fn two_daemons_split_a_sink_and_a_killed_ones_partitions_move_to_the_other_exactly_once() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("shared-sink");
    kafka::create_topic(&bootstrap, &topic, 6, 3);
    let connector = support::unique("shared-archive");
    let mut a = Daemon::new(&bootstrap, "host-a");
    let mut b = Daemon::new(&bootstrap, "host-b");
    a.sink(&connector, &[&topic], FAST_FAILOVER);
    b.sink(&connector, &[&topic], FAST_FAILOVER);
    a.start();
    b.start();

    let producer_bootstrap = bootstrap.clone();
    let producer_topic = topic.clone();
    let producer = std::thread::spawn(move || {
        let mut all = Vec::new();
        for batch in 0..40 {
            for p in 0..6 {
                let values: Vec<String> = (0..25).map(|i| format!("p{p} b{batch:03} r{i:02}")).collect();
                kafka::produce_all(&producer_bootstrap, &producer_topic, p, &values);
                all.extend(values);
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        all
    });

    let union = |a: &Daemon, b: &Daemon| {
        let mut all = archived_lines(&a.archive.join(&topic));
        all.extend(archived_lines(&b.archive.join(&topic)));
        all
    };
    support::wait_for("both daemons archiving", Duration::from_secs(60), || {
        let (na, nb) = (a.archived(&topic).len(), b.archived(&topic).len());
        (na > 0 && nb > 0).then_some(())
    });
    a.kill();
    let expected = producer.join().expect("producer");
    // B takes A's partitions once A's session expires.
    support::wait_for("B archiving past A's last records", Duration::from_secs(90), || {
        (b.archived(&topic).len() + a.archived(&topic).len() >= expected.len()).then_some(())
    });
    a.start();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let all = union(&a, &b);
        if all.len() == expected.len() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(a.stop().success());
    assert!(b.stop().success());
    let all = union(&a, &b);
    assert_exactly_once(&all, &expected);
}

/// A topic deleted and re-created under an archive: the partition stalls with a clear error and
/// the archive is left untouched instead of mixing two histories.
#[test]
fn offsets_that_go_backwards_stall_the_partition_and_leave_the_archive_alone() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("recreated");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let first: Vec<String> = (0..10).map(|i| format!("first history {i}")).collect();
    kafka::produce_all(&bootstrap, &topic, 0, &first);
    let mut d = Daemon::new(&bootstrap, "recreate-host");
    d.sink(&support::unique("recreate-archive"), &[&topic], "");
    d.start();
    assert_eq!(d.wait_archived(&topic, 10, Duration::from_secs(60)), first);
    assert!(d.stop().success());

    kafka::delete_topic(&bootstrap, &topic);
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let second: Vec<String> = (0..5).map(|i| format!("second history {i}")).collect();
    kafka::produce_all(&bootstrap, &topic, 0, &second);
    d.start();
    d.wait_log("offsets went backwards", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.archived(&topic), first, "the archive keeps the first history only");
    assert!(d.stop().success());
}

/// Appends numbered lines to `files` files in `dir` until `stop`; returns every line written.
fn stream_until(
    dir: std::path::PathBuf,
    files: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let mut all = Vec::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for f in 0..files {
            let lines: Vec<String> = (0..50).map(|i| format!("file{f} line {:07}", n + i)).collect();
            crate::support::daemon::append(&dir.join(format!("s{f}.log")), &lines);
            all.extend(lines);
        }
        n += 50;
        std::thread::sleep(Duration::from_millis(20));
    }
    all
}

/// Runs `chaos` against the daemon while lines stream into its logs; returns every line written.
fn streaming(d: &mut Daemon, chaos: impl FnOnce(&mut Daemon)) -> Vec<String> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (dir, flag) = (d.logs.clone(), stop.clone());
    let writer = std::thread::spawn(move || stream_until(dir, 2, flag));
    chaos(d);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer")
}

/// SIGKILLs and restarts the daemon `n` times, 2.5 s apart.
fn kill_repeatedly(d: &mut Daemon, n: usize) {
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(2500));
        d.kill();
        std::thread::sleep(Duration::from_millis(300));
        d.start();
    }
    std::thread::sleep(Duration::from_secs(1));
}

fn eos_daemon(name: &str, kafka: &str) -> (Daemon, String) {
    let bootstrap = support::bootstrap();
    let topic = support::unique(name);
    // A daemon_id of its own: positions in the shared offsets topic are keyed by it, and an
    // earlier run's files may have had the same inode numbers and content.
    let d = Daemon::new(&bootstrap, &support::unique(&format!("{name}-host")));
    d.connector(
        "source.toml",
        &format!(
            "name = \"{name}-source\"\nkind = \"file-source\"\npaths = [\"{}/*.log\"]\nexactly_once = true\n\
             transaction_interval = \"300ms\"\n[topic]\nname = \"{topic}\"\npartitions = 3\nreplication_factor = 3\n{kafka}\n",
            d.logs.display()
        ),
    );
    d.sink(&support::unique(&format!("{name}-sink")), &[&topic], FAST_FAILOVER);
    (d, topic)
}

/// An exactly-once source SIGKILLed three times mid-stream: every line is in the topic
/// (read_committed) exactly once, and in the sink's files exactly once.
#[test]
fn an_exactly_once_source_killed_mid_stream_writes_each_line_once() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = eos_daemon("eos-kill", "");
    d.start();
    let expected = streaming(&mut d, |d| kill_repeatedly(d, 3));
    d.wait_archived(&topic, expected.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    assert_exactly_once(&kafka::read_topic(&support::bootstrap(), &topic), &expected);
    assert_exactly_once(&d.archived(&topic), &expected);
    assert!(d.stop().success());
}

/// Paused (SIGSTOP) for longer than its transaction timeout, the daemon resumes, finds its
/// transaction aborted by the coordinator, and recovers with no duplicate and no loss.
#[test]
fn a_pause_longer_than_the_transaction_timeout_recovers_exactly_once() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = eos_daemon("eos-pause", "[kafka]\n\"transaction.timeout.ms\" = \"3000\"");
    d.start();
    let expected = streaming(&mut d, |d| {
        std::thread::sleep(Duration::from_secs(3));
        let pid = nix::unistd::Pid::from_raw(d.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        std::thread::sleep(Duration::from_secs(16));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
        std::thread::sleep(Duration::from_secs(3));
    });
    d.wait_archived(&topic, expected.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    assert_exactly_once(&kafka::read_topic(&support::bootstrap(), &topic), &expected);
    assert_exactly_once(&d.archived(&topic), &expected);
    assert!(d.stop().success());
}

/// The at-least-once source SIGKILLed mid-stream: nothing is lost; the duplicates (lines
/// acknowledged after the last checkpoint) are counted and reported, not asserted away.
#[test]
fn an_at_least_once_source_killed_mid_stream_loses_nothing() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("alo-kill");
    let mut d = Daemon::new(&bootstrap, "alo-kill-host");
    d.source("alo-source", &topic, 3);
    d.sink(&support::unique("alo-sink"), &[&topic], FAST_FAILOVER);
    d.start();
    let expected = streaming(&mut d, |d| kill_repeatedly(d, 3));
    d.wait_archived(&topic, expected.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2));
    let archived = d.archived(&topic);
    let set: std::collections::HashSet<&String> = archived.iter().collect();
    let lost = expected.iter().filter(|l| !set.contains(l)).count();
    eprintln!(
        "at-least-once, 3 SIGKILLs: {} lines, {} lost, {} duplicated in the archive",
        expected.len(),
        lost,
        archived.len() - set.len()
    );
    assert_eq!(lost, 0);
    // The sink itself is exactly-once: every duplicate is in the topic too.
    assert_eq!(kafka::read_topic(&bootstrap, &topic).len(), archived.len());
    assert!(d.stop().success());
}

/// Unmounts a tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount_tmpfs(dir: &std::path::Path, size: &str) -> Option<Mount> {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

/// The sink's disk fills up: the sink stalls with a clear error, never commits past what is on
/// disk, and once there is room again it finishes with every record exactly once.
#[test]
fn a_full_sink_disk_stalls_the_sink_and_it_recovers_exactly_once() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let mut d = Daemon::new(&bootstrap, "full-disk-host");
    let Some(mount) = mount_tmpfs(&d.archive, "256k") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let topic = support::unique("full-disk");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let records: Vec<String> = (0..4000).map(|i| format!("record {i:05} {}", "x".repeat(180))).collect();
    kafka::produce_all(&bootstrap, &topic, 0, &records);
    d.sink(&support::unique("full-disk-sink"), &[&topic], "commit_interval = \"200ms\"");
    d.start();
    d.wait_log("No space left on device", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert!(d.archived(&topic).len() < records.len(), "the disk cannot hold them all");
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=16m"])
        .arg(&mount.0)
        .status()
        .is_ok_and(|s| s.success());
    assert!(grown, "remounting the tmpfs larger");
    d.wait_archived(&topic, records.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.stop().success());
    d.assert_archived_once(&topic, &records);
    drop(mount);
}

/// Every broker down for two minutes while lines keep coming: the exactly-once source and the
/// sink wait (reporting why) and recover by themselves, with every line once. Slow: --long.
#[test]
#[ignore = "long: run by scripts/test --long"]
fn a_cluster_outage_of_minutes_is_ridden_out_exactly_once() {
    let _cluster = support::exclusive_cluster();
    let dir = support::cluster_dir();
    let dir = dir.to_str().expect("utf-8").to_string();
    let (mut d, topic) = eos_daemon("outage", "");
    d.start();
    let expected = streaming(&mut d, |_| {
        std::thread::sleep(Duration::from_secs(3));
        for node in ["1", "2", "3"] {
            let out = crate::support::run(&["cluster", "kill", node, "--dir", &dir]);
            assert!(out.status.success(), "kill {node}");
        }
        std::thread::sleep(Duration::from_secs(120));
        let out = crate::support::run(&["cluster", "up", "--dir", &dir]);
        assert!(out.status.success(), "cluster up: {}", crate::support::text(&out.stderr));
        std::thread::sleep(Duration::from_secs(3));
    });
    d.wait_archived(&topic, expected.len(), Duration::from_secs(180));
    std::thread::sleep(Duration::from_secs(2));
    assert_exactly_once(&kafka::read_topic(&support::bootstrap(), &topic), &expected);
    d.assert_archived_once(&topic, &expected);
    assert!(d.stop().success());
}
