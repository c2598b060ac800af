//! The sink's fault matrix: a failpoint at each durable step (`src/failpoints.rs`) made to fail
//! or to crash the daemon (abort: no unwinding, no buffer flushed) in the middle of a stream;
//! then a restart without faults and more records. Afterwards the archive must hold every record
//! exactly once, in offset order, with nothing set aside. The fast suite runs a sample; the whole
//! matrix runs in `scripts/test --long`. Needs a binary built with `--features failpoints`.

use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::faults::Fault;
use crate::support::{self, kafka};

const WAIT: Duration = Duration::from_secs(90);

fn records(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("r{i:05}")).collect()
}

/// One case: `failpoint` goes off at its (`skip`+1)th hit while a 1-partition topic of 600
/// records is archived with small files (rotation every ~1 KiB); then 200 more records after a
/// restart without faults.
fn case(failpoint: &str, skip: u32, fault: Fault) {
    case_with(failpoint, skip, fault, "")
}

/// `case` with other failpoints set too (`also`: `name=spec;...`), for steps reached only after
/// another fault (a read-back follows a failed commit).
fn case_with(failpoint: &str, skip: u32, fault: Fault, also: &str) {
    run_case(failpoint, skip, fault, also, false)
}

/// `case_with` for a sink with a layout by minute of record time, the records 6 s apart: a seal
/// (fsync, sealed commit, rename into the minute's directory) every 10 records.
fn layout_case(failpoint: &str, skip: u32, fault: Fault, also: &str) {
    run_case(failpoint, skip, fault, also, true)
}

/// 2026-12-03T10:00:00Z, and the records' timestamps from there, 6 s apart (`layout_case`).
const T0: i64 = 1_796_292_000_000;

fn produce(bootstrap: &str, topic: &str, from: usize, lines: &[String], timed: bool) {
    if !timed {
        return kafka::produce_all(bootstrap, topic, 0, lines);
    }
    let records: Vec<(i64, String)> =
        lines.iter().enumerate().map(|(i, l)| (T0 + (from + i) as i64 * 6_000, l.clone())).collect();
    kafka::produce_at(bootstrap, topic, 0, &records);
}

fn run_case(failpoint: &str, skip: u32, fault: Fault, also: &str, timed: bool) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("faults");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut expected = records(0, 600);
    produce(&bootstrap, &topic, 0, &expected, timed);
    let mut d = Daemon::new(&bootstrap, &support::unique("faults-host"));
    let layout = if timed { "layout = \"{topic}/{time:%Y/%m/%d/%H/%M}\"\n" } else { "" };
    d.sink(
        &support::unique("faults-sink"),
        &[&topic],
        &format!(
            "{layout}rotate_bytes = \"1KiB\"\ncommit_interval = \"300ms\"\n\
             [kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n"
        ),
    );
    let spec = fault.spec(failpoint, skip);
    let spec = if also.is_empty() { spec } else { format!("{also};{spec}") };
    d.env("FAILPOINTS", &spec);
    d.start();
    fault.wait(&mut d, failpoint, &spec, WAIT);
    if fault == Fault::Error {
        d.wait_archived(&topic, expected.len(), WAIT);
        assert!(d.stop().success(), "{spec}: the daemon stops cleanly after the error");
    }
    d.clear_env();
    d.start();
    let more = records(600, 800);
    produce(&bootstrap, &topic, 600, &more, timed);
    expected.extend(more);
    d.wait_archived(&topic, expected.len(), WAIT);
    std::thread::sleep(Duration::from_millis(1500)); // anything repeated would show by now
    let archived = d.archived(&topic);
    assert!(
        archived == expected,
        "{spec}: the archive is not every record once in offset order: {} lines, first difference at {:?}\n{}",
        archived.len(),
        archived.iter().zip(&expected).position(|(a, e)| a != e),
        support::daemon::tail(&d.log(), 60)
    );
    assert_eq!(d.set_aside(&topic), Vec::<String>::new(), "{spec}: nothing committed may be set aside");
    assert!(d.stop().success());
}

/// Every durable step of the directory sink, with how many hits to let pass first (so that the
/// fault falls mid-stream, after at least one rotation where the step allows).
const MATRIX: &[(&str, u32, &str)] = &[
    ("sink::flush", 3, ""),
    ("sink::fsync", 3, ""),
    ("sink::cache::write", 3, ""),
    ("sink::commit::send", 3, ""),
    ("sink::commit::lost-answer", 3, ""),
    ("sink::commit::readback", 0, "sink::commit::send=3*off->1*return->off"),
    ("sink::commit::after", 3, ""),
    ("sink::rotate::rename", 1, ""),
    ("sink::rotate::dirsync", 1, ""),
    ("sink::rotate::done", 1, ""),
    ("sink::new-file::dirsync", 1, ""),
    ("fsutil::write_atomic::fsync", 3, ""),
    ("fsutil::write_atomic::rename", 3, ""),
    ("fsutil::write_atomic::dirsync", 3, ""),
];

/// The archive as a reader sees it: rotated files, compressed (`.log.gz`, decompressed here) or
/// not, then the active file, in offset order. A compression's `.tmp` is not part of it.
fn archive_with_compressed(dir: &std::path::Path) -> Vec<String> {
    use std::io::Read;
    let mut files: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(name, _)| name.ends_with(".log") || name.ends_with(".log.gz"))
                .map(|(name, path)| (name.trim_end_matches(".gz").to_string(), path))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = Vec::new();
    for (_, path) in files {
        let bytes = std::fs::read(&path).expect("read an archive file");
        let text = if path.extension().is_some_and(|x| x == "gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(bytes.as_slice())
                .read_to_string(&mut text)
                .unwrap_or_else(|e| panic!("{}: not a whole gzip file: {e}", path.display()));
            text
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        out.extend(text.lines().map(str::to_string));
    }
    out
}

/// A failpoint of the sink's housekeeping (compression, retention), which runs beside the writer
/// once a second over the rotated files: after the fault and a restart without faults, the
/// archive read through its compressed files is every record once in offset order — or, with
/// retention (`keep_files`), a suffix of them that ends with the last — with no `.tmp` left and
/// nothing set aside.
fn housekeeping_case(failpoint: &str, skip: u32, fault: Fault, retention: bool) {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("housekeeping-faults");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut expected = records(0, 600);
    kafka::produce_all(&bootstrap, &topic, 0, &expected);
    let mut d = Daemon::new(&bootstrap, &support::unique("housekeeping-host"));
    let keep = if retention { "keep_files = 2\n" } else { "" };
    d.sink(
        &support::unique("housekeeping-sink"),
        &[&topic],
        &format!(
            "rotate_bytes = \"1KiB\"\ncommit_interval = \"300ms\"\ncompression = \"gzip\"\n{keep}\
             [kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n"
        ),
    );
    let spec = fault.spec(failpoint, skip);
    d.env("FAILPOINTS", &spec);
    d.start();
    fault.wait(&mut d, failpoint, &spec, WAIT);
    if fault == Fault::Error {
        assert!(d.stop().success(), "{spec}: the daemon stops cleanly after the error");
    }
    d.clear_env();
    d.start();
    let more = records(600, 800);
    kafka::produce_all(&bootstrap, &topic, 0, &more);
    expected.extend(more);
    let dir = d.archive.join(&topic);
    let last = expected.last().cloned();
    support::wait_for(&format!("{spec}: the last record archived"), WAIT, || {
        (archive_with_compressed(&dir).last() == last.as_ref()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(2500)); // a housekeeping pass or two
    let archived = archive_with_compressed(&dir);
    let want =
        if retention { &expected[expected.len().saturating_sub(archived.len())..] } else { &expected[..] };
    assert!(
        !archived.is_empty() && archived == want,
        "{spec}: the archive is not {} in offset order: {} lines, first difference at {:?}\n{}",
        if retention { "a suffix of the records" } else { "every record once" },
        archived.len(),
        archived.iter().zip(want).position(|(a, e)| a != e),
        support::daemon::tail(&d.log(), 60)
    );
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .expect("the topic directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || (n.ends_with(".log") && n != &format!("{topic}-0.log")))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new(), "{spec}: rotated files left uncompressed, or a .tmp");
    assert_eq!(d.set_aside(&topic), Vec::<String>::new(), "{spec}: nothing committed may be set aside");
    assert!(d.stop().success());
}

/// The housekeeping steps, the hits to let pass first, and whether retention is on.
const HOUSEKEEPING: &[(&str, u32, bool)] = &[
    ("sink::compress::fsync", 1, false),
    ("sink::compress::rename", 1, false),
    ("sink::compress::remove-plain", 1, false),
    ("sink::retention::delete", 0, true),
];

#[test]
fn a_crash_between_a_compressed_files_rename_and_its_originals_removal_repeats_nothing() {
    housekeeping_case("sink::compress::remove-plain", 1, Fault::Crash, false);
}

/// Issue 22 as it happened: a crash after a rotation's commit and rename, with records in the
/// new active file, before the next commit (commits here come only from rotations).
#[test]
fn a_crash_between_a_rotation_and_the_next_commit_loses_and_repeats_nothing() {
    case("sink::commit::send", 1, Fault::Crash);
}

#[test]
fn a_crash_right_after_a_rotation_is_finished_on_restart() {
    case("sink::rotate::dirsync", 1, Fault::Crash);
}

#[test]
fn a_failed_fsync_ends_the_run_and_the_restart_rewrites_from_kafka() {
    case("sink::fsync", 3, Fault::Error);
}

#[test]
fn a_commit_applied_but_reported_failed_is_read_back() {
    case("sink::commit::lost-answer", 3, Fault::Error);
}

/// The whole matrix: every failpoint × {crash, error}.
#[test]
#[ignore = "slow: the whole fault matrix (scripts/test --long)"]
fn the_whole_sink_fault_matrix() {
    for (failpoint, skip, also) in MATRIX {
        for fault in [Fault::Crash, Fault::Error] {
            eprintln!("fault matrix: {failpoint} {fault:?} after {skip} {also}");
            case_with(failpoint, *skip, fault, also);
        }
    }
}

/// The same walk with a layout by minute of record time (issue 17): every step also at seals
/// into bucket directories.
#[test]
#[ignore = "slow: the whole fault matrix (scripts/test --long)"]
fn the_whole_layout_fault_matrix() {
    for (failpoint, skip, also) in MATRIX {
        for fault in [Fault::Crash, Fault::Error] {
            eprintln!("layout fault matrix: {failpoint} {fault:?} after {skip} {also}");
            layout_case(failpoint, *skip, fault, also);
        }
    }
}

/// A SIGKILL-like crash between a seal's fsync and its commit, in a time layout.
#[test]
fn a_crash_between_a_seal_and_its_commit_in_a_time_layout_loses_and_repeats_nothing() {
    layout_case("sink::commit::send", 3, Fault::Crash, "");
}

/// The housekeeping part of the matrix: every compression and retention step × {crash, error}.
#[test]
#[ignore = "slow: the whole fault matrix (scripts/test --long)"]
fn the_whole_housekeeping_fault_matrix() {
    for (failpoint, skip, retention) in HOUSEKEEPING {
        for fault in [Fault::Crash, Fault::Error] {
            eprintln!("housekeeping fault matrix: {failpoint} {fault:?} after {skip}");
            housekeeping_case(failpoint, *skip, fault, *retention);
        }
    }
}

/// Issue 13 finding 4: a partition whose reconciliation is deferred (Kafka did not answer) must
/// not drop the records fetched meanwhile, even with no committed offset to seek back to.
#[test]
fn a_partition_reconciled_late_loses_nothing() {
    case("sink::reconcile::committed", 0, Fault::Error);
}

/// Issue 13 finding 2: a daemon crashes right after a commit Kafka applied; another daemon takes
/// the partition over from there, then stops; the first comes back and closes its file off. The
/// commit cache is written before the commit is sent, and the new owner's metadata says where it
/// took over, so the close-off cuts exactly there: the two archives together hold every record
/// exactly once, and nothing is set aside.
#[test]
fn a_takeover_after_a_crash_right_after_a_commit_loses_and_repeats_nothing() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("takeover");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let sink = support::unique("takeover-sink");
    let conf = "commit_interval = \"300ms\"\n\
                [kafka]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n";
    let mut expected = records(0, 300);
    kafka::produce_all(&bootstrap, &topic, 0, &expected);
    let mut a = Daemon::new(&bootstrap, &support::unique("host-a"));
    a.sink(&sink, &[&topic], conf);
    a.env("FAILPOINTS", "sink::commit::after=return(crash)");
    a.start();
    a.wait_exit(WAIT).expect("host A crashes right after its first commit");
    let mut b = Daemon::new(&bootstrap, &support::unique("host-b"));
    b.sink(&sink, &[&topic], conf);
    b.start();
    let more = records(300, 500);
    kafka::produce_all(&bootstrap, &topic, 0, &more);
    expected.extend(more);
    support::wait_for("both archives to hold everything", WAIT, || {
        (a.archived(&topic).len() + b.archived(&topic).len() >= expected.len()).then_some(())
    });
    assert!(b.stop().success());
    a.clear_env();
    a.start();
    a.wait_log("TakenOver", WAIT);
    let last = records(500, 600);
    kafka::produce_all(&bootstrap, &topic, 0, &last);
    expected.extend(last);
    support::wait_for("the last records in host A's archive", WAIT, || {
        (a.archived(&topic).len() + b.archived(&topic).len() >= expected.len()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut both = a.archived(&topic);
    both.extend(b.archived(&topic));
    crate::support::daemon::assert_exactly_once(&both, &expected);
    assert_eq!((a.set_aside(&topic), b.set_aside(&topic)), (vec![], vec![]), "nothing set aside");
    assert!(a.stop().success());
}

/// Full torture, seed 202: a crash before the first commit of a partition nothing was ever
/// committed for left an active file no commit accounted for, which the restart set aside as
/// `*.uncommitted-*` (its records were archived again: duplicates for a reader of the directory).
/// Here: a crash at the very first fsync of a fresh sink.
#[test]
fn a_crash_before_a_fresh_partitions_first_commit_sets_nothing_aside() {
    case("sink::fsync", 0, Fault::Crash);
}
