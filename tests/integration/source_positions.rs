//! Where a source resumes after a restart: `start_at` applies at the connector's very first start
//! only, whatever happened before the restart.

use std::time::Duration;

use crate::support::daemon::{Daemon, append};
use crate::support::{self, kafka};

const WAIT: Duration = Duration::from_secs(90);

/// Issue 14 finding 1: a source with `start_at = "end"` on a quiet file, killed before it sent
/// anything, applied `start_at` again at the restart and missed every line appended while it was
/// down. Both modes.
fn start_at_end_is_not_applied_again_after_a_crash(exactly_once: bool) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("start-at-end");
    let mut d = Daemon::new(&bootstrap, &support::unique("start-at-end-host"));
    let log = d.logs.join("quiet.log");
    append(&log, &["old line that start_at = end skips".to_string()]);
    let extra = if exactly_once {
        "start_at = \"end\"\nexactly_once = true\ntransaction_interval = \"200ms\"\n"
    } else {
        "start_at = \"end\"\n"
    };
    d.source_with("start-at-end", &topic, 1, extra);
    d.start();
    d.wait_log("following file", WAIT);
    // Long enough for the first start to be recorded (it is at once, with the fix), too short
    // for a periodic checkpoint with nothing to record.
    std::thread::sleep(Duration::from_secs(2));
    d.kill();
    let down: Vec<String> = (0..10).map(|i| format!("appended while down {i}")).collect();
    append(&log, &down);
    d.start();
    let got = support::wait_for("the lines appended while the source was down", WAIT, || {
        let lines = kafka::read_topic(&bootstrap, &topic);
        (lines.len() >= down.len()).then_some(lines)
    });
    assert_eq!(got, down, "exactly the lines appended while down, once");
    assert!(d.stop().success());
}

#[test]
fn start_at_end_is_not_applied_again_after_a_crash_at_least_once() {
    start_at_end_is_not_applied_again_after_a_crash(false);
}

#[test]
fn start_at_end_is_not_applied_again_after_a_crash_exactly_once() {
    start_at_end_is_not_applied_again_after_a_crash(true);
}

/// Issue 14 finding 4: an exactly-once transaction that holds only dead letters (every line was
/// over-long and skipped) was never committed — only lines counted — so it timed out, the
/// producer was fenced and the connector restarted in a loop; nothing reached the dead-letter
/// topic (read_committed). It must commit like any other, and a restart must not resend.
#[test]
fn an_exactly_once_transaction_of_dead_letters_only_is_committed() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("only-dead-letters");
    let dlq = support::unique("only-dead-letters-dlq");
    let mut d = Daemon::new(&bootstrap, &support::unique("dead-letters-host"));
    d.source_with(
        "dead-letters-only",
        &topic,
        1,
        &format!(
            "exactly_once = true\ntransaction_interval = \"200ms\"\nmax_line_bytes = 16\nlong_lines = \"skip\"\n\
             dead_letter_topic = \"{dlq}\"\n"
        ),
    );
    // Started first, so that the over-long lines come after the first start's own transaction.
    let log = d.logs.join("app.log");
    append(&log, &["short".to_string()]);
    d.start();
    support::wait_for("the first line", WAIT, || {
        (kafka::read_topic(&bootstrap, &topic).len() == 1).then_some(())
    });
    let long: Vec<String> = (0..5).map(|i| format!("{i}{}", "x".repeat(40))).collect();
    append(&log, &long);
    support::wait_for("the dead-letter topic", WAIT, || kafka::topic_exists(&bootstrap, &dlq).then_some(()));
    let letters = support::wait_for("5 committed dead letters", WAIT, || {
        let letters = kafka::read_with_headers(&bootstrap, &dlq);
        (letters.len() >= 5).then_some(letters)
    });
    assert_eq!(letters.len(), 5);
    assert!(d.stop().success());
    d.start();
    d.wait_log("following file", WAIT);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kafka::read_with_headers(&bootstrap, &dlq).len(), 5, "nothing sent again after a restart");
    assert!(!d.log().contains("fenced"), "no fenced producer:\n{}", d.log());
    assert!(d.stop().success());
}

/// Issue 21: with `host_header = true` every record carries `macklake.host` = the daemon id, so
/// that two hosts' files with the same path can be told apart downstream; without it, no such
/// header (the record shape stays Connect's).
fn host_header(on: bool) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("host-header");
    let host = support::unique("host-header-host");
    let mut d = Daemon::new(&bootstrap, &host);
    let extra = if on { "host_header = true\n" } else { "" };
    d.source_with("host-header", &topic, 1, extra);
    let lines: Vec<String> = (0..3).map(|i| format!("line {i}")).collect();
    append(&d.logs.join("app.log"), &lines);
    d.start();
    support::wait_for("the topic", WAIT, || kafka::topic_exists(&bootstrap, &topic).then_some(()));
    let records = support::wait_for("the three lines", WAIT, || {
        let records = kafka::read_with_headers(&bootstrap, &topic);
        (records.len() >= lines.len()).then_some(records)
    });
    assert_eq!(records.len(), lines.len());
    for (value, headers) in &records {
        assert!(headers.contains_key("macklake.path"), "{headers:?}");
        assert_eq!(
            headers.get("macklake.host"),
            on.then_some(&host),
            "{}: {headers:?}",
            support::text(value)
        );
    }
    assert!(d.stop().success());
}

#[test]
fn host_header_names_the_daemon_when_asked_for() {
    host_header(true);
}

#[test]
fn host_header_is_absent_by_default() {
    host_header(false);
}
