//! Attacks on the daemon, tried for real: on its HTTP listener (DNS rebinding, oversized heads
//! and bodies, clients that never finish), each refused or bounded with a log line, while the
//! connectors carry on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::daemon::{Daemon, append};
use crate::support::{self, kafka};

/// Sends `head` (and `body_len` bytes of body, if any) and returns the response's status code
/// (0 if the connection closed without one) and how long it took.
fn raw(addr: std::net::SocketAddr, head: &str, body_len: usize) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(40))).expect("timeout");
    stream.set_write_timeout(Some(Duration::from_secs(40))).expect("timeout");
    let _ = stream.write_all(head.as_bytes());
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    while sent < body_len {
        // The server may answer and close before the body is sent: that is the point.
        if stream.write_all(&chunk[..chunk.len().min(body_len - sent)]).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, started.elapsed())
}

#[test]
fn the_http_listener_refuses_rebinding_oversized_requests_and_slow_clients_while_connectors_run() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("http-attack");
    let mut d = Daemon::new(&bootstrap, "http-attack-host");
    d.source("steady", &topic, 1);
    d.start();
    let addr = d.http_addr();

    // Slow clients: open connections that never finish their request head.
    let slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").expect("write");
            s
        })
        .collect();

    // DNS rebinding: a foreign Host is refused.
    let (code, _) =
        raw(addr, "GET /connectors HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", 0);
    assert_eq!(code, 421, "foreign Host refused");
    d.wait_log("HTTP request refused: its Host is not this listener", Duration::from_secs(5));
    let (code, _) =
        raw(addr, &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"), 0);
    assert_eq!(code, 200, "the listener's own address is fine, even with slow clients connected");

    // An oversized head: 64 KiB of header.
    let big = "a".repeat(64 * 1024);
    let (code, _) = raw(addr, &format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Big: {big}\r\n\r\n"), 0);
    assert!(code == 431 || code == 400 || code == 0, "oversized head refused, got {code}");

    // A 100 MB body is never read: the answer comes before the body could have been sent.
    let body = 100 * 1024 * 1024;
    let (code, took) = raw(
        addr,
        &format!(
            "POST /connectors HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {body}\r\n\r\n"
        ),
        body,
    );
    assert_eq!(code, 405, "creating connectors is refused without reading the body");
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // The slow clients are cut off by the head timeout (10 s).
    std::thread::sleep(Duration::from_secs(11));
    for mut s in slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "a slow client is closed, got {answer:?}");
    }

    // No CORS headers, ever.
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET /connectors HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read");
    assert!(!response.to_ascii_lowercase().contains("access-control-"), "{response}");

    // And the connector carried on.
    let lines: Vec<String> = (0..10).map(|i| format!("still here {i}")).collect();
    append(&d.logs.join("s.log"), &lines);
    support::wait_for("the lines in Kafka", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic) == lines).then_some(())
    });
    assert!(d.stop().success());
}

/// A symlink to a file outside the watched directory, a FIFO and a device node planted in it
/// mid-run are reported and never read; the real file beside them keeps flowing.
#[test]
fn planted_symlinks_fifos_and_devices_are_never_read() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("planted");
    let mut d = Daemon::new(&bootstrap, "planted-host");
    d.source("planted-source", &topic, 1);
    d.start();
    append(&d.logs.join("real.log"), &["real 1".to_string()]);
    support::wait_for("the first line", Duration::from_secs(60), || {
        (kafka::read_topic(&bootstrap, &topic).len() == 1).then_some(())
    });
    let secret = d.root.path().join("outside-secret.txt");
    std::fs::write(&secret, "TOP-SECRET\n").expect("write");
    std::os::unix::fs::symlink(&secret, d.logs.join("evil.log")).expect("symlink");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
    nix::unistd::mkfifo(&d.logs.join("pipe.log"), mode).expect("mkfifo");
    let device = nix::sys::stat::mknod(
        &d.logs.join("zero.log"),
        nix::sys::stat::SFlag::S_IFCHR,
        mode,
        nix::sys::stat::makedev(1, 5),
    );
    d.wait_log("symlink not followed (follow_symlinks = false)", Duration::from_secs(30));
    d.wait_log("pipe.log", Duration::from_secs(30));
    if device.is_ok() {
        d.wait_log("zero.log", Duration::from_secs(30));
    }
    assert!(d.log().contains("not a regular file (FIFO, socket, device or dangling link): never read"));
    append(&d.logs.join("real.log"), &["real 2".to_string()]);
    support::wait_for("the second line", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic).len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(kafka::read_topic(&bootstrap, &topic), ["real 1", "real 2"], "nothing from the planted paths");
    assert!(d.stop().success(), "a FIFO never blocked the daemon");
}

/// A connector file others may write, and one that would make the daemon run a command, are
/// refused with the file, the reason and the fix; the command never runs; the running connector
/// carries on, and `check` reports both.
#[test]
fn untrusted_and_dangerous_connector_files_are_refused_while_the_others_run() {
    use std::os::unix::fs::PermissionsExt;
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("trusted");
    let mut d = Daemon::new(&bootstrap, "trust-host");
    d.source("trusted-source", &topic, 1);
    d.start();
    append(&d.logs.join("t.log"), &["one".to_string()]);
    support::wait_for("the first line", Duration::from_secs(60), || {
        (kafka::read_topic(&bootstrap, &topic).len() == 1).then_some(())
    });
    let writable = d.connectors.join("writable.toml");
    std::fs::write(
        &writable,
        "name = \"writable\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/tmp/x\"\n",
    )
    .expect("write");
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let pwned = d.root.path().join("pwned");
    d.connector(
        "kinit.toml",
        &format!(
            "name = \"kinit\"\nkind = \"file-sink\"\ntopics = [\"t\"]\ndir = \"/tmp/x\"\n[kafka]\n\
             \"sasl.kerberos.kinit.cmd\" = \"touch {}\"\n\"sasl.mechanisms\" = \"GSSAPI\"\n",
            pwned.display()
        ),
    );
    d.wait_log("writable.toml: refused: writable by others", Duration::from_secs(30));
    d.wait_log(
        "kinit.toml:6: key `kafka.sasl.kerberos.kinit.cmd`: `sasl.kerberos.kinit.cmd` runs a shell command",
        Duration::from_secs(30),
    );
    let check = support::run(&["check", "--config", &d.config.to_string_lossy()]);
    assert_eq!(check.status.code(), Some(1));
    let report = support::text(&check.stdout);
    assert!(report.contains("chmod go-w") && report.contains("kinit.cmd"), "{report}");
    append(&d.logs.join("t.log"), &["two".to_string()]);
    support::wait_for("the second line", Duration::from_secs(30), || {
        (kafka::read_topic(&bootstrap, &topic).len() == 2).then_some(())
    });
    assert!(!pwned.exists(), "the command never ran");
    assert!(d.stop().success());
}

/// Sink paths: topic names that would leave the sink directory are refused (by `check` and at
/// run time), a symlink planted where a topic's directory goes is refused without writing
/// through it, crafted headers change nothing, topics differing only in case are refused, and
/// archives are created 0640 in 0750 directories.
#[test]
fn sink_paths_stay_inside_the_sink_directory_with_private_modes() {
    use std::os::unix::fs::PermissionsExt;
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let (good, planted) = (support::unique("confined"), support::unique("planted-dir"));
    kafka::create_topic(&bootstrap, &good, 1, 3);
    kafka::create_topic(&bootstrap, &planted, 1, 3);
    let mut d = Daemon::new(&bootstrap, "confined-host");
    d.sink("escape", &["../escape"], "");
    d.sink("cases", &["Logs", "logs"], "");
    let check = support::run(&["check", "--config", &d.config.to_string_lossy()]);
    let report = support::text(&check.stdout);
    assert!(
        report.contains("escape.toml:3: key `topics`: `../escape` is not a valid topic name"),
        "{report}"
    );
    assert!(report.contains("`Logs` and `logs` differ only in case"), "{report}");
    std::fs::remove_file(d.connectors.join("escape.toml")).expect("rm");
    std::fs::remove_file(d.connectors.join("cases.toml")).expect("rm");

    // A symlink where a topic's directory goes, pointing outside.
    let outside = d.root.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    std::os::unix::fs::symlink(&outside, d.archive.join(&planted)).expect("symlink");
    // One sink for the planted topic (it stalls, reported), one for the good one (it runs).
    let planted_sink = support::unique("planted-sink");
    d.sink(&planted_sink, &[&planted], "");
    d.sink(&support::unique("confined-sink"), &[&good], "");
    let records: Vec<kafka::TestRecord> = (0..5)
        .map(|_| kafka::TestRecord {
            key: Some(b"../../../../tmp/escaped-key".to_vec()),
            headers: vec![("macklake.path".into(), Some(b"../../../../tmp/escaped".to_vec()))],
            value: Some(b"value".to_vec()),
        })
        .collect();
    kafka::produce_records(&bootstrap, &good, 0, &records);
    kafka::produce_records(&bootstrap, &planted, 0, &records);
    d.start();
    d.wait_archived(&good, 5, Duration::from_secs(60));
    d.wait_log("outside the sink directory", Duration::from_secs(30));
    assert_eq!(std::fs::read_dir(&outside).expect("list").count(), 0, "nothing written through the symlink");
    support::wait_for("the planted sink reported by /health", Duration::from_secs(30), || {
        let (code, health) = d.http_get("/health");
        (code == 503 && health.contains(&planted_sink) && health.contains("outside the sink directory"))
            .then_some(())
    });
    assert!(!std::path::Path::new("/tmp/escaped").exists());
    let dir = d.archive.join(&good);
    let file = dir.join(format!("{good}-0.log"));
    assert_eq!(std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777, 0o750);
    assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o640);
    assert!(d.stop().success());
}

/// Issue 20, finding 5: a Kafka Connect connector file's `name` becomes a consumer group, a state
/// directory and part of a transactional id, as a TOML file's does: `../../x` (or any name a TOML
/// file may not have) is refused, naming the file, line and key.
#[test]
fn a_connect_file_whose_name_would_leave_the_state_directory_is_refused() {
    let d = Daemon::new("127.0.0.1:1", "connect-name-host");
    d.connector(
        "escape.properties",
        "connector.class=FileStreamSource\nname=../../x\nfile=/tmp/a.log\ntopic=t\n",
    );
    d.connector(
        "escape.json",
        r#"{"name": "a/b", "config": {"connector.class": "FileStreamSink", "file": "/tmp/b.txt", "topics": "t"}}"#,
    );
    let check = support::run(&["check", "--config", &d.config.to_string_lossy()]);
    let report = support::text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains("escape.properties:2: key `name`: `../../x` may use only letters"), "{report}");
    assert!(report.contains("escape.json") && report.contains("`a/b` may use only letters"), "{report}");
}

/// Issue 20, the first finding: a misspelt librdkafka property, or a value librdkafka refuses, is
/// reported by `check` (file and key) and fails the connector at run time (`/health` 503 with the
/// reason) instead of a silent "waiting for topics"; a value that came from a secret reference is
/// never shown, in `check`, the log or `/health`, even when librdkafka's own error quotes it.
#[test]
fn a_bad_kafka_property_is_reported_and_never_shows_a_secret() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let planted = "not-a-number-s3cr3t-planted";
    let mut d = Daemon::new(&bootstrap, "bad-property-host");
    d.env("PLANTED", planted);
    let topic = support::unique("bad-property");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    d.sink("bad-property-sink", &[&topic], "[kafka]\n\"sasl.pasword\" = \"x\"\n");
    d.source_with("bad-property-source", &topic, 1, "[kafka]\n\"linger.ms\" = \"${env:PLANTED}\"");
    let check = support::macklake()
        .args(["check", "--config", &d.config.to_string_lossy()])
        .env("PLANTED", planted)
        .output()
        .expect("run check");
    let report = support::text(&check.stdout) + &support::text(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains("bad-property-sink.toml") && report.contains("`kafka.sasl.pasword`"), "{report}");
    assert!(report.contains("bad-property-source.toml") && report.contains("`kafka.linger.ms`"), "{report}");
    assert!(!report.contains(planted), "check shows the secret:\n{report}");
    d.start();
    let health = support::wait_for("both connectors failed in /health", Duration::from_secs(60), || {
        let (code, body) = d.http_get("/health");
        (code == 503 && body.contains("sasl.pasword") && body.contains("linger.ms")).then_some(body)
    });
    assert!(!health.contains(planted), "/health shows the secret: {health}");
    assert!(!d.log().contains(planted), "the log shows the secret");
    assert!(!d.log().contains("waiting for topics"), "a bad property is not a missing topic");
    assert!(d.stop().success());
}
