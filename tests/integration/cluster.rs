//! `macklake cluster`: the cluster the tests run on, and the commands' behaviour.

use std::net::TcpListener;
use std::time::Duration;

use macklake::kafka::admin::broker_ids;

use crate::support::{self, kafka, run, text};

#[test]
fn three_brokers_are_in_the_metadata_and_a_controller_leads() {
    let _cluster = support::shared_cluster();
    assert_eq!(broker_ids(&support::bootstrap(), Duration::from_secs(10)).expect("metadata"), vec![1, 2, 3]);
    let dir = support::cluster_dir();
    let out = run(&["cluster", "status", "--dir", dir.to_str().expect("utf-8 path")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "status failed:\n{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("active controller: node "), "{stdout}");
    assert_eq!(stdout.matches(" yes ").count(), 6, "3 nodes alive and in metadata:\n{stdout}");
}

#[test]
fn a_record_acknowledged_by_all_replicas_is_read_back_from_every_broker() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("rf3");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut replicas = kafka::replicas(&bootstrap, &topic)[0].clone();
    replicas.sort_unstable();
    assert_eq!(replicas, vec![1, 2, 3]);
    let value = format!("hello from {topic}");
    kafka::produce_all(&bootstrap, &topic, 0, std::slice::from_ref(&value));
    for broker in bootstrap.split(',') {
        assert_eq!(kafka::read_partition(broker, &topic, 0), vec![value.clone()], "read through {broker}");
    }
}

#[test]
fn with_one_node_killed_acks_all_still_succeeds_and_nothing_is_lost() {
    let _cluster = support::exclusive_cluster();
    let bootstrap = support::bootstrap();
    let dir = support::cluster_dir();
    let dir = dir.to_str().expect("utf-8 path");
    let topic = support::unique("node-loss");
    kafka::create_topic(&bootstrap, &topic, 3, 3);
    let before: Vec<String> = (0..300).map(|i| format!("before-{i}")).collect();
    for p in 0..3 {
        kafka::produce_all(&bootstrap, &topic, p, &before[p as usize * 100..(p as usize + 1) * 100]);
    }

    let out = run(&["cluster", "kill", "3", "--dir", dir]);
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    let during: Vec<String> = (0..300).map(|i| format!("during-{i}")).collect();
    // min.insync.replicas=2: two live replicas are enough for acks=all.
    for p in 0..3 {
        kafka::produce_all(&bootstrap, &topic, p, &during[p as usize * 100..(p as usize + 1) * 100]);
    }
    let out = run(&["cluster", "start", "3", "--dir", dir]);
    assert!(out.status.success(), "start: {}{}", text(&out.stdout), text(&out.stderr));

    for p in 0..3usize {
        let mut expected = before[p * 100..(p + 1) * 100].to_vec();
        expected.extend_from_slice(&during[p * 100..(p + 1) * 100]);
        assert_eq!(kafka::read_partition(&bootstrap, &topic, p as i32), expected, "partition {p}");
    }
    // The restarted node catches up: reading through it alone gives the same records.
    let node3 = bootstrap.split(',').nth(2).expect("3 brokers");
    support::wait_for("node 3 back in the ISR of every partition", Duration::from_secs(60), || {
        kafka::in_sync_replicas(&bootstrap, &topic).iter().all(|isr| isr.contains(&3)).then_some(())
    });
    assert_eq!(kafka::read_partition(node3, &topic, 0).len(), 200);
}

/// A throwaway cluster beside the shared one: `--nodes 1` on its own ports and directory, its jars
/// taken through `--kafka-home` from the cache the shared cluster used.
#[test]
fn up_is_idempotent_and_down_leaves_no_process_behind() {
    let _cluster = support::shared_cluster();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("cluster");
    let dir = dir.to_str().expect("utf-8 path");
    let home = work.path().join("kafka-home");
    std::fs::create_dir(&home).expect("mkdir");
    let shared =
        std::fs::read_to_string(support::cluster_dir().join("cluster.json")).expect("shared manifest");
    let libs: serde_json::Value = serde_json::from_str(&shared).expect("manifest is JSON");
    std::os::unix::fs::symlink(libs["libs"].as_str().expect("libs path"), home.join("libs"))
        .expect("symlink");

    let up = ["cluster", "up", "--dir", dir, "--nodes", "1", "--base-port", "19092", "--heap", "256m"];
    let mut args = up.to_vec();
    args.extend(["--kafka-home", home.to_str().expect("utf-8")]);
    let out = run(&args);
    assert!(out.status.success(), "up: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("bootstrap servers: 127.0.0.1:19092"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("from KAFKA_HOME"), "{}", text(&out.stderr));

    let again = run(&args);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("already running"), "{}", text(&again.stdout));
    assert_eq!(support::processes_mentioning(dir).len(), 1, "one JVM for one node");

    let status = run(&["cluster", "status", "--dir", dir]);
    assert!(status.status.success(), "{}", text(&status.stdout));

    let down = run(&["cluster", "down", "--dir", dir]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert_eq!(support::processes_mentioning(dir), Vec::<String>::new(), "processes left behind");
    let status = run(&["cluster", "status", "--dir", dir]);
    assert!(!status.status.success(), "status must fail when the cluster is down");
}

#[test]
fn a_port_in_use_is_named_and_nothing_is_started() {
    let blocker = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = blocker.local_addr().expect("addr").port();
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("cluster");
    let dir = dir.to_str().expect("utf-8 path");
    let out = run(&["cluster", "up", "--dir", dir, "--nodes", "1", "--base-port", &port.to_string()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(&format!("port {port} (client port of node 1) is already in use")), "{err}");
    assert!(err.contains("--base-port"), "{err}");
    assert_eq!(support::processes_mentioning(dir), Vec::<String>::new());
}

#[test]
fn missing_java_and_missing_maven_each_get_one_clear_sentence() {
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("cluster");
    let dir = dir.to_str().expect("utf-8 path");
    let empty_path = work.path().join("bin");
    std::fs::create_dir(&empty_path).expect("mkdir");
    let out = support::macklake()
        .args(["cluster", "up", "--dir", dir, "--base-port", "19500"])
        .env("PATH", &empty_path)
        .env_remove("JAVA_HOME")
        .env_remove("KAFKA_HOME")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Java 17 or newer is needed"), "{}", text(&out.stderr));

    // java on PATH, but neither mvn nor a cache.
    let java = which("java");
    std::os::unix::fs::symlink(java, empty_path.join("java")).expect("symlink");
    let out = support::macklake()
        .args(["cluster", "up", "--dir", dir, "--base-port", "19500"])
        .env("PATH", &empty_path)
        .env("MACKLAKE_CACHE_DIR", work.path().join("cache"))
        .env_remove("JAVA_HOME")
        .env_remove("KAFKA_HOME")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("Maven (`mvn`) is needed"), "{err}");
    assert!(err.contains("KAFKA_HOME"), "{err}");
}

fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").expect("PATH");
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::canonicalize(p).ok())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// The seed course's layout: a 3-node ZooKeeper ensemble coordinating 3 Kafka 3.9 brokers, beside
/// the shared cluster on its own ports. Slow (a second cluster, its own jars): `scripts/test --long`.
#[test]
#[ignore = "long: run by scripts/test --long"]
fn zookeeper_mode_smoke() {
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("zk-cluster");
    let dir = dir.to_str().expect("utf-8 path");
    let out = run(&[
        "cluster",
        "up",
        "--mode",
        "zookeeper",
        "--dir",
        dir,
        "--base-port",
        "29092",
        "--heap",
        "384m",
    ]);
    assert!(out.status.success(), "up: {}{}", text(&out.stdout), text(&out.stderr));
    let status = run(&["cluster", "status", "--dir", dir]);
    let report = text(&status.stdout);
    assert!(status.status.success(), "{report}");
    assert!(report.contains("zookeeper 3") && report.contains("active controller: node"), "{report}");

    let bootstrap = "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094";
    let topic = support::unique("zk-smoke");
    kafka::create_topic(bootstrap, &topic, 1, 3);
    let values: Vec<String> = (0..10).map(|i| format!("Mensagem {i} - Teste de mensagem Kafka")).collect();
    kafka::produce_all(bootstrap, &topic, 0, &values);
    assert_eq!(kafka::read_partition("127.0.0.1:29094", &topic, 0), values);

    let down = run(&["cluster", "down", "--dir", dir]);
    assert!(down.status.success(), "down: {}", text(&down.stderr));
    assert_eq!(support::processes_mentioning(dir), Vec::<String>::new(), "processes left behind");
}
