//! Running as a service: the systemd notify protocol over a real datagram socket, hot reload of
//! the connectors directory (notify and SIGHUP), `/metrics` and `/health`, and the unit file
//! checked by systemd's own tools.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::daemon::{Daemon, append};
use crate::support::{self, kafka};

/// Reads notify messages until one holds `want`; returns every message seen up to it.
fn expect_message(socket: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10)),
            ))
            .expect("timeout");
        if let Ok(n) = socket.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let hit = msg.lines().any(|l| l == want);
            seen.push(msg);
            if hit {
                return seen;
            }
        }
    }
    panic!("no {want:?} within {timeout:?}; got {seen:?}");
}

#[test]
fn the_notify_protocol_reports_ready_watchdog_reloading_and_stopping() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("notify");
    let mut d = Daemon::new(&bootstrap, "notify-host");
    d.source("notify-source", &topic, 1);
    let socket_path = d.root.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    d.env("NOTIFY_SOCKET", &socket_path.to_string_lossy());
    d.env("WATCHDOG_USEC", "1000000");
    d.start();
    let seen = expect_message(&socket, "READY=1", Duration::from_secs(30));
    assert!(seen.last().is_some_and(|m| m.contains("STATUS=1 connector(s) running")), "{seen:?}");
    // Half the watchdog interval: within a second or so.
    expect_message(&socket, "WATCHDOG=1", Duration::from_secs(3));
    kill(Pid::from_raw(d.pid()), Signal::SIGHUP).expect("SIGHUP");
    let seen = expect_message(&socket, "RELOADING=1", Duration::from_secs(5));
    assert!(seen.last().is_some_and(|m| m.contains("MONOTONIC_USEC=")), "{seen:?}");
    expect_message(&socket, "READY=1", Duration::from_secs(5));
    kill(Pid::from_raw(d.pid()), Signal::SIGTERM).expect("SIGTERM");
    let seen = expect_message(&socket, "STOPPING=1", Duration::from_secs(5));
    assert!(!seen.iter().any(|m| m.contains("READY=1")), "nothing between SIGTERM and STOPPING: {seen:?}");
    expect_message(&socket, "EXTEND_TIMEOUT_USEC=25000000", Duration::from_secs(5));
    assert!(d.stop().success());
}

/// Appends numbered lines to `path` every 50 ms until `stop`; returns them.
fn steady_writer(path: &Path, prefix: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    let (path, prefix) = (path.to_path_buf(), prefix.to_string());
    std::thread::spawn(move || {
        let mut written = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let line = format!("{prefix} {i:06}");
            append(&path, std::slice::from_ref(&line));
            written.push(line);
            i += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        written
    })
}

fn source_toml(name: &str, glob: &Path, topic: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"file-source\"\npaths = [\"{}\"]\nrescan_interval = \"1s\"\n{extra}\n\
         [topic]\nname = \"{topic}\"\npartitions = 1\nreplication_factor = 3\n",
        glob.display()
    )
}

/// Adding, changing, breaking and removing connector files while the daemon runs: each change
/// touches only its connector; a steady stream through another connector has no gap and no
/// duplicate; the changed connector resumes from its checkpoint.
#[test]
fn hot_reload_touches_only_the_connector_whose_file_changed() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let (topic_a, topic_b, topic_c) =
        (support::unique("reload-a"), support::unique("reload-b"), support::unique("reload-c"));
    let mut d = Daemon::new(&bootstrap, "reload-host");
    let dir_a = d.logs.join("a");
    let dir_b = d.logs.join("b");
    let dir_c = d.logs.join("c");
    for dir in [&dir_a, &dir_b, &dir_c] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    d.connector("a.toml", &source_toml("reload-a", &dir_a.join("*.log"), &topic_a, ""));
    d.connector("b.toml", &source_toml("reload-b", &dir_b.join("*.log"), &topic_b, ""));
    d.sink(&support::unique("reload-sink"), &[&topic_a, &topic_b], "");
    let stop = Arc::new(AtomicBool::new(false));
    let writer_a = steady_writer(&dir_a.join("app.log"), "a", stop.clone());
    let writer_b = steady_writer(&dir_b.join("app.log"), "b", stop.clone());
    d.start();
    d.wait_archived(&topic_a, 10, Duration::from_secs(60));

    // A new file starts a new connector.
    kafka::create_topic(&bootstrap, &topic_c, 1, 3);
    append(&dir_c.join("c.log"), &["c 1".to_string()]);
    d.connector("c.toml", &source_toml("reload-c", &dir_c.join("*.log"), &topic_c, ""));
    support::wait_for("connector c started and its line in Kafka", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic_c) == ["c 1"]).then_some(())
    });

    // A changed file restarts only its connector, which resumes from its checkpoint.
    d.connector(
        "b.toml",
        &source_toml("reload-b", &dir_b.join("*.log"), &topic_b, "checkpoint_interval = \"500ms\""),
    );
    d.wait_log(
        "connector changed: restarting it with the new config connector=reload-b",
        Duration::from_secs(10),
    );

    // An invalid new version is rejected with its file and line; the running one keeps running.
    d.connector("a.toml", "name = \"reload-a\"\nkind = \"file-source\"\npathz = []\n");
    d.wait_log("a.toml:3: key `pathz`", Duration::from_secs(10));
    assert!(d.log().contains("the version loaded before keeps running"));

    // A removed file stops its connector.
    std::fs::remove_file(d.connectors.join("c.toml")).expect("rm");
    d.wait_log("connector removed: stopping it connector=reload-c", Duration::from_secs(10));
    d.wait_log("connector stopped connector=reload-c", Duration::from_secs(30));
    append(&dir_c.join("c.log"), &["c 2, after c was removed".to_string()]);

    // SIGHUP reloads too (nothing changed since: nothing restarts).
    kill(Pid::from_raw(d.pid()), Signal::SIGHUP).expect("SIGHUP");
    d.wait_log("trigger=\"SIGHUP\"", Duration::from_secs(10));

    std::thread::sleep(Duration::from_secs(2));
    // Reloading reads the files; that must not count as a change (or reloads would loop).
    let reloads = d.log().matches("reloading connectors").count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.log().matches("reloading connectors").count(), reloads, "no reload without a change");
    stop.store(true, Ordering::Relaxed);
    let lines_a = writer_a.join().expect("writer a");
    let lines_b = writer_b.join().expect("writer b");
    let archived_a = d.wait_archived(&topic_a, lines_a.len(), Duration::from_secs(60));
    d.wait_archived(&topic_b, lines_b.len(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(archived_a, lines_a, "connector a: every line once, in order, through every reload");
    d.assert_archived_once(&topic_b, &lines_b);
    assert_eq!(d.log().matches("starting connector connector=reload-a").count(), 1, "a never restarted");
    assert_eq!(kafka::read_topic(&bootstrap, &topic_c), ["c 1"], "c stopped reading when its file went");
    assert!(d.stop().success());
}

/// A file matched by two sources is read by one of them; the other reports the conflict.
#[test]
fn a_file_claimed_by_two_sources_is_read_once_and_the_conflict_reported() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let (topic_1, topic_2) = (support::unique("claim-1"), support::unique("claim-2"));
    let mut d = Daemon::new(&bootstrap, "claims-host");
    d.connector("one.toml", &source_toml("claim-one", &d.logs.join("*.log"), &topic_1, ""));
    d.start();
    let lines: Vec<String> = (0..50).map(|i| format!("claimed {i}")).collect();
    append(&d.logs.join("shared.log"), &lines);
    support::wait_for("the lines in topic 1", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic_1).len() == lines.len()).then_some(())
    });
    // A second source whose glob also matches the file, added at run time.
    d.connector("two.toml", &source_toml("claim-two", &d.logs.join("shared.*"), &topic_2, ""));
    d.wait_log("file also matched by another source, which reads it", Duration::from_secs(30));
    append(&d.logs.join("shared.log"), &["one more".to_string()]);
    support::wait_for("the new line in topic 1", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic_1).len() == lines.len() + 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(kafka::read_topic(&bootstrap, &topic_2).is_empty(), "the second source read nothing");
    assert_eq!(d.log().matches("file also matched by another source").count(), 1, "reported once");
    let (_, metrics) = d.http_get("/metrics");
    assert!(metrics.contains("macklake_source_conflicting_files{connector=\"claim-two\"} 1"), "{metrics}");
    assert!(d.stop().success());
}

fn sample(metrics: &str, name_and_labels: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[test]
fn metrics_and_health_tell_what_runs_and_what_does_not() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("metrics");
    let sink = support::unique("metrics-sink");
    let mut d = Daemon::new(&bootstrap, "metrics-host");
    d.source("metrics-source", &topic, 1);
    d.sink(&sink, &[&topic], "");
    let lines: Vec<String> = (0..100).map(|i| format!("measured {i:03}")).collect();
    append(&d.logs.join("m.log"), &lines);
    d.start();
    d.wait_archived(&topic, 100, Duration::from_secs(60));
    // Let a commit and a statistics interval pass.
    std::thread::sleep(Duration::from_secs(6));
    let (code, metrics) = d.http_get("/metrics");
    assert_eq!(code, 200);
    let src = "{connector=\"metrics-source\"}";
    let snk = format!("{{connector=\"{sink}\"}}");
    assert_eq!(
        sample(&metrics, &format!("macklake_source_lines_acknowledged_total{src}")),
        Some(100.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, &format!("macklake_source_bytes_acknowledged_total{src}")), Some(1200.0));
    assert_eq!(sample(&metrics, &format!("macklake_source_delivery_seconds_count{src}")), Some(100.0));
    assert_eq!(sample(&metrics, &format!("macklake_sink_records_written_total{snk}")), Some(100.0));
    assert_eq!(sample(&metrics, &format!("macklake_sink_durable_seconds_count{snk}")), Some(100.0));
    assert!(sample(&metrics, &format!("macklake_sink_commits_total{snk}")).is_some_and(|c| c >= 1.0));
    assert_eq!(
        sample(&metrics, "macklake_source_files{connector=\"metrics-source\",descriptor=\"open\"}"),
        Some(1.0)
    );
    for p in 0..1 {
        let lag =
            format!("macklake_sink_lag_records{{connector=\"{sink}\",topic=\"{topic}\",partition=\"{p}\"}}");
        assert_eq!(sample(&metrics, &lag), Some(0.0), "{lag} in {metrics}");
    }
    assert!(metrics.contains("macklake_connector_up{connector=\"metrics-source\",kind=\"file-source\"} 1"));
    assert!(!metrics.contains(&d.logs.display().to_string()), "no file path in any label");
    let (code, health) = d.http_get("/health");
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    // A sink that cannot create its directory fails (and is retried); a rejected file is a
    // connector that does not run either.
    d.connector(
        "broken-sink.toml",
        &format!("name = \"broken\"\nkind = \"file-sink\"\ntopics = [\"{topic}\"]\ndir = \"/proc/macklake-cannot-be\"\n"),
    );
    d.connector("typo.toml", "name = \"typo\"\nkind = \"file-source\"\npaths = [\"/x\"]\ntopik = \"t\"\n");
    let health = support::wait_for("the broken sink reported", Duration::from_secs(60), || {
        let (code, body) = d.http_get("/health");
        (code == 503 && body.contains("\"broken\":{") && body.contains("FAILED")).then_some(body)
    });
    assert!(health.contains("typo.toml:4: key `topik`"), "{health}");
    let parsed: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(parsed["connectors"]["metrics-source"]["state"], "RUNNING", "{health}");
    assert!(parsed["connectors"]["metrics-source"].get("reason").is_none(), "{health}");
    let (_, metrics) = d.http_get("/metrics");
    assert!(
        metrics.contains("macklake_connector_up{connector=\"broken\",kind=\"file-sink\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("macklake_connector_files_rejected 1"), "{metrics}");
    assert!(d.stop().success());
}

/// The unit passes `systemd-analyze verify` with ExecStart pointed at the built binary, and
/// `systemd-analyze security` rates it OK or better. The plist is a valid property list with
/// the keys launchd needs.
#[test]
fn the_service_files_pass_systemds_checks() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/macklake.service"))
        .expect("unit");
    let work = tempfile::tempdir().expect("temp dir");
    let path = work.path().join("macklake.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/macklake", env!("CARGO_BIN_EXE_macklake")))
        .expect("write");
    for key in
        ["Type=notify", "WatchdogSec=", "ExecReload=", "Restart=on-failure", "StateDirectory=", "UMask=0027"]
    {
        assert!(unit.contains(key), "the unit sets {key}");
    }
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        settings.contains(&"CapabilityBoundingSet=") && !settings.iter().any(|l| l.contains("CAP_DAC")),
        "log files are read through groups, not capabilities"
    );
    let plist = Command::new("python3")
        .args(["-c", "import plistlib,sys; p=plistlib.load(open(sys.argv[1],'rb')); print(p['Label'], p['RunAtLoad'], sorted(p['KeepAlive']), p['StandardErrorPath'])"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/org.macklake.daemon.plist"))
        .output()
        .expect("python3 runs");
    assert_eq!(
        support::text(&plist.stdout).trim(),
        "org.macklake.daemon True ['SuccessfulExit'] /usr/local/var/log/macklake/macklake.log",
        "{}",
        support::text(&plist.stderr)
    );

    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped the systemd-analyze checks: systemd-analyze is not installed");
        return;
    }
    let verify = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("verify runs");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}{}",
        support::text(&verify.stdout),
        support::text(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["--offline=true", "security"])
        .arg(&path)
        .output()
        .expect("security runs");
    let report = support::text(&security.stdout);
    let overall =
        report.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{report}"));
    eprintln!("{overall}");
    let score: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("score");
    assert!(overall.contains(" OK") || overall.contains("SAFE"), "rated OK or better: {overall}");
    assert!(score < 2.0, "{overall}");
}

/// Issue 13 finding 7: two processes sharing a state directory would overwrite each other's
/// checkpoints and commit caches. The second daemon, and `import-offsets` while a daemon runs,
/// are refused with the running one's pid.
#[test]
fn a_second_process_on_the_same_state_directory_is_refused_with_the_first_ones_pid() {
    let _cluster = support::shared_cluster();
    let mut d = Daemon::new(&support::bootstrap(), "lock-host");
    d.start();
    d.wait_log("macklake starting", Duration::from_secs(30));
    let second = support::run(&["run", "--config", &d.config.to_string_lossy()]);
    assert!(!second.status.success(), "a second daemon on the same state_dir must not start");
    let said = support::text(&second.stderr);
    assert!(
        said.contains("in use by another macklake process")
            && said.contains(&format!("pid {} (macklake run)", d.pid())),
        "{said}"
    );
    let offsets = d.root.path().join("connect.offsets");
    std::fs::write(&offsets, b"").expect("write");
    let import = support::run(&[
        "import-offsets",
        "--config",
        &d.config.to_string_lossy(),
        &offsets.to_string_lossy(),
    ]);
    assert!(!import.status.success());
    assert!(
        support::text(&import.stderr).contains("in use by another macklake process"),
        "{}",
        support::text(&import.stderr)
    );
    assert!(d.stop().success());
}
