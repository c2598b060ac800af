//! Secured clusters: a throwaway one-node cluster with a SASL_SSL (SCRAM-SHA-512) listener, real
//! TLS certificates, and credentials that reach the daemon through `${file:...}`/`${env:...}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, append};
use crate::support::{self, run, text};

const BASE_PORT: &str = "21592";
const SASL_SSL_PORT: u16 = 21642;
const PASSWORD: &str = "s3cr3t-Pa55-for-macklake-tests";
const WRONG_PASSWORD: &str = "wr0ng-Pa55-never-to-be-logged";

/// Stops the throwaway cluster however the test ends.
struct ClusterGuard(PathBuf);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let down = run(&["cluster", "down", "--dir", self.0.to_str().unwrap_or_default()]);
        if !down.status.success() {
            eprintln!("cluster down failed: {}{}", text(&down.stdout), text(&down.stderr));
        }
    }
}

/// A one-node cluster in `work/cluster` with a SASL_SSL listener and SCRAM user `macklake`.
fn secured_cluster(work: &Path) -> ClusterGuard {
    let cdir = work.join("cluster");
    let libs = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(support::cluster_dir().join("cluster.json")).expect("manifest"),
    )
    .expect("json")["libs"]
        .as_str()
        .expect("libs")
        .to_string();
    let home = work.join("kafka-home");
    std::fs::create_dir(&home).expect("mkdir");
    std::os::unix::fs::symlink(libs, home.join("libs")).expect("symlink");
    let guard = ClusterGuard(cdir.clone());
    let up = run(&[
        "cluster",
        "up",
        "--dir",
        cdir.to_str().expect("utf-8"),
        "--nodes",
        "1",
        "--base-port",
        BASE_PORT,
        "--sasl-ssl-port",
        &SASL_SSL_PORT.to_string(),
        "--scram-user",
        &format!("macklake={PASSWORD}"),
        "--heap",
        "256m",
        "--kafka-home",
        home.to_str().expect("utf-8"),
    ]);
    assert!(up.status.success(), "{}{}", text(&up.stdout), text(&up.stderr));
    assert!(
        text(&up.stdout)
            .contains(&format!("SASL_SSL (SCRAM-SHA-512) bootstrap servers: 127.0.0.1:{SASL_SSL_PORT}"))
    );
    guard
}

/// A daemon for the SASL_SSL listener whose password is `${file:kafka.properties:password}` (a
/// file beside the daemon config, the default secret_dirs) and user `${env:...}`.
fn secured_daemon(cluster: &Path, daemon_id: &str, password: &str) -> Daemon {
    let mut d = Daemon::new(&format!("127.0.0.1:{SASL_SSL_PORT}"), daemon_id);
    std::fs::write(d.root.path().join("kafka.properties"), format!("# SCRAM\npassword = {password}\n"))
        .expect("write secrets");
    let mut config = std::fs::OpenOptions::new().append(true).open(&d.config).expect("config");
    write!(
        config,
        "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\
         \"sasl.username\" = \"${{env:MACKLAKE_TEST_SASL_USER}}\"\n\
         \"sasl.password\" = \"${{file:kafka.properties:password}}\"\n\"ssl.ca.location\" = \"{}\"\n",
        cluster.join("tls/ca.crt").display()
    )
    .expect("append");
    d.env("MACKLAKE_TEST_SASL_USER", "macklake");
    d
}

fn source_and_sink(d: &Daemon, topic: &str) {
    d.connector(
        "src.toml",
        &format!(
            "name = \"secured-source\"\nkind = \"file-source\"\npaths = [\"{}/*.log\"]\n\
             [topic]\nname = \"{topic}\"\npartitions = 1\nreplication_factor = 1\n",
            d.logs.display()
        ),
    );
    d.sink(&support::unique("secured-archive"), &[topic], "");
}

/// Lines go source → Kafka → sink over SASL_SSL with the right password; with a wrong one each
/// connector fails within seconds saying that authentication failed; neither password is ever in
/// the daemon log or in `macklake check`'s output.
#[test]
fn sasl_ssl_moves_lines_and_a_wrong_password_fails_fast_without_showing_it() {
    let _cluster = support::shared_cluster();
    let work = tempfile::tempdir().expect("temp dir");
    let guard = secured_cluster(work.path());

    let mut d = secured_daemon(&guard.0, "secured-host", PASSWORD);
    source_and_sink(&d, "secured");
    d.start();
    let lines: Vec<String> = (0..20).map(|i| format!("over TLS and SCRAM {i}")).collect();
    append(&d.logs.join("app.log"), &lines);
    let archived = d.wait_archived("secured", 20, Duration::from_secs(120));
    assert_eq!(archived, lines);
    assert!(d.stop().success(), "SIGTERM exits 0:\n{}", d.log());
    assert!(!d.log().contains(PASSWORD), "the password is in the daemon log:\n{}", d.log());

    let mut bad = secured_daemon(&guard.0, "secured-bad-host", WRONG_PASSWORD);
    source_and_sink(&bad, "secured");
    let started = Instant::now();
    bad.start();
    bad.wait_log("authentication failed", Duration::from_secs(30));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "took {took:?} to report the authentication failure");
    // Both connectors report it as their failure (not as "waiting for Kafka").
    support::wait_for("both connectors to fail on authentication", Duration::from_secs(20), || {
        let log = bad.log();
        let failed = |name: &str| {
            log.lines().any(|l| {
                l.contains("connector failed") && l.contains(name) && l.contains("authentication failed")
            })
        };
        (failed("secured-source") && failed("secured-archive")).then_some(())
    });
    assert!(bad.stop().success());
    let log = bad.log();
    assert!(!log.contains(WRONG_PASSWORD) && !log.contains(PASSWORD), "a password is in the log:\n{log}");

    // `check` reports a bad reference by file, line and key without the secrets it read.
    bad.connector(
        "broken.toml",
        "name = \"broken\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/tmp\"\n[kafka]\n\
         \"ssl.key.password\" = \"${file:../kafka.properties:no_such_key}\"\n",
    );
    let check = support::macklake()
        .args(["check", "--config"])
        .arg(&bad.config)
        .env("MACKLAKE_TEST_SASL_USER", "macklake")
        .output()
        .expect("check runs");
    let out = format!("{}{}", text(&check.stdout), text(&check.stderr));
    assert!(!check.status.success(), "{out}");
    assert!(
        out.contains("broken.toml:6: key `kafka.ssl.key.password`") && out.contains("no_such_key"),
        "{out}"
    );
    assert!(!out.contains(WRONG_PASSWORD) && !out.contains(PASSWORD), "{out}");
    drop(guard);
}
