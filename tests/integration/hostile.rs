//! Hostile conditions: thousands of files under a low descriptor limit, a lost inotify queue,
//! a full and a read-only sink disk, unreadable files and directories. Each stalls only what it
//! affects, says so in the log, never commits past durable data, and recovers by itself.
//!
//! The disk and permission tests need root (to mount a small tmpfs, and to drop the capabilities
//! that let root read anything); without it they say so and return.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::daemon::{Daemon, append};
use crate::support::{self, kafka};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tmpfs mounted over a directory for one test; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        sh(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            &path.to_string_lossy(),
        ]);
        Tmpfs { path: path.to_path_buf() }
    }

    fn remount(&self, options: &str) {
        sh(&["mount", "-o", &format!("remount,{options}"), &self.path.to_string_lossy()]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("command runs");
    assert!(out.status.success(), "{args:?} failed: {}", support::text(&out.stderr));
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:06} {}", "x".repeat(80))).collect()
}

fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().all(|t| {
        let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
    })
}

fn open_descriptors(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// 2000 files, at most 200 open at once, under RLIMIT_NOFILE 512: idle files are closed and
/// reopened by path when they grow again; every line arrives once.
#[test]
fn thousands_of_files_are_followed_with_few_descriptors() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("many-files");
    let mut d = Daemon::new(&bootstrap, "many-files-host");
    d.source_with(
        "many-files-source",
        &topic,
        3,
        "rescan_interval = \"1s\"\nclose_idle_after = \"1s\"\nmax_open_files = 200",
    );
    d.sink(&support::unique("many-files-sink"), &[&topic], "");
    let files = 2000;
    let mut expected = Vec::new();
    for f in 0..files {
        let line = format!("file {f:04} line 1");
        fs::write(d.logs.join(format!("f{f:04}.log")), format!("{line}\n")).expect("write");
        expected.push(line);
    }
    d.start_wrapped(&["prlimit", "--nofile=512:512"]);
    let pid = d.pid();
    let mut peak = 0;
    support::wait_for("the first line of every file archived", Duration::from_secs(180), || {
        peak = peak.max(open_descriptors(pid));
        (d.archived(&topic).len() >= files).then_some(())
    });
    // The second round goes to files whose descriptors were closed while idle.
    std::thread::sleep(Duration::from_secs(3));
    for f in (0..files).step_by(10) {
        let line = format!("file {f:04} line 2");
        append(&d.logs.join(format!("f{f:04}.log")), std::slice::from_ref(&line));
        expected.push(line);
    }
    support::wait_for("the second lines archived", Duration::from_secs(120), || {
        peak = peak.max(open_descriptors(pid));
        (d.archived(&topic).len() >= expected.len()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    d.assert_archived_once(&topic, &expected);
    // 200 followed files plus librdkafka's sockets and pipes, the sink's file, the log...
    assert!(peak <= 200 + 120, "at most 200 source files open at once, saw {peak} descriptors");
    assert!(d.log().contains("too many files to hold open"), "the wait was reported");
    assert!(d.stop().success());
}

/// With rescans an hour apart, a file whose creation event was lost when the inotify queue
/// overflowed is found only because the overflow itself triggers a rescan.
#[test]
fn inotify_queue_overflow_triggers_a_rescan() {
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("overflow");
    let mut d = Daemon::new(&bootstrap, "overflow-host");
    d.source_with("overflow-source", &topic, 1, "rescan_interval = \"1h\"");
    d.sink(&support::unique("overflow-sink"), &[&topic], "");
    append(&d.logs.join("first.log"), &["first".to_string()]);
    // Writes to files outside the glob fill the queue without causing rescans of their own.
    let noise: Vec<fs::File> = ["noise-a.tmp", "noise-b.tmp"]
        .iter()
        .map(|n| fs::File::create(d.logs.join(n)).expect("create noise file"))
        .collect();
    d.start();
    d.wait_archived(&topic, 1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let max_queued: usize = fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(16384);
    kill(Pid::from_raw(d.pid()), Signal::SIGSTOP).expect("SIGSTOP");
    // The signal is only queued by kill(): wait until every thread has really stopped, or the
    // watcher thread may still drain the queue while it fills.
    support::wait_for("every thread of the daemon stopped", Duration::from_secs(10), || {
        all_threads_stopped(d.pid()).then_some(())
    });
    // Alternating files, so that the kernel cannot merge consecutive identical events.
    for i in 0..max_queued + 2000 {
        use std::io::Write;
        (&noise[i % 2]).write_all(b"n").expect("write noise");
    }
    append(&d.logs.join("late.log"), &["late".to_string()]);
    kill(Pid::from_raw(d.pid()), Signal::SIGCONT).expect("SIGCONT");
    d.wait_archived(&topic, 2, Duration::from_secs(60));
    d.assert_archived_once(&topic, &["first".to_string(), "late".to_string()]);
    assert!(d.log().contains("event queue overflowed"), "the overflow was reported");
    assert!(d.stop().success());
}

/// The sink's disk fills up: the sink stalls with the error in the log, its committed offset
/// never passes what the files hold, and once there is room every record is there once.
#[test]
fn full_sink_disk_stalls_without_committing_past_the_data_and_recovers() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("disk-full");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut d = Daemon::new(&bootstrap, "disk-full-host");
    let disk = Tmpfs::mount(&d.archive, "256k");
    let sink = support::unique("disk-full-sink");
    d.sink(&sink, &[&topic], "commit_interval = \"200ms\"");
    let records = numbered("full", 0..5000); // ~450 KB into 256 KiB
    kafka::produce_all(&bootstrap, &topic, 0, &records);
    d.start();
    d.wait_log("No space left on device", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let committed = kafka::committed(&bootstrap, &sink, &topic, 0);
    let on_disk = d.archived(&topic).len() as i64;
    assert!(committed <= on_disk, "committed offset {committed} is past the {on_disk} records on disk");
    assert!(on_disk < records.len() as i64, "the disk cannot hold them all");
    disk.remount("size=16m");
    d.wait_archived(&topic, records.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(1));
    d.assert_archived_once(&topic, &records);
    assert!(d.stop().success());
    assert_eq!(kafka::committed(&bootstrap, &sink, &topic, 0), records.len() as i64);
}

/// The sink's disk is read-only when the daemon starts (a remount after errors): the sink stalls
/// with the error, commits nothing, and resumes once the disk is writable again.
#[test]
fn read_only_sink_disk_stalls_and_recovers() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("disk-ro");
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    let mut d = Daemon::new(&bootstrap, "disk-ro-host");
    let disk = Tmpfs::mount(&d.archive, "16m");
    let sink = support::unique("disk-ro-sink");
    d.sink(&sink, &[&topic], "commit_interval = \"200ms\"");
    let first = numbered("ro", 0..1000);
    kafka::produce_all(&bootstrap, &topic, 0, &first);
    d.start();
    d.wait_archived(&topic, first.len(), Duration::from_secs(60));
    assert!(d.stop().success());
    // (A mounted filesystem cannot be made read-only while files on it are open for writing:
    // the kernel does that by itself after errors; here the daemon restarts onto it.)
    disk.remount("ro");
    let second = numbered("ro", 1000..2000);
    kafka::produce_all(&bootstrap, &topic, 0, &second);
    d.start();
    d.wait_log("Read-only file system", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(kafka::committed(&bootstrap, &sink, &topic, 0), 1000, "nothing committed while read-only");
    disk.remount("rw");
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    d.wait_archived(&topic, all.len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(1));
    d.assert_archived_once(&topic, &all);
    assert!(d.stop().success());
}

/// A file and a directory the daemon may not read are reported (once) and retried; once their
/// permissions are fixed, their lines arrive. The daemon runs without CAP_DAC_OVERRIDE and
/// CAP_DAC_READ_SEARCH, as under the systemd unit.
#[test]
fn unreadable_files_and_directories_are_reported_and_retried() {
    if !is_root() {
        eprintln!("skipped: dropping root's override capabilities needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let _cluster = support::shared_cluster();
    let bootstrap = support::bootstrap();
    let topic = support::unique("unreadable");
    let mut d = Daemon::new(&bootstrap, "unreadable-host");
    d.connector(
        "source.toml",
        &format!(
            "name = \"unreadable-source\"\nkind = \"file-source\"\npaths = [\"{}/**/*.log\"]\n\
             rescan_interval = \"1s\"\ntopic = \"{topic}\"\n",
            d.logs.display()
        ),
    );
    kafka::create_topic(&bootstrap, &topic, 1, 3);
    d.sink(&support::unique("unreadable-sink"), &[&topic], "");
    let secret = d.logs.join("secret.log");
    let locked = d.logs.join("locked");
    fs::create_dir(&locked).expect("mkdir");
    append(&d.logs.join("open.log"), &["open".to_string()]);
    append(&secret, &["secret".to_string()]);
    append(&locked.join("inner.log"), &["inner".to_string()]);
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
    d.start_wrapped(&["setpriv", "--bounding-set=-dac_override,-dac_read_search"]);
    d.wait_archived(&topic, 1, Duration::from_secs(60));
    d.wait_log("cannot read file; will retry", Duration::from_secs(30));
    d.wait_log("cannot list directory; will retry", Duration::from_secs(30));
    // Reported once, not at every rescan.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(d.log().matches("cannot read file; will retry").count(), 1, "reported once");
    assert_eq!(d.archived(&topic), vec!["open".to_string()]);
    let started = Instant::now();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod");
    d.wait_archived(&topic, 3, Duration::from_secs(30));
    eprintln!("picked up {:?} after the permissions were fixed", started.elapsed());
    d.assert_archived_once(&topic, &["open".to_string(), "secret".to_string(), "inner".to_string()]);
    assert!(d.stop().success());
}
