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
