//! The source's fault matrix: a failpoint at each durable step of a file-source (`src/failpoints.rs`)
//! made to fail, or to crash the daemon (abort), while lines are being appended; then a restart
//! without faults and more lines. Afterwards, read_committed:
//! - exactly-once: every line in the topic once, in file order; every over-long line in the
//!   dead-letter topic once;
//! - at-least-once: every line there, in file order once repeats are set aside; what repeats is
//!   a resent run of lines (lines sent again after the last checkpoint), never a scattered line.
//!
//! The fast suite runs a sample; the whole matrix runs in `scripts/test --long`.

use std::time::Duration;

use crate::support::daemon::{Daemon, append};
use crate::support::faults::Fault;
use crate::support::{self, kafka};

const WAIT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    AtLeastOnce,
    ExactlyOnce,
}

/// Line `i`: every 20th is over-long (dead-lettered), the others short.
fn line(i: usize) -> String {
    if i % 20 == 19 { format!("long {i:05} {}", "x".repeat(80)) } else { format!("line {i:05}") }
}

fn is_long(l: &str) -> bool {
    l.starts_with("long ")
}

fn case(failpoint: &str, skip: u32, fault: Fault, mode: Mode) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("source-faults");
    let dlq = format!("{topic}-dlq");
    let mut d = Daemon::new(&bootstrap, &support::unique("source-faults-host"));
    let delivery = match mode {
        Mode::ExactlyOnce => "exactly_once = true\ntransaction_interval = \"100ms\"\n",
        Mode::AtLeastOnce => "checkpoint_interval = \"100ms\"\n",
    };
    d.source_with(
        "faulty-source",
        &topic,
        1,
        &format!("{delivery}max_line_bytes = 64\nlong_lines = \"skip\"\ndead_letter_topic = \"{dlq}\"\n"),
    );
    let spec = fault.spec(failpoint, skip);
    d.env("FAILPOINTS", &spec);
    let log = d.logs.join("app.log");
    let all: Vec<String> = (0..2000).map(line).collect();
    append(&log, &all[..20]);
    d.start();
    // (A failpoint at start-up may end the daemon before it follows anything.)
    support::wait_for("the source to follow the file, or the fault", WAIT, || {
        let log = d.log();
        (log.contains("following file") || log.contains(&format!("failpoint {failpoint}"))).then_some(())
    });
    // Lines keep coming until the fault happened: 10 every 50 ms (a transaction or checkpoint
    // every 100 ms), for as long as a loaded machine needs to reach the failpoint's hit.
    let faulted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        // (The last 100 are kept for after the fault.)
        let (log, lines, faulted) = (log.clone(), all[20..all.len() - 100].to_vec(), faulted.clone());
        std::thread::spawn(move || {
            let mut written = 0;
            for chunk in lines.chunks(10) {
                if faulted.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                append(&log, chunk);
                written += chunk.len();
                std::thread::sleep(Duration::from_millis(50));
            }
            written
        })
    };
    fault.wait(&mut d, failpoint, &spec, WAIT);
    faulted.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = 20 + writer.join().expect("writer");
    if fault == Fault::Crash {
        d.clear_env();
        d.start();
    }
    // The rest, after the restart (or after the error): at least 100 lines.
    append(&log, &all[written..]);
    let expected: Vec<String> = all.iter().filter(|l| !is_long(l)).cloned().collect();
    let letters: Vec<String> = all.iter().filter(|l| is_long(l)).cloned().collect();
    support::wait_for(&format!("{spec} {mode:?}: every line"), WAIT, || {
        let got = kafka::read_topic(&bootstrap, &topic);
        expected.iter().all(|l| got.contains(l)).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500)); // anything repeated would show by now
    let got = kafka::read_topic(&bootstrap, &topic);
    let dead: Vec<String> = kafka::read_topic(&bootstrap, &dlq)
        .into_iter()
        .map(|head| head.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let letter_ids: Vec<String> =
        letters.iter().map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect();
    match mode {
        Mode::ExactlyOnce => {
            assert!(
                got == expected,
                "{spec}: {} lines, first difference at {:?}\n{}",
                got.len(),
                got.iter().zip(&expected).position(|(a, e)| a != e),
                support::daemon::tail(&d.log(), 40)
            );
            assert_eq!(dead, letter_ids, "{spec}: every dead letter once, in order");
        }
        Mode::AtLeastOnce => {
            assert_resent_runs_only(&got, &expected, &spec);
            assert_resent_runs_only(&dead, &letter_ids, &spec);
        }
    }
    let status = d.stop();
    assert!(status.success(), "{spec}: a clean stop\n{}", support::daemon::tail(&d.log(), 40));
}

/// `got` is `expected` with whole runs of it sent again (a resend starts at some earlier line and
/// goes on in order), never a line lost or out of its order.
fn assert_resent_runs_only(got: &[String], expected: &[String], spec: &str) {
    let mut next = 0; // the next line never seen before
    let mut i = 0;
    while i < got.len() {
        if next < expected.len() && got[i] == expected[next] {
            next += 1;
            i += 1;
            continue;
        }
        // A resend: it must start at an earlier line and follow the file's order from there.
        let Some(start) = expected[..next].iter().position(|l| *l == got[i]) else {
            panic!(
                "{spec}: {:?} at {i} is neither the next line ({:?}) nor a resend",
                got[i],
                expected.get(next)
            );
        };
        let mut k = start;
        while i < got.len() && k < next && got[i] == expected[k] {
            i += 1;
            k += 1;
        }
    }
    assert_eq!(next, expected.len(), "{spec}: lost from {:?} on", expected.get(next));
}

/// Every durable step of a file-source, with the hits to let pass first, and the modes it
/// applies to.
const MATRIX: &[(&str, u32, &[Mode])] = &[
    ("source::send", 100, &[Mode::AtLeastOnce, Mode::ExactlyOnce]),
    ("source::ack", 100, &[Mode::AtLeastOnce, Mode::ExactlyOnce]),
    ("source::dead-letter::send", 3, &[Mode::AtLeastOnce, Mode::ExactlyOnce]),
    ("source::checkpoint::save", 3, &[Mode::AtLeastOnce]),
    ("source::checkpoint::saved", 3, &[Mode::AtLeastOnce]),
    ("fsutil::write_atomic::fsync", 3, &[Mode::AtLeastOnce]),
    ("fsutil::write_atomic::rename", 3, &[Mode::AtLeastOnce]),
    ("fsutil::write_atomic::dirsync", 3, &[Mode::AtLeastOnce]),
    ("source::positions::restore", 0, &[Mode::ExactlyOnce]),
    ("source::txn::begin", 3, &[Mode::ExactlyOnce]),
    ("source::txn::send-positions", 3, &[Mode::ExactlyOnce]),
    ("source::txn::commit", 3, &[Mode::ExactlyOnce]),
    ("source::txn::committed", 3, &[Mode::ExactlyOnce]),
];

#[test]
fn a_crash_between_a_transaction_commit_and_its_record_resends_nothing() {
    case("source::txn::committed", 3, Fault::Crash, Mode::ExactlyOnce);
}

#[test]
fn a_crash_right_after_a_checkpoint_write_loses_nothing() {
    case("source::checkpoint::saved", 3, Fault::Crash, Mode::AtLeastOnce);
}

#[test]
fn a_failed_transaction_commit_restarts_from_the_last_committed_positions() {
    case("source::txn::commit", 3, Fault::Error, Mode::ExactlyOnce);
}

/// The whole matrix: every failpoint × {crash, error} × the modes it applies to.
#[test]
#[ignore = "slow: the whole source fault matrix (scripts/test --long)"]
fn the_whole_source_fault_matrix() {
    // SOURCE_MATRIX_FROM=NAME starts the walk at that failpoint (to go on after a failure).
    let from = std::env::var("SOURCE_MATRIX_FROM").ok();
    let start = MATRIX.iter().position(|(f, _, _)| Some(*f) == from.as_deref()).unwrap_or(0);
    for (failpoint, skip, modes) in &MATRIX[start..] {
        for mode in *modes {
            for fault in [Fault::Crash, Fault::Error] {
                eprintln!("source fault matrix: {failpoint} {fault:?} {mode:?} after {skip}");
                case(failpoint, *skip, fault, *mode);
            }
        }
    }
}
