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

/// Issue 14 finding 7: an exactly-once source whose offsets topic is not compacted (someone made
/// it by hand, or with the cluster's default `cleanup.policy=delete`) would lose its positions to
/// retention and read its files again from the start one day. It refuses to run, naming the topic
/// and the setting, and sends nothing.
#[test]
fn an_offsets_topic_that_is_not_compacted_is_refused() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("offsets-policy");
    let offsets = support::unique("offsets-not-compacted");
    kafka::create_topic(&bootstrap, &offsets, 1, 3); // cleanup.policy=delete, the default
    let mut d = Daemon::new(&bootstrap, &support::unique("offsets-policy-host"));
    d.source_with(
        "offsets-policy",
        &topic,
        1,
        &format!("exactly_once = true\ntransaction_interval = \"200ms\"\noffsets_topic = \"{offsets}\"\n"),
    );
    append(&d.logs.join("app.log"), &["must not be sent".to_string()]);
    d.start();
    support::wait_for("the refusal", WAIT, || {
        let log = d.log();
        (log.contains("cleanup.policy") && log.contains(&offsets)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !kafka::topic_exists(&bootstrap, &topic) || kafka::read_topic(&bootstrap, &topic).is_empty(),
        "nothing sent"
    );
    assert!(d.stop().success());
}

/// Issue 14 finding 7: on overlayfs (containers) and some network filesystems a file's device
/// number changes across a remount while its inode and content stay; every file was read again
/// from the start. Simulated by changing the device number recorded in the checkpoint: a file at
/// the same path, with the same inode and the same first bytes, keeps its position.
#[test]
fn a_changed_device_number_keeps_the_position_of_the_same_file() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("device-changed");
    let mut d = Daemon::new(&bootstrap, &support::unique("device-changed-host"));
    d.source("device-changed", &topic, 1);
    let log = d.logs.join("app.log");
    let first: Vec<String> = (0..10).map(|i| format!("before the remount {i} {}", "x".repeat(30))).collect();
    append(&log, &first);
    d.start();
    support::wait_for("the first lines", WAIT, || {
        (kafka::read_topic(&bootstrap, &topic).len() >= first.len()).then_some(())
    });
    assert!(d.stop().success());
    let state = d.root.path().join("state/sources/device-changed/checkpoints.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("read checkpoints")).expect("json");
    let files = json["files"].as_array_mut().expect("files");
    assert_eq!(files.len(), 1, "one file checkpointed: {files:?}");
    let dev = files[0]["id"]["dev"].as_u64().expect("a device number");
    files[0]["id"]["dev"] = serde_json::json!(dev ^ 0x5a5a);
    std::fs::write(&state, serde_json::to_vec_pretty(&json).expect("json")).expect("write checkpoints");
    let after: Vec<String> = (0..5).map(|i| format!("after the remount {i}")).collect();
    append(&log, &after);
    d.start();
    support::wait_for("the new lines", WAIT, || {
        (kafka::read_topic(&bootstrap, &topic).len() >= first.len() + after.len()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let mut expected = first.clone();
    expected.extend(after);
    assert_eq!(kafka::read_topic(&bootstrap, &topic), expected, "the file goes on where it was");
    assert!(d.log().contains("device number changed"), "said why:\n{}", d.log());
    assert!(d.stop().success());
}
