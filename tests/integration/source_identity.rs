//! What a source makes of a file's content changing under it: rewritten in place, copied inside
//! the glob, truncated over and over. (Issue 14 findings 2, 3 and 5.)

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use crate::support::daemon::{Daemon, append};
use crate::support::{self, kafka};

const WAIT: Duration = Duration::from_secs(90);

fn eos_extra(exactly_once: bool) -> &'static str {
    if exactly_once { "exactly_once = true\ntransaction_interval = \"200ms\"\n" } else { "" }
}

/// Overwrites the start of `path` with `bytes` without truncating it: the file's length changes
/// only if `bytes` is longer, and no reader can see it empty in between (`pwrite` at 0).
fn rewrite_in_place(path: &std::path::Path, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).expect("open for rewrite");
    f.write_all_at(bytes, 0).expect("pwrite");
}

fn wait_lines(bootstrap: &str, topic: &str, n: usize, timeout: Duration) -> Vec<String> {
    support::wait_for(&format!("{n} lines in {topic}"), timeout, || {
        let lines = kafka::read_topic(bootstrap, topic);
        (lines.len() >= n).then_some(lines)
    })
}

/// Finding 2: a file rewritten in place with content of the same length (fixed-width records, a
/// status file rewritten by cron) was never noticed: its size did not change.
fn a_same_length_rewrite_is_read_again(exactly_once: bool) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("rewrite-same-length");
    let mut d = Daemon::new(&bootstrap, &support::unique("rewrite-host"));
    d.source_with("rewrite", &topic, 1, eos_extra(exactly_once));
    let log = d.logs.join("status.log");
    append(&log, &["status: ok 0001".to_string()]);
    d.start();
    wait_lines(&bootstrap, &topic, 1, WAIT);
    rewrite_in_place(&log, b"status: ko 0002\n");
    let got = support::wait_for("the rewritten line", Duration::from_secs(20), || {
        let lines = kafka::read_topic(&bootstrap, &topic);
        (lines.len() >= 2).then_some(lines)
    });
    assert_eq!(got, ["status: ok 0001", "status: ko 0002"]);
    assert!(d.stop().success());
}

#[test]
fn a_same_length_rewrite_is_read_again_at_least_once() {
    a_same_length_rewrite_is_read_again(false);
}

#[test]
fn a_same_length_rewrite_is_read_again_exactly_once() {
    a_same_length_rewrite_is_read_again(true);
}

/// Finding 2: a file shorter than the fingerprint (256 bytes) rewritten with longer content was
/// read on from the old position: the new line's first bytes were skipped (a torn line).
#[test]
fn a_short_file_rewritten_longer_is_read_from_its_start() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("rewrite-longer");
    let mut d = Daemon::new(&bootstrap, &support::unique("rewrite-longer-host"));
    d.source("rewrite-longer", &topic, 1);
    let log = d.logs.join("short.log");
    append(&log, &["aaaa".to_string()]);
    d.start();
    wait_lines(&bootstrap, &topic, 1, WAIT);
    rewrite_in_place(&log, b"bbbbbbbbbbbb\n");
    let got = wait_lines(&bootstrap, &topic, 2, WAIT);
    assert_eq!(got, ["aaaa", "bbbbbbbbbbbb"], "the rewritten line whole, not its tail");
    assert!(d.stop().success());
}

/// Finding 3: a copy being written inside the glob (logrotate's `copy`, an operator's `cp`) is
/// undecided for a moment: its bytes so far are a prefix of a followed file's. It was
/// checkpointed (or committed) at offset 0 meanwhile, so after a restart it was read whole: every
/// line of the original sent twice. A copy gets no position until it is identified.
fn an_undecided_copy_gets_no_position(exactly_once: bool) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("undecided-copy");
    let mut d = Daemon::new(&bootstrap, &support::unique("undecided-copy-host"));
    d.source_with("undecided-copy", &topic, 1, eos_extra(exactly_once));
    let log = d.logs.join("app.log");
    // Longer than the 256 bytes a copy is recognised by.
    let lines: Vec<String> =
        (0..10).map(|i| format!("line {i:02} of the original {}", "x".repeat(20))).collect();
    append(&log, &lines);
    d.start();
    wait_lines(&bootstrap, &topic, lines.len(), WAIT);
    let content = std::fs::read(&log).expect("read the original");
    let copy = d.logs.join("app-copy.log");
    // The copy so far: its first 100 bytes (cp creates it, then writes).
    std::fs::write(&copy, &content[..100]).expect("start the copy");
    support::wait_for("the copy to be seen", Duration::from_secs(10), || {
        d.log().contains("app-copy.log").then_some(())
    });
    // Something to commit while the copy is undecided (exactly-once commits with lines only).
    let after = "after the copy appeared".to_string();
    append(&log, std::slice::from_ref(&after));
    std::thread::sleep(Duration::from_millis(300));
    // Stopped (gracefully) within the 2 s the copy may stay undecided: the drain writes positions.
    assert!(d.stop().success());
    std::fs::write(&copy, &content).expect("finish the copy");
    d.start();
    d.wait_log("following file", WAIT);
    // Longer than the identification grace: an undecided copy read as new would be sent by now.
    std::thread::sleep(Duration::from_secs(5));
    let mut expected = lines.clone();
    expected.push(after);
    assert_eq!(kafka::read_topic(&bootstrap, &topic), expected, "the copy is held, never sent");
    assert!(d.stop().success());
}

#[test]
fn an_undecided_copy_gets_no_position_at_least_once() {
    an_undecided_copy_gets_no_position(false);
}

#[test]
fn an_undecided_copy_gets_no_position_exactly_once() {
    an_undecided_copy_gets_no_position(true);
}

/// Finding 5: every truncation was remembered separately until `forget_after` (7 days), so a file
/// truncated every second grew the checkpoint by one record a second. The same content truncated
/// again is remembered once.
#[test]
fn a_file_truncated_again_and_again_is_remembered_once() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("truncated-often");
    let mut d = Daemon::new(&bootstrap, &support::unique("truncated-often-host"));
    d.source_with("truncated-often", &topic, 1, "checkpoint_interval = \"100ms\"\n");
    let log = d.logs.join("status.log");
    let status: String = format!("status report {}", "=".repeat(300)); // a full fingerprint
    append(&log, std::slice::from_ref(&status));
    d.start();
    let rounds = 12;
    for round in 1..rounds {
        wait_lines(&bootstrap, &topic, round, WAIT);
        // Emptied, seen empty, then the same content again: a truncation each round.
        std::fs::File::create(&log).expect("truncate");
        std::thread::sleep(Duration::from_millis(400));
        append(&log, std::slice::from_ref(&status));
    }
    wait_lines(&bootstrap, &topic, rounds, WAIT);
    assert!(d.stop().success());
    let state = d.root.path().join("state/sources/truncated-often/checkpoints.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state).expect("read checkpoints")).expect("checkpoint json");
    let truncated = json["truncated"].as_array().expect("a truncated list");
    assert!(d.log().contains("file truncated"), "the file was seen truncated:\n{}", d.log());
    assert_eq!(truncated.len(), 1, "one record for one content, not one per truncation: {truncated:?}");
}

/// Found by the torture's new `cp`-inside-the-glob fault: two copies of a file that is then
/// truncated (an operator's `cp app.log app.log.bak`, then logrotate's copytruncate) were both
/// read from where the original stopped: lines the source had not read yet were sent twice. The
/// daemon is stopped (SIGSTOP) so that it lags behind the writer, as a busy one does.
#[test]
fn two_copies_of_a_truncated_file_send_its_unread_lines_once() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("two-copies");
    let mut d = Daemon::new(&bootstrap, &support::unique("two-copies-host"));
    d.connector(
        "two-copies.toml",
        &format!(
            "name = \"two-copies\"\nkind = \"file-source\"\npaths = [\"{}/app.log*\"]\n{}\n\
             [topic]\nname = \"{topic}\"\npartitions = 1\nreplication_factor = 3\n",
            d.logs.display(),
            eos_extra(true)
        ),
    );
    let log = d.logs.join("app.log");
    let read: Vec<String> = (0..10).map(|i| format!("read before {i:02} {}", "x".repeat(30))).collect();
    append(&log, &read);
    d.start();
    wait_lines(&bootstrap, &topic, read.len(), WAIT);
    std::thread::sleep(Duration::from_millis(500)); // its transaction committed
    kill(Pid::from_raw(d.pid()), Signal::SIGSTOP).expect("SIGSTOP");
    let unread: Vec<String> = (0..10).map(|i| format!("unread when copied {i:02}")).collect();
    append(&log, &unread);
    std::fs::copy(&log, d.logs.join("app.log.bak")).expect("cp app.log app.log.bak");
    std::fs::copy(&log, d.logs.join("app.log.1")).expect("copytruncate: the copy");
    std::fs::File::create(&log).expect("copytruncate: the truncation");
    kill(Pid::from_raw(d.pid()), Signal::SIGCONT).expect("SIGCONT");
    let mut expected = read.clone();
    expected.extend(unread);
    wait_lines(&bootstrap, &topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_secs(4)); // past the identification grace
    let mut got = kafka::read_topic(&bootstrap, &topic);
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "every line once, whichever copy it came from");
    assert!(d.stop().success());
}
