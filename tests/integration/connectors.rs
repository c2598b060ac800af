//! The daemon end to end: file → file-source → Kafka → file-sink → file, on the real cluster.

use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, append, assert_exactly_once};
use crate::support::{self, kafka, run, text};

const LONG: Duration = Duration::from_secs(120);

/// The seed course's scenario: ten lines appended to a watched file reach `macklake-topic`
/// (1 partition, RF 3) and the sink's file, in order, and nothing else does.
#[test]
fn the_seed_scenario_ten_lines_arrive_in_order_and_nothing_else() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    // A fresh topic, so that earlier runs' records cannot be mistaken for (or hide) ours; the
    // source creates it from its [topic] table.
    kafka::delete_topic(&bootstrap, "macklake-topic");
    let mut d = Daemon::new(&bootstrap, "seed-host");
    d.source("seed-source", "macklake-topic", 1);
    d.sink(&support::unique("seed-archive"), &["macklake-topic"], "");
    d.start();
    let lines: Vec<String> = (0..10).map(|i| format!("Mensagem {i} - Teste de mensagem Kafka")).collect();
    append(&d.logs.join("mensagens_produzidas.log"), &lines);
    let archived = d.wait_archived("macklake-topic", 10, LONG);
    assert_eq!(archived, lines);
    let mut replicas = kafka::replicas(&bootstrap, "macklake-topic");
    replicas[0].sort_unstable();
    assert_eq!(replicas, vec![vec![1, 2, 3]], "1 partition, RF 3");
    assert!(d.archive.join("macklake-topic/macklake-topic-0.log").exists(), "the stable active file name");
    // Nothing else arrives later either.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.archived("macklake-topic"), lines);
    assert!(d.stop().success(), "SIGTERM exits 0:\n{}", d.log());
}

/// 100 000 lines from 4 files into a 6-partition topic: all arrive, each once, and each file's
/// lines keep their order (one file, one key, one partition).
#[test]
fn a_multi_file_multi_partition_stream_of_100k_lines_arrives_complete() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("bulk");
    let mut d = Daemon::new(&bootstrap, "bulk-host");
    d.source("bulk-source", &topic, 6);
    d.sink(&support::unique("bulk-archive"), &[&topic], "rotate_bytes = \"1MiB\"");
    let files = 4;
    let per_file = 25_000;
    let mut expected = Vec::new();
    for f in 0..files {
        let lines: Vec<String> =
            (0..per_file).map(|i| format!("file{f} line {i:06} {}", "x".repeat(60))).collect();
        append(&d.logs.join(format!("app{f}.log")), &lines);
        expected.extend(lines);
    }
    let started = Instant::now();
    d.start();
    let archived = d.wait_archived(&topic, expected.len(), Duration::from_secs(300));
    let elapsed = started.elapsed();
    eprintln!(
        "100k lines source→Kafka→sink: {:.1}s, {:.0} lines/s (includes daemon start-up)",
        elapsed.as_secs_f64(),
        expected.len() as f64 / elapsed.as_secs_f64()
    );
    assert_exactly_once(&archived, &expected);
    assert_file_order(&archived, files);
    let rotated = std::fs::read_dir(d.archive.join(&topic)).expect("dir").count();
    assert!(rotated > 6, "1 MiB rotation produced rotated files ({rotated} files)");
    assert!(d.stop().success());
}

/// Within the archive, each source file's lines appear in increasing order.
fn assert_file_order(archived: &[String], files: usize) {
    let mut last: Vec<i64> = vec![-1; files];
    for l in archived {
        let mut parts = l.split(' ');
        let f: usize =
            parts.next().and_then(|p| p.strip_prefix("file")).and_then(|n| n.parse().ok()).expect("file tag");
        let i: i64 = parts.nth(1).and_then(|n| n.parse().ok()).expect("line number");
        assert!(i > last[f], "file{f}: line {i} after {}", last[f]);
        last[f] = i;
    }
}

/// A writer appends steadily while the daemon is stopped with SIGTERM and started again:
/// nothing is lost and nothing repeated.
#[test]
fn restarting_the_daemon_with_sigterm_mid_stream_loses_and_repeats_nothing() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("restart");
    let mut d = Daemon::new(&bootstrap, "restart-host");
    d.source("restart-source", &topic, 3);
    d.sink(&support::unique("restart-archive"), &[&topic], "");
    d.start();
    let logs = d.logs.clone();
    let writer = std::thread::spawn(move || stream(&logs, 2, 200, 50, Duration::from_millis(50)));
    std::thread::sleep(Duration::from_millis(1500));
    let stopping = Instant::now();
    assert!(d.stop().success(), "SIGTERM exits 0:\n{}", d.log());
    eprintln!("SIGTERM to exit: {:.2}s", stopping.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_millis(500));
    assert!(!writer.is_finished(), "the restart must happen mid-stream");
    d.start();
    let expected = writer.join().expect("writer");
    let archived = d.wait_archived(&topic, expected.len(), LONG);
    std::thread::sleep(Duration::from_secs(2));
    assert_exactly_once(&d.archived(&topic), &expected);
    assert_eq!(archived.len(), expected.len());
    assert!(d.stop().success());
}

/// Appends `batches` batches of `per_batch` lines to each of `files` files, `pause` apart; returns
/// every line written.
fn stream(
    dir: &std::path::Path,
    files: usize,
    batches: usize,
    per_batch: usize,
    pause: Duration,
) -> Vec<String> {
    let mut all = Vec::new();
    for b in 0..batches {
        for f in 0..files {
            let lines: Vec<String> =
                (0..per_batch).map(|i| format!("file{f} line {:06}", b * per_batch + i)).collect();
            append(&dir.join(format!("s{f}.log")), &lines);
            all.extend(lines);
        }
        std::thread::sleep(pause);
    }
    all
}

/// One broker is killed while lines stream and restarted after: nothing is lost (or doubled).
#[test]
fn killing_a_broker_mid_stream_loses_nothing() {
    let _cluster = support::exclusive_cluster();
    let bootstrap = support::bootstrap();
    let dir = support::cluster_dir();
    let dir = dir.to_str().expect("utf-8");
    let topic = support::unique("broker-loss");
    let mut d = Daemon::new(&bootstrap, "broker-loss-host");
    d.source("bl-source", &topic, 3);
    d.sink(&support::unique("bl-archive"), &[&topic], "");
    d.start();
    let logs = d.logs.clone();
    let writer = std::thread::spawn(move || stream(&logs, 2, 200, 50, Duration::from_millis(50)));
    std::thread::sleep(Duration::from_secs(2));
    let out = run(&["cluster", "kill", "2", "--dir", dir]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    std::thread::sleep(Duration::from_secs(3));
    assert!(!writer.is_finished(), "the broker must come back mid-stream");
    let out = run(&["cluster", "start", "2", "--dir", dir]);
    assert!(out.status.success(), "start: {}{}", text(&out.stdout), text(&out.stderr));
    let expected = writer.join().expect("writer");
    d.wait_archived(&topic, expected.len(), LONG);
    std::thread::sleep(Duration::from_secs(2));
    assert_exactly_once(&d.archived(&topic), &expected);
    assert!(d.stop().success());
}

/// A connector file with a mistake is rejected naming the file, line and key; the valid
/// connectors beside it run.
#[test]
fn a_malformed_connector_file_is_rejected_with_its_name_while_the_others_run() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("beside-bad");
    let mut d = Daemon::new(&bootstrap, "bad-file-host");
    d.source("good-source", &topic, 1);
    d.sink(&support::unique("good-archive"), &[&topic], "");
    d.connector("broken.toml", "name = \"broken\"\nkind = \"file-sink\"\ntopic = [\"x\"]\ndir = \"/tmp\"\n");
    let check = run(&["check", "--config", d.config.to_str().expect("utf-8")]);
    assert_eq!(check.status.code(), Some(1));
    let report = text(&check.stdout);
    assert!(
        report.contains("broken.toml:3: key `topic`: unknown key `topic` (did you mean `topics`?)"),
        "{report}"
    );
    d.start();
    d.wait_log("broken.toml:3", Duration::from_secs(10));
    let lines: Vec<String> = (0..20).map(|i| format!("still flowing {i}")).collect();
    append(&d.logs.join("a.log"), &lines);
    assert_eq!(d.wait_archived(&topic, 20, LONG), lines);
    assert!(d.stop().success());
}

/// `macklake check` passes the shipped examples and `run` refuses a broken daemon config with
/// its file, line and key.
#[test]
fn check_accepts_the_examples_and_run_refuses_a_bad_daemon_config() {
    let root = env!("CARGO_MANIFEST_DIR");
    let work = tempfile::tempdir().expect("temp dir");
    let conf = work.path().join("macklake.toml");
    std::fs::write(&conf, format!("connectors_dir = \"{root}/connectors\"\nstate_dir = \"state\"\n"))
        .expect("write");
    let out = run(&["check", "--config", conf.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    std::fs::write(
        &conf,
        "connectors_dir = \"c\"\nstate_dir = \"s\"\n[kafka]\n\"enable.auto.commit\" = \"true\"\n",
    )
    .expect("write");
    let out = run(&["run", "--config", conf.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("macklake.toml:4: key `kafka.enable.auto.commit`"), "{err}");
    assert!(err.contains("only after the data they cover is fsynced"), "{err}");
}

/// The daemon starts while its cluster is down, says why it waits, and moves the data once the
/// cluster comes up (a throwaway one-node cluster on its own ports).
#[test]
fn started_with_kafka_down_it_moves_data_once_kafka_is_up() {
    let _cluster = support::shared_cluster();
    let work = tempfile::tempdir().expect("temp dir");
    let cdir = work.path().join("cluster");
    let cdir = cdir.to_str().expect("utf-8");
    let bootstrap = "127.0.0.1:19392";
    let mut d = Daemon::new(bootstrap, "late-kafka-host");
    d.connector(
        "src.toml",
        &format!(
            "name = \"late-source\"\nkind = \"file-source\"\npaths = [\"{}/*.log\"]\n[topic]\nname = \"late\"\npartitions = 1\nreplication_factor = 1\n",
            d.logs.display()
        ),
    );
    d.sink(&support::unique("late-archive"), &["late"], "");
    d.start();
    let lines: Vec<String> = (0..50).map(|i| format!("written while Kafka was down {i}")).collect();
    append(&d.logs.join("early.log"), &lines);
    d.wait_log("waiting for Kafka", Duration::from_secs(30));

    let libs = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(support::cluster_dir().join("cluster.json")).expect("manifest"),
    )
    .expect("json")["libs"]
        .as_str()
        .expect("libs")
        .to_string();
    let home = work.path().join("kafka-home");
    std::fs::create_dir(&home).expect("mkdir");
    std::os::unix::fs::symlink(libs, home.join("libs")).expect("symlink");
    let up = run(&[
        "cluster",
        "up",
        "--dir",
        cdir,
        "--nodes",
        "1",
        "--base-port",
        "19392",
        "--heap",
        "256m",
        "--kafka-home",
        home.to_str().expect("utf-8"),
    ]);
    assert!(up.status.success(), "{}{}", text(&up.stdout), text(&up.stderr));
    let archived = d.wait_archived("late", 50, LONG);
    let stopped = d.stop();
    let down = run(&["cluster", "down", "--dir", cdir]);
    assert_eq!(archived, lines);
    assert!(stopped.success());
    assert!(down.status.success());
}
