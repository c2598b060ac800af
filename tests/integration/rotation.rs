//! The file lifecycle under a source: every rotation style, deletion, inode reuse, partial lines.
//! Each test ends with the archive holding every line exactly once.

use std::fs;
use std::time::Duration;

use crate::support::daemon::{Daemon, append};
use crate::support::{self};

const WAIT: Duration = Duration::from_secs(90);

fn lines(tag: &str, from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("{tag} {i:06}")).collect()
}

/// A daemon whose source follows `glob` (relative to its logs dir) into a fresh topic, with a sink.
fn daemon(name: &str, glob: &str, extra: &str) -> (Daemon, String) {
    let bootstrap = support::bootstrap();
    let topic = support::unique(name);
    // A daemon_id of its own: exactly-once positions are keyed by it in a shared topic.
    let d = Daemon::new(&bootstrap, &support::unique(&format!("{name}-host")));
    d.connector(
        "source.toml",
        &format!(
            "name = \"{name}-source\"\nkind = \"file-source\"\npaths = [\"{}/{glob}\"]\nrescan_interval = \"1s\"\n{extra}\n\
             [topic]\nname = \"{topic}\"\npartitions = 1\nreplication_factor = 3\n",
            d.logs.display()
        ),
    );
    d.sink(&support::unique(&format!("{name}-sink")), &[&topic], "");
    (d, topic)
}

#[test]
fn rename_and_create_loses_and_repeats_nothing() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = daemon("rename", "*.log", "");
    let log = d.logs.join("app.log");
    let mut expected = lines("before", 0, 3000);
    append(&log, &expected);
    d.start();
    // Rotated once the daemon follows the file (the rotated name is outside the glob, so a
    // file rotated before the daemon ever saw it is, rightly, never read).
    d.wait_log("following file", WAIT);
    fs::rename(&log, d.logs.join("app.log.1")).expect("rotate");
    let after = lines("after", 0, 3000);
    append(&log, &after);
    expected.extend(after);
    d.wait_archived(&topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_secs(1));
    d.assert_archived_once(&topic, &expected);
    assert!(d.stop().success());
}

#[test]
fn a_rotated_name_that_still_matches_the_glob_is_the_same_file() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = daemon("rename-in-glob", "app.log*", "");
    d.start();
    let log = d.logs.join("app.log");
    let mut expected = lines("one", 0, 2000);
    append(&log, &expected);
    d.wait_archived(&topic, 2000, WAIT);
    fs::rename(&log, d.logs.join("app.log.1")).expect("rotate");
    let more = lines("two", 0, 2000);
    append(&log, &more);
    expected.extend(more);
    d.wait_archived(&topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_secs(2));
    d.assert_archived_once(&topic, &expected);
    assert!(d.stop().success());
}

/// copytruncate with the copy matching the glob: the copy is recognised by its content and only
/// its unread tail is read; what is written to the truncated file afterwards is new. Exactly-once
/// mode, where the copy starts exactly where the original's reading stopped (at-least-once starts
/// it where the original was acknowledged, so lines in flight may come twice; scripts/torture
/// checks that mode loses nothing).
#[test]
fn copytruncate_reads_the_copys_unread_tail_once() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) =
        daemon("copytruncate", "app.log*", "exactly_once = true\ntransaction_interval = \"200ms\"");
    d.start();
    let log = d.logs.join("app.log");
    let mut expected = Vec::new();
    for round in 0..3 {
        // Lines written right before the copy may or may not have been read from the original.
        let batch = lines(&format!("round{round}"), 0, 5000);
        append(&log, &batch);
        expected.extend(batch);
        fs::copy(&log, d.logs.join(format!("app.log.{round}"))).expect("copy");
        fs::OpenOptions::new().write(true).open(&log).expect("open").set_len(0).expect("truncate");
        std::thread::sleep(Duration::from_millis(700));
    }
    let last = lines("after", 0, 100);
    append(&log, &last);
    expected.extend(last);
    d.wait_archived(&topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_secs(2));
    d.assert_archived_once(&topic, &expected);
    assert!(d.stop().success());
}

#[test]
fn a_file_deleted_while_being_read_is_finished_from_its_descriptor() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = daemon("deleted", "*.log", "");
    let log = d.logs.join("big.log");
    let expected = lines("doomed", 0, 200_000);
    append(&log, &expected);
    d.start();
    d.wait_log("following file", WAIT);
    fs::remove_file(&log).expect("delete");
    d.wait_archived(&topic, expected.len(), WAIT);
    d.assert_archived_once(&topic, &expected);
    assert!(d.stop().success());
}

/// A file deleted and another created (often with the same inode): the new content is read from
/// its start, the checkpoint of the old one is not applied to it.
#[test]
fn a_reused_inode_is_a_new_file() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = daemon("inode-reuse", "*.log", "");
    d.start();
    let log = d.logs.join("app.log");
    let mut expected = lines("first incarnation", 0, 500);
    append(&log, &expected);
    d.wait_archived(&topic, 500, WAIT);
    assert!(d.stop().success());
    fs::remove_file(&log).expect("delete");
    let second = lines("second", 0, 50);
    append(&log, &second);
    expected.extend(second);
    d.start();
    d.wait_archived(&topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_secs(1));
    d.assert_archived_once(&topic, &expected);
    assert!(d.stop().success());
}

/// An unterminated last line of a file rotated out of the glob is sent once the timeout passes.
#[test]
fn a_partial_last_line_of_a_rotated_file_is_sent_after_the_timeout() {
    let _cluster = support::shared_cluster();
    let (mut d, topic) = daemon("partial", "*.log", "partial_line_timeout = \"1s\"");
    d.start();
    let log = d.logs.join("app.log");
    fs::write(&log, b"complete one\ncomplete two\nno newline yet").expect("write");
    d.wait_archived(&topic, 2, WAIT);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.archived(&topic).len(), 2, "a partial line waits while the file may still grow");
    fs::rename(&log, d.logs.join("app.log.old")).expect("rotate away");
    let archived = d.wait_archived(&topic, 3, WAIT);
    assert_eq!(archived, vec!["complete one", "complete two", "no newline yet"]);
    assert!(d.stop().success());
}
