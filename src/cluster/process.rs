//! The JVM processes of a local cluster: starting them detached, finding them again by pid file,
//! and stopping them.
//!
//! A pid file alone is not proof: after a reboot the pid may belong to another program. A process
//! counts as a member only if its command line names the member's config file.

use std::fs::{self, File};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::distribution::Distribution;
use super::java::Java;
use super::layout::{Layout, Member};
use super::{ClusterError, io_err};

/// Starts a member's JVM in its own process group (so that Ctrl-C in the terminal that ran
/// `cluster up` does not reach it), with output appended to `logs/stdout.log`, and writes its pid file.
pub fn spawn(
    layout: &Layout,
    java: &Java,
    dist: &Distribution,
    member: Member,
) -> Result<Child, ClusterError> {
    let log_dir = layout.log_dir(member);
    fs::create_dir_all(&log_dir).map_err(io_err(format!("creating {}", log_dir.display())))?;
    let stdout_path = log_dir.join("stdout.log");
    let stdout = File::options()
        .create(true)
        .append(true)
        .open(&stdout_path)
        .map_err(io_err(format!("opening {}", stdout_path.display())))?;
    let stderr = stdout.try_clone().map_err(io_err(format!("duplicating {}", stdout_path.display())))?;
    let (main, args) = layout.main(member);
    let heap = &layout.manifest.heap;
    let mut command = Command::new(&java.path);
    command
        .arg(format!("-Xmx{heap}"))
        .arg(format!("-Xms{heap}"))
        // Kafka's own launch script defaults (kafka-run-class.sh).
        .args(["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35"])
        .args(["-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true"])
        .args(layout.logging_args(member))
        .arg("-cp")
        .arg(dist.classpath())
        .arg(main)
        .args(args)
        .current_dir(layout.member_dir(member))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    let child = command.spawn().map_err(io_err(format!("starting {member} ({})", java.path.display())))?;
    let pid_file = layout.pid_file(member);
    fs::write(&pid_file, format!("{}\n", child.id()))
        .map_err(io_err(format!("writing {}", pid_file.display())))?;
    Ok(child)
}

/// The pid of a member's live process, if it runs.
pub fn running_pid(layout: &Layout, member: Member) -> Option<i32> {
    let text = fs::read_to_string(layout.pid_file(member)).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    is_member_process(pid, &layout.config_file(member)).then_some(pid)
}

/// True if `pid` is alive and its command line names `config` (guards against pid reuse).
fn is_member_process(pid: i32, config: &Path) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let needle = config.display().to_string();
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => {
            // A zombie (exited, not yet reaped) has an empty command line: not running.
            String::from_utf8_lossy(&raw).contains(&needle)
        }
        Err(_) => Command::new("ps")
            .args(["-p", &pid.to_string(), "-o", "command="])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&needle))
            .unwrap_or(false),
    }
}

pub fn signal(pid: i32, sig: Signal) {
    // ESRCH means it is already gone, which is what the caller wants.
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Sends SIGTERM to every pid, waits up to `grace`, then SIGKILLs what is left and waits for it
/// to go. Returns the pids that needed SIGKILL.
pub fn stop_all(layout: &Layout, members: &[Member], grace: Duration) -> Vec<(Member, i32)> {
    let targets: Vec<(Member, i32)> =
        members.iter().filter_map(|m| running_pid(layout, *m).map(|pid| (*m, pid))).collect();
    for (_, pid) in &targets {
        signal(*pid, Signal::SIGTERM);
    }
    let alive = |t: &(Member, i32)| is_member_process(t.1, &layout.config_file(t.0));
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && targets.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let stubborn: Vec<(Member, i32)> = targets.iter().copied().filter(alive).collect();
    for (_, pid) in &stubborn {
        signal(*pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && stubborn.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for member in members {
        if running_pid(layout, *member).is_none() {
            let _ = fs::remove_file(layout.pid_file(*member));
        }
    }
    stubborn
}

/// True if something accepts connections on 127.0.0.1:port.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

/// True if 127.0.0.1:port can be bound now.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The last `lines` lines of a member's logs (server.log, else the JVM's stdout), for error reports.
pub fn log_tail(layout: &Layout, member: Member, lines: usize) -> String {
    let dir = layout.log_dir(member);
    let mut out = String::new();
    for name in ["server.log", "stdout.log"] {
        let path = dir.join(name);
        if let Ok(text) = fs::read_to_string(&path) {
            let all: Vec<&str> = text.lines().collect();
            if all.is_empty() {
                continue;
            }
            out.push_str(&format!("--- last lines of {} ---\n", path.display()));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if out.is_empty() {
        out = format!("(nothing logged in {})\n", dir.display());
    }
    out
}
