//! Issue 16: records of several lines (`[multiline]`) and include/exclude filters, against the
//! real cluster: a stack trace is one record, exactly once across a SIGKILL in the middle of its
//! being written; filtered records are passed by the positions; a rotation ends a record.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::{self, kafka};

/// A Java service's log entry: the log line, the exception, its frames and its cause.
fn trace(n: usize) -> Vec<String> {
    vec![
        format!("2026-12-03 12:00:{n:02} ERROR request {n} failed"),
        format!("java.lang.IllegalStateException: state {n}"),
        format!("\tat com.example.Service.handle(Service.java:{n})"),
        "\tat com.example.Main.main(Main.java:7)".to_string(),
        format!("Caused by: java.io.IOException: disk {n}"),
        "\t... 2 more".to_string(),
    ]
}

fn metric(d: &Daemon, name_and_labels: &str) -> f64 {
    let (_, metrics) = d.http_get("/metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name_and_labels} not in /metrics"))
}

/// Waits until `topic` holds `n` records (read_committed) and returns them.
fn wait_records(topic: &str, n: usize, timeout: Duration) -> Vec<String> {
    let bootstrap = support::bootstrap();
    support::wait_for(&format!("{n} records in {topic}"), timeout, || {
        let got = kafka::read_topic(&bootstrap, topic);
        (got.len() >= n).then_some(got)
    })
}

/// Exactly-once, with the daemon SIGKILLed after half a stack trace was written: the trace
/// arrives once and whole (its first lines are read again after the restart, never sent half),
/// each record with its first line's byte offset.
#[test]
fn a_java_stack_trace_is_one_record_exactly_once_across_a_kill_mid_trace() {
    let _cluster = support::shared_cluster();
    let topic = support::unique("multiline-eos");
    let mut d = Daemon::new(&support::bootstrap(), &support::unique("multiline-eos-host"));
    d.source_with(
        "multiline-eos",
        &topic,
        1,
        "exactly_once = true\ntransaction_interval = \"200ms\"\n[multiline]\npreset = \"java\"\ntimeout = \"10s\"",
    );
    d.start();
    let log = d.logs.join("app.log");
    let mut expected: Vec<String> = Vec::new();
    for n in 0..5 {
        support::daemon::append(&log, &trace(n));
        expected.push(trace(n).join("\n"));
    }
    // This line ends trace 4; it stays open itself until the next entry begins.
    support::daemon::append(&log, &["2026-12-03 12:01:00 INFO between".to_string()]);
    wait_records(&topic, 5, Duration::from_secs(60));
    expected.push("2026-12-03 12:01:00 INFO between".to_string());
    let half = trace(5);
    support::daemon::append(&log, &half[..3]);
    std::thread::sleep(Duration::from_millis(1500)); // read (and held: the trace is not over)
    d.kill();
    support::daemon::append(&log, &half[3..]);
    support::daemon::append(&log, &["2026-12-03 12:02:00 INFO end".to_string()]);
    expected.push(half.join("\n"));
    expected.push("2026-12-03 12:02:00 INFO end".to_string()); // after the 10 s timeout
    d.start();
    let got = wait_records(&topic, expected.len(), Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(2));
    let got_again = kafka::read_topic(&support::bootstrap(), &topic);
    assert_eq!(got_again.len(), got.len(), "nothing more arrives");
    assert_eq!(got, expected, "one record per entry, in order, none twice, none torn");
    let with_headers = kafka::read_with_headers(&support::bootstrap(), &topic);
    assert_eq!(with_headers.len(), expected.len(), "every record read back with its headers");
    let text = std::fs::read_to_string(&log).expect("read the log");
    for (payload, headers) in &with_headers {
        let first_line = String::from_utf8_lossy(payload).lines().next().unwrap_or_default().to_string();
        let offset: usize = headers["macklake.offset"].parse().expect("an offset");
        assert!(text[offset..].starts_with(&first_line), "macklake.offset {offset} is its first line's");
    }
    assert!(metric(&d, "macklake_source_multiline_records_total{connector=\"multiline-eos\"}") >= 1.0);
    assert!(d.stop().success());
}

/// Records matching no `include_lines`, or one of `exclude_lines`, are not sent and are
/// counted; the positions pass them, so a restart sends nothing again.
#[test]
fn filtered_records_are_counted_and_passed_by_the_positions() {
    let _cluster = support::shared_cluster();
    let topic = support::unique("filters");
    let mut d = Daemon::new(&support::bootstrap(), "filters-host");
    d.source_with(
        "filters",
        &topic,
        1,
        "include_lines = [\"ERROR\", \"WARN\"]\nexclude_lines = [\"healthcheck\"]\ncheckpoint_interval = \"200ms\"",
    );
    d.start();
    let log = d.logs.join("app.log");
    let lines: Vec<String> = (0..30)
        .map(|i| match i % 5 {
            0 => format!("ERROR {i}"),
            1 => format!("WARN {i}"),
            2 => format!("WARN healthcheck {i}"),
            _ => format!("INFO {i}"),
        })
        .collect();
    support::daemon::append(&log, &lines);
    let kept: Vec<String> = lines
        .iter()
        .filter(|l| (l.starts_with("ERROR") || l.starts_with("WARN ")) && !l.contains("healthcheck"))
        .cloned()
        .collect();
    let got = wait_records(&topic, kept.len(), Duration::from_secs(60));
    assert_eq!(got, kept);
    support::wait_for("the filter counters", Duration::from_secs(10), || {
        (metric(&d, "macklake_source_records_filtered_total{connector=\"filters\",filter=\"include_lines\"}")
            == 12.0
            && metric(
                &d,
                "macklake_source_records_filtered_total{connector=\"filters\",filter=\"exclude_lines\"}",
            ) == 6.0)
            .then_some(())
    });
    let health = d.get_json("/health");
    assert_eq!(health["connectors"]["filters"]["records"]["filtered"], 18, "{health}");
    // Filtered lines last in the file: the position must pass them too.
    support::daemon::append(&log, &["INFO trailing".to_string()]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.stop().success());
    d.start();
    support::daemon::append(&log, &["ERROR after the restart".to_string()]);
    let mut want = kept.clone();
    want.push("ERROR after the restart".to_string());
    let got = wait_records(&topic, want.len(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(kafka::read_topic(&support::bootstrap(), &topic).len(), got.len(), "nothing sent again");
    assert_eq!(got, want);
    assert!(d.stop().success());
}

/// A file rotated away in the middle of a stack trace ends that record (sent as it is, counted);
/// the new file's first lines are not glued to it.
#[test]
fn a_rotation_mid_trace_ends_the_record_and_is_counted() {
    let _cluster = support::shared_cluster();
    let topic = support::unique("multiline-rotation");
    let mut d = Daemon::new(&support::bootstrap(), "multiline-rotation-host");
    d.source_with("multiline-rotation", &topic, 1, "[multiline]\npreset = \"java\"\ntimeout = \"8s\"");
    d.start();
    let log = d.logs.join("app.log");
    std::thread::sleep(Duration::from_secs(2)); // followed before anything is written
    support::daemon::append(&log, &trace(0));
    let half = trace(1);
    support::daemon::append(&log, &half[..3]);
    // Trace 0 is out once the half trace began: the half was read, and is held.
    wait_records(&topic, 1, Duration::from_secs(30));
    // Rotated out of the glob (`*.log`): the file is finished from its descriptor, and its last
    // record ends with it.
    std::fs::rename(&log, d.logs.join("app.log.1")).expect("rotate");
    let late = "\tat com.example.Late.run(Late.java:1)".to_string();
    let fresh = "2026-12-03 12:05:00 INFO new file".to_string();
    support::daemon::append(&log, &[late.clone(), fresh.clone()]);
    let expected = vec![trace(0).join("\n"), half[..3].join("\n"), late, fresh];
    let mut got = wait_records(&topic, expected.len(), Duration::from_secs(60));
    // Two files: their records' relative order is not fixed.
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
    let cut = "macklake_source_records_cut_total{connector=\"multiline-rotation\",reason=\"rotation\"}";
    support::wait_for("the rotation cut counted", Duration::from_secs(10), || {
        (metric(&d, cut) == 1.0).then_some(())
    });
    assert!(d.stop().success());
}

/// `check --sample` shows what a file would become under a connector's rules, without Kafka:
/// records with their offsets, what a filter dropped, and a summary; a sink or an unknown name is
/// refused.
#[test]
fn check_sample_shows_records_and_what_was_dropped() {
    let d = Daemon::new("127.0.0.1:1", "sample-host");
    d.source_with("sampled", "t", 1, "exclude_lines = [\"healthcheck\"]\n[multiline]\npreset = \"java\"");
    d.sink("archive", &["t"], "");
    let sample = d.logs.join("sample.log");
    let mut lines = trace(0);
    lines.push("2026-12-03 12:00:01 INFO healthcheck ok".to_string());
    support::daemon::append(&sample, &lines);
    let config = d.config.to_string_lossy().into_owned();
    let file = sample.to_string_lossy().into_owned();
    let out = support::run(&["check", "--config", &config, "--connector", "sampled", "--sample", &file]);
    let text = support::text(&out.stdout);
    assert!(out.status.success(), "{text}{}", support::text(&out.stderr));
    assert!(
        text.starts_with("@0 record of 6 lines\n    2026-12-03 12:00:00 ERROR request 0 failed\n"),
        "{text}"
    );
    let at = trace(0).iter().map(|l| l.len() + 1).sum::<usize>();
    assert!(text.contains(&format!("@{at} dropped: matches exclude_lines\n")), "{text}");
    assert!(text.contains(": 1 records (1 of several lines"), "{text}");
    let out = support::run(&["check", "--config", &config, "--connector", "archive", "--sample", &file]);
    assert!(!out.status.success());
    assert!(support::text(&out.stderr).contains("is a file-sink"), "{}", support::text(&out.stderr));
    let out = support::run(&["check", "--config", &config, "--connector", "nope", "--sample", &file]);
    assert!(support::text(&out.stderr).contains("no connector named nope"));
}
